// Package ids is the one rule for the names trainyard's people, stations,
// trust entries, key-server archives and tokens go by: 1-128 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit. The
// same rule everywhere keeps every such name a valid OCI tag, a file name
// and a path segment, and free of anything a terminal or a shell acts on.
package ids

import "regexp"

// Pattern is the rule as a regular expression.
const Pattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`

var re = regexp.MustCompile(Pattern)

// Valid reports whether s follows the rule.
func Valid(s string) bool { return re.MatchString(s) }
