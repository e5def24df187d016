package station

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/trainimage"
)

// A stop notice lives in the creator's outbox as an OCI 1.1 artifact:
// artifactType hardened.NoticeType, the empty config, and one layer holding
// the DSSE envelope as JSON, titled so that `oras pull` writes it to a file.
const (
	NoticeLayerType = "application/vnd.dsse.envelope.v1+json"
	emptyConfigType = "application/vnd.oci.empty.v1+json"
	noticeTitle     = "stop-notice.dsse.json"
	// maxNoticeManifest and maxNoticeEnvelope bound what FetchNotices reads
	// before anything is verified: the manifest is a few hundred bytes, the
	// envelope about 4/3 of its payload.
	maxNoticeManifest = 16 << 10
	maxNoticeEnvelope = 2 * hardened.MaxNoticeSize
)

var (
	emptyConfig = []byte("{}")
	tagPattern  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// NoticeTag is the outbox tag of the notice of stationID about trainID:
// "<train>.notice.<station>" when that is a valid tag and the station id has
// no '.' (so the last ".notice." splits it one way only), else
// "notice-<sha256 of both>". The plain form always contains ".notice." and
// the hashed one never does, so distinct pairs never share a tag.
func NoticeTag(trainID, stationID string) string {
	t := trainID + ".notice." + stationID
	if stationID != "" && !strings.Contains(stationID, ".") && tagPattern.MatchString(t) {
		return t
	}
	sum := sha256.Sum256([]byte(strconv.Itoa(len(trainID)) + ":" + trainID + stationID))
	return "notice-" + hex.EncodeToString(sum[:])
}

// rawManifest is a manifest written as is by remote.Put.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

func descriptorOf(l v1.Layer, ann map[string]string) (v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size, Annotations: ann}, nil
}

// Outbox is one user's outbox on a network, through a registry client:
// where finished trains arrive and stations leave notices.
type Outbox struct {
	Client  *registry.Client
	Network Network
	User    string
}

// PushNotice signs nt with the station's key and pushes it to the outbox
// under NoticeTag(nt.Train, nt.Station). An older notice under that tag is
// replaced (a retried stop may end again, the newer notice wins); anything
// else there (a train) is left alone and the push refused with
// registry.ErrExists. It returns "repo:tag@digest".
func (o Outbox) PushNotice(ctx context.Context, key *hardened.PrivateKey, nt hardened.Notice) (ref string, err error) {
	c := o.Client
	env, err := hardened.SignNotice(key, nt)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(env)
	if err != nil {
		return "", err
	}
	repo, err := c.ParseRepository(o.Network.Outbox(o.User))
	if err != nil {
		return "", err
	}
	tag := repo.Tag(NoticeTag(nt.Train, nt.Station))
	// Only the manifest decides: an older notice, even a corrupt one, is
	// replaced; anything else is not ours to replace.
	switch old, err := getManifest(ctx, c, tag); {
	case errors.Is(err, registry.ErrNotFound):
	case errors.Is(err, ErrNotNotice):
		return "", fmt.Errorf("push notice %s: %w (%w)", tag, registry.ErrExists, err)
	case err != nil:
		return "", fmt.Errorf("push notice: %w", err)
	case old.ArtifactType != hardened.NoticeType:
		return "", fmt.Errorf("push notice %s: %w (%w: artifact type %q)", tag, registry.ErrExists, ErrNotNotice, old.ArtifactType)
	}
	cfg := static.NewLayer(emptyConfig, emptyConfigType)
	layer := static.NewLayer(data, NoticeLayerType)
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: hardened.NoticeType}
	if m.Config, err = descriptorOf(cfg, nil); err != nil {
		return "", err
	}
	ld, err := descriptorOf(layer, map[string]string{"org.opencontainers.image.title": noticeTitle})
	if err != nil {
		return "", err
	}
	m.Layers = []v1.Descriptor{ld}
	opts := c.RemoteOptions(ctx)
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, opts...); err != nil {
			return "", fmt.Errorf("push notice %s: %w", tag, err)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(tag, rawManifest{raw: raw, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return "", fmt.Errorf("push notice %s: %w", tag, err)
	}
	sum := sha256.Sum256(raw)
	return tag.String() + "@sha256:" + hex.EncodeToString(sum[:]), nil
}

// ErrNotNotice is wrapped when a notice tag holds something other than a
// stop notice artifact (a train, another artifact, an oversized manifest).
var ErrNotNotice = errors.New("not a stop notice artifact")

// FetchNotices returns the signed notices that stations sent to the outbox
// about trainID, one per station that sent one (missing ones are skipped),
// unverified: the caller checks each with hardened.VerifyNotice. Manifests
// and envelopes are bounded before they are read; a tag holding anything
// but a notice artifact is an error that names it.
func (o Outbox) FetchNotices(ctx context.Context, trainID string, stations ...string) ([]dsse.Envelope, error) {
	c := o.Client
	repo, err := c.ParseRepository(o.Network.Outbox(o.User))
	if err != nil {
		return nil, err
	}
	var out []dsse.Envelope
	seen := map[string]bool{}
	for _, st := range stations {
		tag := NoticeTag(trainID, st)
		if seen[tag] {
			continue
		}
		seen[tag] = true
		env, err := getNotice(ctx, c, repo.Tag(tag))
		if errors.Is(err, registry.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("notice of station %q: %w", st, err)
		}
		out = append(out, *env)
	}
	return out, nil
}

// getManifest reads the manifest at tag: HEAD for its size, then the
// manifest by the digest HEAD named. A missing tag is registry.ErrNotFound.
func getManifest(ctx context.Context, c *registry.Client, tag name.Tag) (*v1.Manifest, error) {
	opts := c.RemoteOptions(ctx)
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", tag, registry.ErrNotFound)
		}
		return nil, fmt.Errorf("head %s: %w", tag, err)
	}
	if desc.Size > maxNoticeManifest {
		return nil, fmt.Errorf("%w: %w: manifest of %s is %d bytes", ErrNotNotice, trainimage.ErrLimit, tag, desc.Size)
	}
	dref := tag.Context().Digest(desc.Digest.String())
	got, err := remote.Get(dref, opts...)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", tag, err)
	}
	if int64(len(got.Manifest)) > maxNoticeManifest {
		return nil, fmt.Errorf("%w: %w: manifest of %s is %d bytes", ErrNotNotice, trainimage.ErrLimit, tag, len(got.Manifest))
	}
	var m v1.Manifest
	if err := json.Unmarshal(got.Manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: manifest: %v", ErrNotNotice, tag, err)
	}
	return &m, nil
}

// getNotice reads the notice artifact at tag: its manifest (getManifest),
// then its one layer, each bounded.
func getNotice(ctx context.Context, c *registry.Client, tag name.Tag) (*dsse.Envelope, error) {
	m, err := getManifest(ctx, c, tag)
	if err != nil {
		return nil, err
	}
	opts := c.RemoteOptions(ctx)
	if m.ArtifactType != hardened.NoticeType || len(m.Layers) != 1 || m.Layers[0].MediaType != NoticeLayerType {
		return nil, fmt.Errorf("%w: %s has artifact type %q and %d layers", ErrNotNotice, tag, m.ArtifactType, len(m.Layers))
	}
	ld := m.Layers[0]
	if ld.Size < 0 || ld.Size > maxNoticeEnvelope {
		return nil, fmt.Errorf("%w: %w: notice at %s is %d bytes, at most %d", ErrNotNotice, trainimage.ErrLimit, tag, ld.Size, maxNoticeEnvelope)
	}
	l, err := remote.Layer(tag.Context().Digest(ld.Digest.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", tag, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", tag, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, ld.Size+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", tag, err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != ld.Size || ld.Digest.Algorithm != "sha256" || hex.EncodeToString(sum[:]) != ld.Digest.Hex {
		return nil, fmt.Errorf("%w: notice blob at %s does not match its descriptor", hardened.ErrTampered, tag)
	}
	env, err := decodeNoticeEnvelope(data)
	if err != nil {
		return nil, fmt.Errorf("notice at %s: %w", tag, err)
	}
	return env, nil
}

// decodeNoticeEnvelope decodes a DSSE envelope strictly: unknown fields and
// trailing data are ErrMalformed.
func decodeNoticeEnvelope(data []byte) (*dsse.Envelope, error) {
	var env dsse.Envelope
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&env); err != nil {
		return nil, fmt.Errorf("%w: not a DSSE envelope: %v", hardened.ErrMalformed, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the DSSE envelope", hardened.ErrMalformed)
	}
	return &env, nil
}
