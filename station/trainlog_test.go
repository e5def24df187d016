package station_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/train"
)

// TestTrainOutputKeptApart runs a train that prints a forged station log
// record, terminal escapes and 3 MiB of output. The station's own log
// stream (JSON records, as the CLI writes them to stderr) has none of it;
// the stop's kept log has it, private and capped with a marker, and
// EscapeLog shows it with the escapes defused.
func TestTrainOutputKeptApart(t *testing.T) {
	runner := needRunc(t)
	code := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := train.BuildStatic(ctx, "testdata/noisy", filepath.Join(code, "aggregate")); err != nil {
		t.Fatal(err)
	}
	n := newNet(t, runner, "st1")
	ref := n.createFrom(t, code, "st1")
	s := n.stations["st1"]
	var stationLog bytes.Buffer
	s.Logger = slog.New(slog.NewJSONHandler(&stationLog, nil))
	s.TrainLogDir = filepath.Join(t.TempDir(), "train-logs")
	st, err := s.Process(n.ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stationLog.String(), "forged") || strings.Contains(stationLog.String(), "\x1b") ||
		strings.Count(stationLog.String(), "\n") != 1 || !strings.Contains(stationLog.String(), `"msg":"stop done"`) {
		t.Fatalf("station log stream carries train output:\n%.2000s", stationLog.String())
	}
	if st.Log == "" || filepath.Dir(st.Log) != s.TrainLogDir || !strings.HasPrefix(filepath.Base(st.Log), "t1.stop0.") {
		t.Fatalf("stop record names log %q", st.Log)
	}
	fi, err := os.Stat(st.Log)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept log mode %v", fi.Mode().Perm())
	}
	if fi.Size() > station.DefaultMaxTrainLog+4096 {
		t.Fatalf("kept log is %d bytes, cap %d", fi.Size(), station.DefaultMaxTrainLog)
	}
	kept, _ := os.ReadFile(st.Log)
	for _, want := range []string{`output of train "t1", stop 0`, `"station":"forged"`, "\x1b[2J", "train output truncated"} {
		if !bytes.Contains(kept, []byte(want)) {
			t.Fatalf("kept log lacks %q", want)
		}
	}
	var shown bytes.Buffer
	f, _ := os.Open(st.Log)
	defer f.Close()
	if err := station.EscapeLog(&shown, f); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(shown.String(), "\x1b\x07\r") || !strings.Contains(shown.String(), `\x1b[2J`) {
		t.Fatal("escaped log still carries control characters")
	}
	logs, err := station.TrainLogs(s.TrainLogDir, "t1")
	if err != nil || len(logs) != 1 || logs[0].Path != st.Log {
		t.Fatalf("TrainLogs = %v, %v", logs, err)
	}
}
