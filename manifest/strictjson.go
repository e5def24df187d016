package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds nesting; real manifests and configs stay far below it.
const maxJSONDepth = 64

// manifestFields are the field names the package decodes from manifests.
// encoding/json matches keys case-insensitively, so "FsLayers" would be read
// as fsLayers by Go while other implementations ignore it: such case variants
// are rejected to remove that parser differential.
var manifestFields = map[string]string{}

func init() {
	for _, k := range []string{
		"schemaVersion", "mediaType", "artifactType", "config", "layers", "manifests", "subject",
		"annotations", "digest", "size", "urls", "data", "platform", "architecture", "os",
		"os.version", "os.features", "variant", "features", "name", "tag", "fsLayers", "blobSum",
		"history", "v1Compatibility", "signatures", "header", "jwk", "alg", "protected", "signature",
		"formatLength", "formatTail", "time", "x5c", "chain",
	} {
		manifestFields[strings.ToLower(k)] = k
	}
}

// checkJSON validates that b is exactly one JSON value, valid UTF-8, with no
// duplicate keys in any object and nesting below maxJSONDepth. With
// manifestKeys it also rejects case variants of the manifest field names
// outside annotations.
func checkJSON(b []byte, manifestKeys bool) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object   bool
		keys     map[string]struct{}
		wantKey  bool // next string token in this object is a key
		freeKeys bool // keys are data (annotations, labels), not field names
		lastKey  string
	}
	var stack []*frame
	top := func() *frame {
		if len(stack) == 0 {
			return nil
		}
		return stack[len(stack)-1]
	}
	// afterValue flips the enclosing object back to expecting a key.
	afterValue := func() {
		if f := top(); f != nil && f.object {
			f.wantKey = true
		}
	}
	seen := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if !seen {
				return fmt.Errorf("%w: empty document", ErrInvalid)
			}
			if len(stack) != 0 {
				return fmt.Errorf("%w: truncated JSON", ErrInvalid)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: JSON: %w", ErrInvalid, err)
		}
		if len(stack) == 0 && seen {
			return fmt.Errorf("%w: data after the JSON document", ErrInvalid)
		}
		seen = true
		f := top()
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) >= maxJSONDepth {
					return fmt.Errorf("%w: JSON nested deeper than %d", ErrInvalid, maxJSONDepth)
				}
				nf := &frame{object: t == '{', wantKey: t == '{'}
				if f != nil {
					nf.lastKey = f.lastKey
					nf.freeKeys = f.freeKeys
					if f.object && (f.lastKey == "annotations" || strings.EqualFold(f.lastKey, "labels")) {
						nf.freeKeys = true
					}
				}
				if nf.object {
					nf.keys = map[string]struct{}{}
				}
				stack = append(stack, nf)
			case '}', ']':
				stack = stack[:len(stack)-1]
				afterValue()
			}
		case string:
			if f != nil && f.object && f.wantKey {
				if _, dup := f.keys[t]; dup {
					return fmt.Errorf("%w %q", ErrDuplicateKey, clip(t))
				}
				f.keys[t] = struct{}{}
				if manifestKeys && !f.freeKeys {
					if canon, ok := manifestFields[strings.ToLower(t)]; ok && canon != t {
						return fmt.Errorf("%w: key %q is a case variant of %q", ErrInvalid, clip(t), canon)
					}
				}
				f.lastKey = t
				f.wantKey = false
				continue
			}
			afterValue()
		default:
			afterValue()
		}
	}
}

// decodeStrict checks b with checkJSON and decodes it into v.
func decodeStrict(b []byte, v any, manifestKeys bool) error {
	if err := checkJSON(b, manifestKeys); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// sizeValue parses a JSON number that must be a non-negative integer: Quay's
// schema takes any "number", so 1.5 or -1 sizes pass there.
func sizeValue(n json.Number, what string) (int64, error) {
	s := string(n)
	if s == "" {
		return 0, fmt.Errorf("%w: %s is missing", ErrInvalid, what)
	}
	if strings.ContainsAny(s, ".eE+-") {
		return 0, fmt.Errorf("%w: %s %q is not a non-negative integer", ErrInvalid, what, clip(s))
	}
	v, err := n.Int64()
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is out of range", ErrInvalid, what, clip(s))
	}
	return v, nil
}
