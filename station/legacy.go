package station

import (
	"context"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/trainyard/trainyard/protocol/phtv2"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

// Protocols a station can run. ProtocolV1 is the default; ProtocolPHTv2 is
// for networks that still send trains built by the PHT tools, with the
// format's weaknesses (research/pht.md §5): every key comes from the train's
// own config, and nobody approves the code.
const (
	ProtocolV1    = "v1"
	ProtocolPHTv2 = "pht-v2"
)

// processLegacy is one stop of a pht-v2 train: pre-run decrypts the train in
// the image, the image's own CMD runs with the previous results in
// /opt/pht_results, post-run seals the results for the route, and the train
// goes to the next station's inbox (the creator's outbox after the last).
func (s *Station) processLegacy(ctx context.Context, ref, work string, st *Stop) error {
	if s.LegacyKey == nil {
		return fmt.Errorf("protocol %s needs the station's RSA key", ProtocolPHTv2)
	}
	key := phtv2.Station{ID: s.ID, Key: s.LegacyKey}
	img, err := PullTrain(ctx, s.Client, ref)
	if err != nil {
		return err
	}
	// The same manifest and config bounds as v1; the PHT format has no
	// signed sizes, so its state is bounded by train.ReadState's budget.
	if _, err := checkImage(img); err != nil {
		return err
	}
	pre, err := phtv2.PreRun(ctx, img, key, phtv2.WithTempDir(work))
	if err != nil {
		return err
	}
	defer pre.Close()
	stop, err := pre.Config.Stop(s.ID)
	if err != nil {
		return err
	}
	st.Train, st.Index = trainName(ref, pre.Config.ID), stop.Index

	resultsDir := filepath.Join(work, "results")
	state, err := train.ReadState(ctx, pre.Image, work)
	if err != nil {
		return err
	}
	err = state.Results.ExtractTo(resultsDir)
	state.Close()
	if err != nil {
		return err
	}
	resultsFS, err := s.mountResults(ctx, resultsDir)
	if err != nil {
		return err
	}
	defer resultsFS.Close()
	trainOut, closeOut, err := s.trainOutput(st)
	if err != nil {
		return err
	}
	res, err := s.Runner.Run(ctx, pre.Image, trainrun.RunSpec{
		ResultsDir: resultsDir, DataDir: s.DataDir, Env: []string{"PHT_STATION_ID=" + s.ID},
		Memory: s.Memory, PIDs: s.PIDs, CPUs: s.CPUs, Timeout: s.Timeout, MaxResults: s.MaxResults, Stdout: trainOut, Stderr: trainOut,
	})
	closeOut()
	st.ExitCode = res.ExitCode
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	pctx, cancelPost := s.postRunContext(ctx)
	defer cancelPost()
	if err := train.CheckResultsDir(pctx, resultsDir, s.MaxResults); err != nil {
		return err
	}
	ran, layer, err := train.ReplaceResults(pctx, pre.Image, resultsDir, work)
	if err != nil {
		return postRunErr(pctx, err)
	}
	defer layer.Remove()
	post, err := phtv2.PostRun(pctx, ran, key, phtv2.WithTempDir(work))
	if err != nil {
		return postRunErr(pctx, err)
	}
	defer post.Close()

	dest := s.Network.Outbox(pre.Config.Creator.ID.String())
	st.Next = pre.Config.Creator.ID.String()
	if next := pre.Config.StopAt(stop.Index + 1); next != nil {
		st.Next = next.Station.String()
		dest = s.Network.Inbox(st.Next)
	}
	// A PHT station's post-run --rebase pulls REPO:base beside the train:
	// push it first, so it is there when the train arrives.
	if st.Train != "base" {
		base, err := train.BaseOf(post.Image)
		if err != nil {
			return err
		}
		if _, err := s.Client.Push(ctx, base, dest+":base"); err != nil {
			return fmt.Errorf("push %s:base: %w", dest, err)
		}
	}
	dest += ":" + st.Train
	dgst, err := s.Client.Push(ctx, post.Image, dest)
	if err != nil {
		return err
	}
	st.Pushed = dest + "@" + dgst.String()
	return nil
}

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

// LoadLegacyKey reads a PHT station key (PEM, PKCS#1 or PKCS#8, maybe
// encrypted with PRIVATE_KEY_PASSWORD).
func LoadLegacyKey(path string) (*rsa.PrivateKey, error) {
	return phtv2.LoadPrivateKeyFile(path, []byte(os.Getenv("PRIVATE_KEY_PASSWORD")))
}
