package station

import (
	"context"
	"crypto/rsa"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainimage"
)

// legacyStop is a pht-v2 train at this station: pre-run decrypts the train
// in the image, the image's own CMD runs with the previous results in
// /opt/pht_results, post-run seals the results for the route, and the train
// goes to the next station's inbox (the creator's outbox after the last).
type legacyStop struct {
	s     *Station
	key   phtv2.Station
	ref   string
	work  string
	pre   *phtv2.Output
	stop  int
	post  *phtv2.Output
	layer interface{ Remove() error }
}

func (s *Station) openLegacy(ctx context.Context, rsaKey *rsa.PrivateKey, img v1.Image, ref, work string) (trainStop, error) {
	key := phtv2.Station{ID: s.ID, Key: rsaKey}
	// The same manifest and config bounds as v1; the PHT format has no
	// signed sizes, so its state is bounded by train.ReadState's budget.
	if _, err := trainimage.CheckImage(img); err != nil {
		return nil, err
	}
	pre, err := phtv2.PreRun(ctx, img, key, phtv2.WithTempDir(work))
	if err != nil {
		return nil, err
	}
	stop, err := pre.Config.Stop(s.ID)
	if err != nil {
		pre.Close()
		return nil, err
	}
	return &legacyStop{s: s, key: key, ref: ref, work: work, pre: pre, stop: stop.Index}, nil
}

func (t *legacyStop) describe(st *Stop) {
	c := t.pre.Config
	st.Train, st.Index = trainName(t.ref, c.ID), t.stop
	st.Creator = c.Creator.ID.String()
	for i := 0; ; i++ {
		p := c.StopAt(i)
		if p == nil {
			break
		}
		st.Route = append(st.Route, p.Station.String())
	}
	dest := t.s.Network.Outbox(st.Creator)
	st.Next = st.Creator
	if next := c.StopAt(t.stop + 1); next != nil {
		st.Next = next.Station.String()
		dest = t.s.Network.Inbox(st.Next)
	}
	st.Dest = dest + ":" + st.Train
}

func (t *legacyStop) prepare(ctx context.Context, resultsDir string, _ *Stop) (v1.Image, func(), error) {
	state, err := train.ReadState(ctx, t.pre.Image, t.work)
	if err != nil {
		return nil, nil, err
	}
	err = state.Results.ExtractTo(resultsDir)
	state.Close()
	if err != nil {
		return nil, nil, err
	}
	return t.pre.Image, func() {}, nil
}

func (t *legacyStop) seal(ctx context.Context, resultsDir string, st *Stop) (v1.Image, error) {
	if err := train.CheckResultsDir(ctx, resultsDir, t.s.MaxResults); err != nil {
		return nil, err
	}
	ran, layer, err := train.ReplaceResults(ctx, t.pre.Image, resultsDir, t.work)
	if err != nil {
		return nil, err
	}
	t.layer = layer
	post, err := phtv2.PostRun(ctx, ran, t.key, phtv2.WithTempDir(t.work))
	if err != nil {
		return nil, err
	}
	t.post = post
	if st.Train == "base" {
		return post.Image, nil
	}
	// A PHT station's post-run --rebase pulls REPO:base beside the train:
	// pushed first, so it is there when the train arrives.
	base, err := train.BaseOf(post.Image)
	if err != nil {
		return nil, err
	}
	repo := st.Dest[:strings.LastIndex(st.Dest, ":")]
	return withExtra{Image: post.Image, extra: []push{{img: base, ref: repo + ":base", shared: true}}}, nil
}

func (t *legacyStop) close() {
	if t.post != nil {
		t.post.Close()
	}
	if t.layer != nil {
		t.layer.Remove()
	}
	t.pre.Close()
}

// withExtra is a train image with images that must be pushed before it.
type withExtra struct {
	v1.Image
	extra []push
}

func (w withExtra) extraPushes() []push { return w.extra }

// trainName picks the tag a legacy train travels under: the tag it arrived
// with, else its @id, else "latest".
func trainName(ref, id string) string {
	last := ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.Index(last, ":"); i >= 0 && !strings.Contains(last, "@") {
		return last[i+1:]
	}
	if id != "" && !strings.ContainsAny(id, "/:@ ") && len(id) <= 128 {
		return id
	}
	return "latest"
}
