package station

import (
	"bytes"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzEscapeLog: whatever a train prints, what EscapeLog shows is valid
// UTF-8 with no control or format characters but newline and tab.
func FuzzEscapeLog(f *testing.F) {
	f.Add([]byte("{\"msg\":\"stop done\"}\r\x1b[2J\x07\u202e\xff\xfe\n\tok"))
	f.Add([]byte{0xc0, 0x80, 0xed, 0xa0, 0x80, 0x9b})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		if err := EscapeLog(&out, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in %q", s)
		}
		for _, r := range s {
			if r != '\n' && r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
				t.Fatalf("control %U in %q", r, s)
			}
		}
	})
}
