package cli

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysGenerateShow(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "station-a")
	var out, errb bytes.Buffer
	if code := run([]string{"keys", "generate", prefix}, nil, &out, &errb); code != 0 {
		t.Fatalf("generate: %d %s", code, errb.String())
	}
	gen := out.String()
	for _, f := range []string{prefix + ".pub", prefix + ".key"} {
		out.Reset()
		if code := run([]string{"keys", "show", f}, nil, &out, &errb); code != 0 {
			t.Fatalf("show %s: %d %s", f, code, errb.String())
		}
		if !strings.Contains(gen, strings.SplitN(out.String(), "\n", 2)[0]) {
			t.Fatalf("show %s printed %q, generate printed %q", f, out.String(), gen)
		}
	}
	errb.Reset()
	if code := run([]string{"keys", "generate", prefix}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "already exists") {
		t.Fatalf("overwrite: %d %q", code, errb.String())
	}
}
