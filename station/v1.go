package station

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/trainimage"
)

// v1Stop is a trainyard/v1 train at this station.
type v1Stop struct {
	s      *Station
	key    *hardened.PrivateKey
	img    v1.Image
	work   string
	sealed *trainimage.Sealed
	v      *hardened.Verified
	base   []v1.Layer
	sess   *hardened.Session
}

// openV1 verifies the envelope (inside readTrain, before any blob is kept)
// and what will run: the signed base, the signed code and the signed exec
// config; the image's own config must agree with them. These checks come
// before the stop is begun, so a tampered copy of a genuine train is
// refused as those bytes and cannot burn the genuine train's stop.
func (s *Station) openV1(ctx context.Context, key *hardened.PrivateKey, img v1.Image, work string) (trainStop, error) {
	sealed, v, err := trainimage.Read(ctx, img, work, func(env *hardened.Envelope) (*hardened.Verified, error) {
		return hardened.Verify(ctx, s.Trust, env)
	}, trainimage.LayerVerified(), // pulled from the registry: ggcr checks each layer's digest
		trainimage.WithProgress(s.Client.Progress()))
	if err != nil {
		return nil, err
	}
	t := &v1Stop{s: s, key: key, img: img, work: work, sealed: sealed, v: v}
	if err := t.check(); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *v1Stop) check() error {
	base, diffIDs, err := trainimage.BaseLayers(t.img)
	if err != nil {
		return err
	}
	if got := trainimage.BaseID(diffIDs); got != t.v.Statement.Base {
		return fmt.Errorf("%w: base layers are %s, the creator signed %s", hardened.ErrTampered, got, t.v.Statement.Base)
	}
	t.base = base
	cf, err := t.img.ConfigFile()
	if err != nil {
		return err
	}
	return hardened.CheckExec(t.v.Statement.Exec, trainimage.ExecOf(cf))
}

func (t *v1Stop) describe(st *Stop) {
	stmt := t.v.Statement
	st.Train, st.Digest, st.Index = stmt.ID, t.v.TrainDigest, len(t.v.Stops)
	st.Key = fmt.Sprintf("%s/%d", t.v.TrainDigest, st.Index)
	st.Creator, st.Approvers = stmt.Creator.ID, t.v.Approval.Approvers
	st.Route = st.Route[:0]
	for _, p := range stmt.Route {
		st.Route = append(st.Route, p.ID)
	}
	dest := t.s.Network.Outbox(stmt.Creator.ID)
	st.Next = stmt.Creator.ID
	if i := st.Index + 1; i < len(stmt.Route) {
		st.Next = stmt.Route[i].ID
		dest = t.s.Network.Inbox(st.Next)
	}
	st.Dest = dest + ":" + stmt.ID
}

func (t *v1Stop) prepare(ctx context.Context, resultsDir string, st *Stop) (v1.Image, func(), error) {
	tr, closeTrain, err := t.sealed.Open()
	if err != nil {
		return nil, nil, err
	}
	codeDir := filepath.Join(t.work, "code")
	sess, err := hardened.PreRun(ctx, hardened.Party{ID: t.s.ID, Key: t.key, Trust: t.s.Trust}, tr,
		hardened.Dirs{Code: codeDir, Results: resultsDir}, hardened.WithMaxResults(t.s.MaxResults))
	closeTrain()
	if err != nil {
		return nil, nil, err
	}
	// The previous results are in resultsDir now; their sealed copy is
	// needed no more.
	if err := t.sealed.DropResults(); err != nil {
		return nil, nil, err
	}
	t.sess = sess
	t.v = sess.Verified()
	st.Session = sess.SessionID()
	return runnableImage(t.img, t.base, codeDir, t.work, sess.Exec())
}

func (t *v1Stop) seal(ctx context.Context, resultsDir string, _ *Stop) (v1.Image, error) {
	resultsPath := filepath.Join(t.work, "results.sealed")
	out, err := os.OpenFile(resultsPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	env, err := t.sess.PostRun(ctx, resultsDir, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	// Spliced: the sealed results are not copied into a layer file; they
	// and the spooled code stay in the work dir until close, after the push
	// or the copy kept for review.
	return trainimage.WriteState(t.img, env, t.sealed.Code, resultsPath)
}

func (t *v1Stop) close() {
	t.sealed.Close()
}
