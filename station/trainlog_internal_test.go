package station

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrainLogsCappedAndPruned: each kept log stops at its cap with a
// marker, and only the newest KeepTrainLogs logs stay.
func TestTrainLogsCappedAndPruned(t *testing.T) {
	s := &Station{ID: "st1", TrainLogDir: t.TempDir(), MaxTrainLog: 100, KeepTrainLogs: 2}
	var paths []string
	for i := range 3 {
		st := &Stop{Train: fmt.Sprintf("t%d/../x", i), Index: i}
		w, done, err := s.trainOutput(st)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, strings.Repeat("y", 150))
		done()
		paths = append(paths, st.Log)
	}
	if _, err := os.Stat(paths[0]); !os.IsNotExist(err) {
		t.Fatalf("oldest log kept: %v", err)
	}
	ls, err := TrainLogs(s.TrainLogDir, "")
	if err != nil || len(ls) != 2 {
		t.Fatalf("%d logs kept, want 2 (%v)", len(ls), err)
	}
	b, err := os.ReadFile(paths[2])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "]\n"+strings.Repeat("y", 100)+"\n[trainyard: train output truncated: 150 bytes written, first 100 kept]") {
		t.Fatalf("kept log: %q", b)
	}
	if filepath.Dir(paths[2]) != s.TrainLogDir || !strings.HasPrefix(ls[1].Name, "t2_.._x.stop2.") {
		t.Fatalf("log name %q from train id %q", ls[1].Name, "t2/../x")
	}
}
