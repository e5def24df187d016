package station

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/trainimage"
	"github.com/trainyard/trainyard/trainrun"
)

// MaxInspectEntries caps the code entries an Inspection lists; the counts
// and the byte total always cover the whole tree.
const MaxInspectEntries = 10000

// Inspection is what a station knows about a train before running it: every
// field comes from a train that passed the checks of a stop (Process) at
// this station, up to and including the decryption of its code. Its JSON
// field names are stable (docs/cli.md, `station inspect -o json`).
type Inspection struct {
	Verified    bool        `json:"verified"` // always true: a train that fails a check is an error
	Station     string      `json:"station"`  // the inspecting station
	Source      string      `json:"source"`   // the reference inspected
	Protocol    string      `json:"protocol"` // "trainyard/v1"
	ID          string      `json:"id"`
	TrainDigest string      `json:"train_digest"` // digest of the creator-signed statement
	Created     time.Time   `json:"created"`
	Creator     string      `json:"creator"`
	Route       []RouteStop `json:"route"`
	// Index is this station's stop on the route.
	Index int `json:"index"`
	// Next is where the train goes after this stop: the next station, or
	// the creator (NextKind "creator") after the last one.
	Next     string          `json:"next"`
	NextKind string          `json:"next_kind"` // "station" or "creator"
	Approval InspectApproval `json:"approval"`
	Exec     InspectExec     `json:"exec"`
	Base     string          `json:"base"` // the signed base id ("scratch" for none)
	Code     InspectCode     `json:"code"`
	// Results is the sealed results blob of the previous stop (not
	// decrypted); nil at the first stop.
	Results *InspectBlob `json:"results"`
	Image   InspectImage `json:"image"`
}

// RouteStop is one station of the route. Time is the station's signed stop
// time, set for done stops only.
type RouteStop struct {
	Index   int        `json:"index"`
	Station string     `json:"station"`
	Done    bool       `json:"done"`
	Here    bool       `json:"here"` // this station's stop
	Time    *time.Time `json:"time,omitempty"`
}

// InspectApproval is the approval the train runs under, from the trust
// directory.
type InspectApproval struct {
	Digest    string   `json:"digest"`
	Approvers []string `json:"approvers"`
	// Stations limits the approval; empty means every station of the route.
	Stations []string `json:"stations"`
	// Label, Expires (RFC 3339, "" for none) and the approvers' Comments
	// are terms of the signed approval document that the protocol does not
	// need; Inspect leaves them empty and the CLI fills them from the trust
	// directory.
	Label    string   `json:"label"`
	Expires  string   `json:"expires"`
	Comments []string `json:"comments"`
}

// InspectExec is the signed exec config (the image's config was checked to
// be the same). Lists are never null.
type InspectExec struct {
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"working_dir"`
	User       string   `json:"user"`
}

// InspectCode summarizes the decrypted code tree (what runs at
// /opt/pht_train). Files, Dirs and Bytes count the whole tree; Entries is
// sorted by path and capped at MaxInspectEntries (Truncated says so).
type InspectCode struct {
	Manifest  string      `json:"manifest"` // the signed code manifest digest
	Files     int         `json:"files"`
	Dirs      int         `json:"dirs"`
	Bytes     int64       `json:"bytes"` // sum of the files' sizes
	Entries   []CodeEntry `json:"entries"`
	Truncated bool        `json:"truncated"`
	Sealed    InspectBlob `json:"sealed"` // the encrypted code blob
}

// CodeEntry is one file or directory of the code tree.
type CodeEntry struct {
	Path   string `json:"path"`
	Type   string `json:"type"` // "file" or "dir"
	Mode   string `json:"mode"` // permission bits, octal, e.g. "0755"
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // files only
}

// InspectBlob is a signed blob by digest and size.
type InspectBlob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// InspectImage describes the pulled image. Size is the compressed total
// the manifest names (config plus every layer); BaseLayers counts the
// layers below the state layer.
type InspectImage struct {
	Digest     string `json:"digest"` // manifest digest
	Size       int64  `json:"size"`
	Layers     int    `json:"layers"`
	BaseLayers int    `json:"base_layers"`
}

// Inspect fully verifies the train at ref for this station without running
// it: the checks of a stop before its run (pull; the envelope and every stop
// record against the trust store; the blobs against their signed digests;
// the base id and the exec config against the signed ones; the route
// position, approval and station key), the check the runtime makes while it
// unpacks (each base layer's bytes against its diff id), and the code is
// decrypted, into a private directory under WorkDir removed before Inspect
// returns, to list it. The previous stop's results are not decrypted.
// Nothing is marked and nothing is pushed: the stop can run afterwards. A
// train that is not due here is refused as a stop refuses it
// (hardened.ErrRoute, ErrReplay, ...). Only ProtocolV1 trains can be
// inspected (else hardened.ErrUnsupported).
func (s *Station) Inspect(ctx context.Context, ref string) (*Inspection, error) {
	if s.protocol() == ProtocolPHTv2 {
		return nil, fmt.Errorf("%w: inspect supports v1 trains", hardened.ErrUnsupported)
	}
	key := s.v1Key()
	if key == nil || s.Trust == nil || s.Client == nil {
		return nil, fmt.Errorf("station %q: inspect needs a key, a trust store and a registry client", s.ID)
	}
	// A "stop-" directory held like a stop's: Recover removes it, with the
	// decrypted code, should this process be killed before it does.
	work, err := os.MkdirTemp(s.WorkDir, "stop-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	unhold, err := holdWork(work)
	if err != nil {
		return nil, err
	}
	defer unhold()

	img, err := trainimage.Pull(ctx, s.Client, ref)
	if err != nil {
		return nil, err
	}
	if err := notTrain(img); err != nil {
		return nil, err
	}
	// The stop's own verification (envelope, blobs, base id, exec config),
	// so that inspect checks what a stop checks, then the station's checks
	// and the code, without a stop record.
	opened, err := s.openV1(ctx, key, img, work)
	if err != nil {
		return nil, err
	}
	defer opened.close()
	t, ok := opened.(*v1Stop)
	if !ok {
		return nil, fmt.Errorf("station: inspect: unexpected %T for a v1 train", opened)
	}
	tr, closeTrain, err := t.sealed.Open()
	if err != nil {
		return nil, err
	}
	oc, err := hardened.OpenCode(ctx, hardened.Party{ID: s.ID, Key: key, Trust: s.Trust}, tr, filepath.Join(work, "code"))
	closeTrain()
	if err != nil {
		return nil, err
	}
	// Last, as the one check that may move much data: a stop has the
	// runtime compare each base layer with its diff id while unpacking it.
	_, diffIDs, err := trainimage.BaseLayers(img)
	if err != nil {
		return nil, err
	}
	if err := checkBaseLayers(ctx, t.base, diffIDs); err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", trainimage.ErrImage, err)
	}
	dgst, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest digest: %v", trainimage.ErrImage, err)
	}
	in := inspection(s.ID, oc)
	in.Source = ref
	in.Image = InspectImage{Digest: dgst.String(), Size: m.Config.Size, Layers: len(m.Layers), BaseLayers: len(diffIDs)}
	for _, l := range m.Layers {
		in.Image.Size += l.Size
	}
	return in, nil
}

// checkBaseLayers reads each base layer and compares its uncompressed bytes
// with the diff id that the signed base id is made of (the compressed bytes
// are checked against the manifest by the registry client as they stream),
// so a manifest pointing a base layer at other bytes is refused here as a
// stop refuses it (trainrun.ErrLayerDigest). Reads are bounded like an
// unpack (trainrun.DefaultMaxUnpackBytes).
func checkBaseLayers(ctx context.Context, base []v1.Layer, diffIDs []v1.Hash) error {
	for i, l := range base {
		if err := ctx.Err(); err != nil {
			return err
		}
		if diffIDs[i].Algorithm != "sha256" {
			return fmt.Errorf("%w: base layer %d: diff id %s is not sha256", trainrun.ErrLayerDigest, i, diffIDs[i])
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("base layer %d: %w", i, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, io.LimitReader(rc, trainrun.DefaultMaxUnpackBytes+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("base layer %d: %w", i, err)
		}
		if n > trainrun.DefaultMaxUnpackBytes {
			return fmt.Errorf("%w: base layer %d is larger than %d bytes uncompressed", trainimage.ErrLimit, i, trainrun.DefaultMaxUnpackBytes)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != diffIDs[i].Hex {
			return fmt.Errorf("%w: base layer %d is sha256:%s uncompressed, the signed base names %s", trainrun.ErrLayerDigest, i, got, diffIDs[i])
		}
	}
	return nil
}

// inspection fills an Inspection from what OpenCode verified and decrypted.
func inspection(stationID string, oc *hardened.OpenedCode) *Inspection {
	v := oc.Verified
	st := v.Statement
	in := &Inspection{Verified: true, Station: stationID, Protocol: st.Protocol, ID: st.ID, TrainDigest: v.TrainDigest,
		Created: st.Created, Creator: st.Creator.ID, Route: []RouteStop{}, Index: oc.Index, Base: st.Base,
		Approval: InspectApproval{Digest: v.Approval.Digest, Approvers: nonNil(v.Approval.Approvers), Stations: nonNil(v.Approval.Stations),
			Comments: []string{}},
		Exec: InspectExec{Entrypoint: nonNil(st.Exec.Entrypoint), Cmd: nonNil(st.Exec.Cmd), Env: nonNil(st.Exec.Env),
			WorkingDir: st.Exec.WorkingDir, User: st.Exec.User},
		Code: InspectCode{Manifest: st.Code.Manifest, Entries: []CodeEntry{},
			Sealed: InspectBlob{Digest: st.Code.Blob.Digest, Size: st.Code.Blob.Size}},
		Next: st.Creator.ID, NextKind: "creator"}
	if in.Approval.Digest == "" {
		in.Approval.Digest = st.Code.Approval
	}
	for i, p := range st.Route {
		rs := RouteStop{Index: i, Station: p.ID, Done: i < len(v.Stops), Here: i == oc.Index}
		if rs.Done {
			t := v.Stops[i].Time
			rs.Time = &t
		}
		in.Route = append(in.Route, rs)
	}
	if i := oc.Index + 1; i < len(st.Route) {
		in.Next, in.NextKind = st.Route[i].ID, "station"
	}
	if oc.Index > 0 {
		b := v.Stops[oc.Index-1].Output.Blob
		in.Results = &InspectBlob{Digest: b.Digest, Size: b.Size}
	}
	for _, e := range oc.Manifest.Entries {
		switch e.Type {
		case "file":
			in.Code.Files++
			in.Code.Bytes += e.Size
		case "dir":
			in.Code.Dirs++
		}
		if len(in.Code.Entries) == MaxInspectEntries {
			in.Code.Truncated = true
			continue
		}
		ce := CodeEntry{Path: e.Path, Type: e.Type, Mode: fmt.Sprintf("%04o", e.Mode), Size: e.Size}
		if e.Type == "file" {
			ce.SHA256 = "sha256:" + e.SHA256
		}
		in.Code.Entries = append(in.Code.Entries, ce)
	}
	return in
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
