package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/trainyard/trainyard/seal"
)

const unsealChildEnv = "TRAINYARD_TEST_UNSEAL_CHILD_ARGS"

// TestHelperUnsealChild is the subprocess TestUnsealKilledLeavesNoPlaintext
// kills: the real CLI in its own process. It does nothing in a normal run.
func TestHelperUnsealChild(t *testing.T) {
	args := os.Getenv(unsealChildEnv)
	if args == "" {
		return
	}
	os.Exit(run(strings.Split(args, "\x1f"), strings.NewReader(""), os.Stdout, os.Stderr))
}

// TestUnsealKilledLeavesNoPlaintext: SIGKILL of `unseal --to oci:` while
// it writes blobs leaves no partial plaintext in the layout, and the next
// unseal completes and leaves no temp files either.
func TestUnsealKilledLeavesNoPlaintext(t *testing.T) {
	dir := t.TempDir()
	// Big enough that the second pass takes a while to write.
	img, err := random.Image(32<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "big.sealed")
	res, err := seal.SealFile(context.Background(), archive, []seal.Source{{Name: "pht/big:1", Image: img}}, seal.WithArchiveID("ar-kill"))
	if err != nil {
		t.Fatal(err)
	}
	dk, ff := filepath.Join(dir, "dk.json"), filepath.Join(dir, "frag")
	if err := seal.WriteDeviceKeyFile(dk, res.Header.ArchiveID, res.Shares[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ff, res.Shares[0].Fragment, 0o600); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "layout")
	blobs := filepath.Join(layout, "blobs", "sha256")
	args := []string{"unseal", archive, "--fragment-file", ff, "--device-key", dk, "--to", "oci:" + layout}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperUnsealChild$")
	cmd.Env = append(os.Environ(), unsealChildEnv+"="+strings.Join(args, "\x1f"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill as soon as the child holds a blob file open for writing.
	fdDir := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "fd")
	deadline := time.Now().Add(60 * time.Second)
	killed := false
	for !killed && time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("unseal finished (%v) before it could be killed mid-write; make the archive bigger", err)
		default:
		}
		ents, _ := os.ReadDir(fdDir)
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && strings.HasPrefix(l, blobs+"/") {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if !killed {
		_ = cmd.Process.Kill()
		t.Fatal("never saw the child write a blob")
	}
	<-exited

	// What the kill left: only whole, verified blobs, no temp files, no index.
	checkLayoutClean(t, blobs)
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err == nil {
		t.Fatal("index.json written by a killed unseal")
	}
	// The next run completes and leaves nothing extra either.
	mustRun(t, nil, args...)
	checkLayoutClean(t, blobs)
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Fatal(err)
	}
}

// checkLayoutClean fails on any file in blobs that is not a complete blob
// matching its name.
func checkLayoutClean(t *testing.T, blobs string) {
	t.Helper()
	ents, err := os.ReadDir(blobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(blobs, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(h.Sum(nil)) != e.Name() {
			t.Fatalf("layout holds %s, which is not a verified blob (partial plaintext?)", e.Name())
		}
	}
}
