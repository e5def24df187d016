package station_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/trainrun"
)

func fileLayer(t *testing.T, name, body string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))})
	tw.Write([]byte(body))
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// The attack of issue 9 at a whole stop: a copy of an approved train, on an
// approved non-empty base, whose manifest points base layer 0 at another
// blob (config and diff ids untouched). The station refuses it before the
// train runs and pushes nothing; the genuine train runs.
func TestStationRefusesSwappedBaseLayer(t *testing.T) {
	runner := needRunc(t)
	base, err := mutate.AppendLayers(empty.Image, fileLayer(t, "etc/base.txt", "approved base"))
	if err != nil {
		t.Fatal(err)
	}
	evil := fileLayer(t, "etc/base.txt", "not the approved base")
	for _, tamper := range []bool{false, true} {
		n := newNet(t, runner, "st1")
		code := aggregateCode(t)
		d, err := creator.ApprovalDigest(n.ctx, code, n.exec, base)
		if err != nil {
			t.Fatal(err)
		}
		n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"alice"}})
		b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: []string{"st1"}, Exec: n.exec}, CodeDir: code, Base: base, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		ref := n.network.Inbox("st1") + ":t1"
		if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
			t.Fatal(err)
		}
		b.Release()
		if tamper {
			swapBaseLayer(t, ref, evil)
		}
		st, err := n.stations["st1"].Process(n.ctx, ref)
		if !tamper {
			if err != nil {
				t.Fatalf("genuine train: %v", err)
			}
			continue
		}
		if !errors.Is(err, trainrun.ErrLayerDigest) || station.Classify(err) != station.ClassRefused {
			t.Fatalf("swapped base layer: expected a refusal with ErrLayerDigest, got %v (%s; stop %+v)", err, station.Classify(err), st)
		}
		out, _ := name.ParseReference(n.network.Outbox("alice") + ":t1")
		if _, err := remote.Head(out); err == nil || (!strings.Contains(err.Error(), "404") && !strings.Contains(err.Error(), "MANIFEST_UNKNOWN")) {
			t.Fatalf("something reached the creator's outbox: %v", err)
		}
	}
}

// TestDamagedBaseLayerTransferRetried: the registry serves a genuine
// train's base layer with one byte changed (the manifest and config are the
// creator's). Nothing runs; the stop is transient, not refused (that would
// refuse the genuine train for good), and runs once the bytes are whole.
func TestDamagedBaseLayerTransferRetried(t *testing.T) {
	runner := needRunc(t)
	base, err := mutate.AppendLayers(empty.Image, fileLayer(t, "etc/base.txt", "approved base"))
	if err != nil {
		t.Fatal(err)
	}
	n := newNet(t, runner, "st1")
	code := aggregateCode(t)
	d, err := creator.ApprovalDigest(n.ctx, code, n.exec, base)
	if err != nil {
		t.Fatal(err)
	}
	n.trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"alice"}})
	b, err := creator.Create(n.ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: n.alice, Trust: n.trust}, Spec: hardened.Spec{ID: "t1", Route: []string{"st1"}, Exec: n.exec}, CodeDir: code, Base: base, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	ref := n.network.Inbox("st1") + ":t1"
	if _, err := n.rc.Push(n.ctx, b.Image, ref); err != nil {
		t.Fatal(err)
	}
	layers, _ := base.Layers()
	ld, _ := layers[0].Digest()
	n.gate.corrupt = ld.String()
	st, err := n.stations["st1"].Process(n.ctx, ref)
	// Which check trips first depends on where the byte lands (the tar
	// reader, or the blob digest: ErrBlobMismatch); either way the stop is
	// transient.
	if station.Classify(err) != station.Transient || st.State == station.Done {
		t.Fatalf("damaged base layer: %v (%s; stop %+v)", err, station.Classify(err), st)
	}
	n.gate.corrupt = ""
	if st, err := n.stations["st1"].Process(n.ctx, ref); err != nil || st.State != station.Done {
		t.Fatalf("whole bytes afterwards: %+v, %v", st, err)
	}
}
