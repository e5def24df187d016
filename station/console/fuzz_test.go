package console_test

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/trainyard/trainyard/station/console"
)

// FuzzPreview: any file gives a bounded preview of valid text, or none.
func FuzzPreview(f *testing.F) {
	for _, s := range []string{"", "a,b\n1,2\n", "\"unterminated,\n", "x\x00y", "\xff", "é", "a\r\nb\r\n"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, isCSV bool) {
		p := console.MakePreview(bytes.NewReader(b), isCSV)
		if len(p.Text) > console.PreviewBytes || p.Lines > console.PreviewLines || len(p.Rows) > console.PreviewCSVRows {
			t.Fatalf("preview not bounded: %d bytes, %d lines, %d rows", len(p.Text), p.Lines, len(p.Rows))
		}
		if p.Binary && (p.Text != "" || p.Rows != nil) {
			t.Fatal("a binary file previewed")
		}
		if !utf8.ValidString(p.Text) {
			t.Fatal("preview is not valid UTF-8")
		}
		if !p.Truncated && !p.Binary && p.Text != string(b) {
			t.Fatal("an untruncated preview differs from the file")
		}
	})
}
