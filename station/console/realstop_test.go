package console_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/trainyard/trainyard/creator"
	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/protocol/hardened"
	"github.com/trainyard/trainyard/station"
	"github.com/trainyard/trainyard/station/console"
	"github.com/trainyard/trainyard/train"
	"github.com/trainyard/trainyard/trainrun"
)

// TestBrowserRealStop: the whole operator story on a real station: a
// verified train (real keys, real approval, pushed to the inbox) arrives
// held while the page is open; the Train page shows the station's own
// inspection of it; accept lets serve run it with runc; its results wait
// for review, are released, and the train reaches its creator's outbox.
func TestBrowserRealStop(t *testing.T) {
	runner := trainrun.NewRunc(trainrun.WithStateDir(t.TempDir()), trainrun.WithBundleDir(t.TempDir()))
	if err := runner.Available(); err != nil {
		testutil.SkipUnlessCI(t, "runc not usable here: %v", err)
	}
	var st *station.Station
	f := newFixture(t, func(o *console.Options) {
		o.Inspect = func(ctx context.Context, s *station.Stop) (*station.Inspection, error) {
			return st.Inspect(ctx, s.Source)
		}
	})
	st = f.st
	trust := hardened.NewMemoryTrust()
	alice, _ := hardened.GenerateKey()
	key, _ := hardened.GenerateKey()
	trust.AddUser("alice", alice.Public())
	trust.AddStation("hospital-a", key.Public())
	st.Protocol, st.Trust, st.Runner, st.DataDir = station.V1{Key: key}, trust, runner, t.TempDir()
	st.Logger = slog.New(slog.DiscardHandler)

	code := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := train.BuildStatic(ctx, "../../trainrun/testdata/probe", filepath.Join(code, "probe")); err != nil {
		t.Fatal(err)
	}
	exec := hardened.ExecConfig{Entrypoint: []string{"/opt/pht_train/probe", "write", "/opt/pht_results/summary.csv", "site,patients\nhospital-a,51\n"},
		WorkingDir: "/opt/pht_train"}
	d, err := creator.ApprovalDigest(ctx, code, exec, empty.Image)
	if err != nil {
		t.Fatal(err)
	}
	trust.Approve(hardened.Approval{Digest: d, Approvers: []string{"ethics-board"}})

	srv := &station.Server{Station: st, Interval: 100 * time.Millisecond}
	sctx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, "", nil) }()
	defer func() { stopServe(); <-served }()

	b := newBrowser(t, f)
	b.login()
	b.eval(`window.__samePage = true`)
	built, err := creator.Create(ctx, creator.Options{Creator: hardened.Party{ID: "alice", Key: alice, Trust: trust}, Spec: hardened.Spec{ID: "study-50", Route: []string{"hospital-a"}, Exec: exec}, CodeDir: code, Base: empty.Image, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer built.Release()
	if _, err := f.rc.Push(ctx, built.Image, st.Network.Inbox("hospital-a")+":study-50"); err != nil {
		t.Fatal(err)
	}
	b.do("the held train arrives live", chromedp.WaitVisible(chromedp.Search(`//section[@id="live"]//a[contains(., "study-50")]`)))
	if !b.eval(`window.__samePage === true`) {
		t.Fatal("the queue was reloaded, not updated live")
	}
	b.clickLive("open the train", `//section[@id="live"]//a[contains(., "study-50")]`,
		chromedp.WaitVisible(chromedp.CSS(`button[value=accept]`)))
	if p := b.text(`main`); !strings.Contains(p, "Inspection (verified)") || !strings.Contains(p, "probe") || !strings.Contains(p, "ethics-board") {
		t.Fatalf("train page without the station's inspection: %s", p)
	}
	b.do("accept", chromedp.Click(chromedp.CSS(`button[value=accept]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))

	// serve runs it for real; the queue follows.
	b.open("/")
	b.do("its results wait for review", chromedp.WaitVisible(chromedp.Search(`//section[@id="live"]//a[contains(., "Review the results")]`)))
	b.clickLive("open the review", `//section[@id="live"]//a[contains(., "Review the results")]`,
		chromedp.WaitVisible(chromedp.CSS(`button[value=release]`)))
	if tree := b.text(`ul.tree`); !strings.Contains(tree, "summary.csv") {
		t.Fatalf("results tree: %s", tree)
	}
	dest := st.Network.Outbox("alice") + ":study-50"
	if _, err := f.rc.Head(ctx, dest); err == nil {
		t.Fatal("results left before release")
	}
	b.do("release", chromedp.Click(chromedp.CSS(`button[value=release]`)), chromedp.WaitVisible(chromedp.CSS(`p.done`)))
	if _, err := f.rc.Head(ctx, dest); err != nil {
		t.Fatalf("the released train is not in the creator's outbox: %v", err)
	}
	b.open("/history?train=study-50")
	b.do("history", chromedp.WaitVisible(chromedp.Search(`//td/a[text()="study-50"]`)))
	if h := b.text(`table`); !strings.Contains(h, "done") {
		t.Fatalf("history: %s", h)
	}
	b.do("its logs", chromedp.Click(chromedp.Search(`//tr[td/a[text()="study-50"]]//a[text()="logs"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre.log`)))
	if l := b.text(`pre.log`); !strings.Contains(l, `output of train "study-50"`) {
		t.Fatalf("log page: %q", l)
	}
}
