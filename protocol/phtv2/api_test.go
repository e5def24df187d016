package phtv2

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The raw AES-CBC helpers carry no integrity of their own (the legacy
// format's signed hashes do), so no importer may call them directly.
func TestRawCBCNotExported(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]bool{"Encrypt": true, "Decrypt": true, "EncryptedSize": true, "DecryptedSize": true}
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil {
				continue
			}
			if strings.HasPrefix(fd.Name.Name, "rawCBC") {
				found++
			}
			if raw[fd.Name.Name] || (ast.IsExported(fd.Name.Name) && strings.Contains(fd.Name.Name, "CBC")) {
				t.Errorf("%s: raw AES-CBC helper %s is exported", name, fd.Name.Name)
			}
		}
	}
	if found != 4 {
		t.Errorf("found %d rawCBC helpers, want 4 (renamed? update this test)", found)
	}
}
