package trainimage

import (
	"os"
	"path/filepath"
	"testing"
)

// DropResults removes the results spool only, once; Close removes the rest.
func TestSealedDropResults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &Sealed{dir: dir, Code: filepath.Join(dir, "code"), Results: filepath.Join(dir, "results")}
	for _, p := range []string{s.Code, s.Results} {
		if err := os.WriteFile(p, []byte("sealed"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	results := s.Results
	if err := s.DropResults(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(results); !os.IsNotExist(err) {
		t.Fatalf("results spool still there: %v", err)
	}
	if _, err := os.Stat(s.Code); err != nil {
		t.Fatalf("code spool dropped with the results: %v", err)
	}
	if err := s.DropResults(); err != nil || s.Results != "" {
		t.Fatalf("second DropResults: %v, Results %q", err, s.Results)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("spool dir left: %v", err)
	}
}
