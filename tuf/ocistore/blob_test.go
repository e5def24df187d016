package ocistore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/trainyard/trainyard/internal/testutil"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
)

// flipTransport changes one byte of every blob body it passes.
type flipTransport struct{ on *bool }

func (f flipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !*f.on || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		b[len(b)/2] ^= 1
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

// TestOpenBlobTampered: OpenBlob's own digest check is the only hash the
// client makes for a single-part target, so a changed byte must read as
// tuf.ErrTampered at EOF (this pins go-containerregistry's message, which
// checkedBlob matches), and intact bytes must read cleanly.
func TestOpenBlobTampered(t *testing.T) {
	srv := testutil.Registry(t)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	data := bytes.Repeat([]byte("target bytes "), 5000)
	repo, _ := name.NewRepository(host + "/t/r")
	if err := remote.WriteLayer(repo, static.NewLayer(data, TargetMediaType)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	on := false
	s, err := New(registry.NewClient(registry.WithInsecure(true), registry.WithTransport(flipTransport{&on})), host+"/t/r")
	if err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []bool{false, true} {
		on = tamper
		rc, err := s.OpenBlob(context.Background(), hex.EncodeToString(sum[:]))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if tamper && !errors.Is(err, tuf.ErrTampered) {
			t.Fatalf("changed byte: %v", err)
		}
		if !tamper && (err != nil || !bytes.Equal(got, data)) {
			t.Fatalf("intact blob: %v", err)
		}
	}
}
