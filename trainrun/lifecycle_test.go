package trainrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/train"
)

// testStationEnv makes the test binary a "station" that runs one long train
// (see testStationMain), for tests that kill it.
const testStationEnv = "TRAINRUN_TEST_STATION"

func testStationMain() int {
	img, err := train.ImageFromBinary(os.Getenv("TRAINRUN_TEST_PROBE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var r Runner
	if host := os.Getenv("TRAINRUN_TEST_DOCKER_HOST"); host != "" {
		d, err := NewDocker(WithDockerHost(host))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		d.noWatchdog = os.Getenv("TRAINRUN_TEST_NO_WATCHDOG") == "1"
		r = d
	} else {
		rc := NewRunc(WithStateDir(os.Getenv("TRAINRUN_TEST_STATE")), WithBundleDir(os.Getenv("TRAINRUN_TEST_BUNDLES")))
		rc.noWatchdog = os.Getenv("TRAINRUN_TEST_NO_WATCHDOG") == "1"
		r = rc
	}
	_, err = r.Run(context.Background(), img, RunSpec{ResultsDir: os.Getenv("TRAINRUN_TEST_RESULTS"),
		Args: []string{"/opt/pht_train/probe", "hold", "/opt/pht_results/started", "600"}})
	fmt.Fprintln(os.Stderr, "station: run ended:", err)
	return 1
}

type killedStation struct {
	state, bundles, results string
	pid                     int // the container's init on the host
	id                      string
}

// startAndKillStation runs a long train in a station subprocess, waits until
// the train runs, and kills the station with SIGKILL.
func startAndKillStation(t *testing.T, watchdog bool) killedStation {
	t.Helper()
	needRunc(t)
	probeImage(t)
	k := killedStation{state: t.TempDir(), bundles: t.TempDir(), results: filepath.Join(t.TempDir(), "results")}
	if err := os.Mkdir(k.results, 0o755); err != nil {
		t.Fatal(err)
	}
	// The results filesystem a killed station leaves mounted is removed here
	// at the latest, as a restarted station does.
	t.Cleanup(func() { RemoveTree(filepath.Dir(k.results)) })
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testStationEnv+"=1", "TRAINRUN_TEST_PROBE="+filepath.Join(probe.dir, "probe"),
		"TRAINRUN_TEST_STATE="+k.state, "TRAINRUN_TEST_BUNDLES="+k.bundles, "TRAINRUN_TEST_RESULTS="+k.results)
	if !watchdog {
		cmd.Env = append(cmd.Env, "TRAINRUN_TEST_NO_WATCHDOG=1")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(k.results, "started")); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("the station ended before the train started: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the train did not start: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids := runcIDs(t, k.state)
	if len(ids) != 1 {
		t.Fatalf("containers before the kill: %v", ids)
	}
	k.id = ids[0]
	out, err := exec.Command("runc", "--root", k.state, "state", k.id).Output()
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Pid int }
	json.Unmarshal(out, &st)
	k.pid = st.Pid
	if k.pid <= 0 || !alive(k.pid) {
		t.Fatalf("container init pid %d not running", k.pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	return k
}

func runcIDs(t *testing.T, state string) []string {
	t.Helper()
	out, err := exec.Command("runc", "--root", state, "list", "-q").Output()
	if err != nil {
		t.Fatalf("runc list: %v", err)
	}
	return strings.Fields(string(out))
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead already.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func (k killedStation) wantGone(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ids, entries := runcIDs(t, k.state), dirEntries(k.bundles)
		if len(ids) == 0 && len(entries) == 0 && !alive(k.pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: containers %v, bundles %v, train pid %d alive %v", within, ids, entries, k.pid, alive(k.pid))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func dirEntries(dir string) []string {
	es, _ := os.ReadDir(dir)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// SIGKILL of the station mid-run: the watchdog takes the container down
// with it and removes the bundle (and the decrypted code in it).
func TestRuncTrainDiesWithKilledStation(t *testing.T) {
	k := startAndKillStation(t, true)
	k.wantGone(t, 30*time.Second)
}

// Killed together with its watchdog (or on a host where it could not run),
// the station leaves a running train; Cleanup at the next start removes it.
func TestRuncCleanupAfterKilledStation(t *testing.T) {
	k := startAndKillStation(t, false)
	// This is the attack: without the watchdog the train outlives the station.
	time.Sleep(time.Second)
	if !alive(k.pid) || len(runcIDs(t, k.state)) != 1 {
		t.Fatalf("expected the orphaned train to be still running")
	}
	r := NewRunc(WithStateDir(k.state), WithBundleDir(k.bundles))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	k.wantGone(t, 5*time.Second)
	// The results filesystem the station had mounted goes with RemoveTree.
	if err := RemoveTree(filepath.Dir(k.results)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), filepath.Dir(k.results)) {
		t.Fatal("a results filesystem is still mounted")
	}
	if _, err := os.Stat(filepath.Dir(k.results)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("results left: %v", err)
	}
}

// Cleanup leaves a live run alone, in this process or another.
func TestRuncCleanupSparesLiveRun(t *testing.T) {
	needRunc(t)
	state, bundles := t.TempDir(), t.TempDir()
	r := NewRunc(WithStateDir(state), WithBundleDir(bundles))
	results := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() {
		_, err := r.Run(ctx, probeImage(t), RunSpec{ResultsDir: results,
			Args: []string{"/opt/pht_train/probe", "hold", "/opt/pht_results/started", "600"}})
		runErr <- err
	}()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(results, "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the train did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A stale bundle beside the live one, as a killed run leaves it.
	stale := filepath.Join(bundles, bundlePrefix+"stale")
	os.MkdirAll(filepath.Join(stale, "rootfs/opt/pht_train"), 0o755)
	os.WriteFile(filepath.Join(stale, "rootfs/opt/pht_train/decrypted.py"), []byte("secret code"), 0o644)
	os.WriteFile(filepath.Join(stale, bundleLock), nil, 0o600)
	if err := NewRunc(WithStateDir(state), WithBundleDir(bundles)).Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := runcIDs(t, state); len(ids) != 1 {
		t.Fatalf("Cleanup touched the live run: containers %v", ids)
	}
	if es := dirEntries(bundles); len(es) != 1 || !strings.HasPrefix(es[0], bundlePrefix) || es[0] == filepath.Base(stale) {
		t.Fatalf("bundles after Cleanup: %v (want only the live one)", es)
	}
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		"/plain": "/plain", `/with\040space`: "/with space", `/tab\011x`: "/tab\tx", `/bad\09x`: `/bad\09x`, `/end\04`: `/end\04`, `\\`: `\\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func FuzzUnescapeMount(f *testing.F) {
	f.Add(`/a\040b`)
	f.Add(`\777\`)
	f.Fuzz(func(t *testing.T, s string) {
		out := unescapeMount(s)
		if len(out) > len(s) {
			t.Fatalf("unescaping grew %q to %q", s, out)
		}
		if !strings.Contains(s, `\`) && out != s {
			t.Fatalf("changed %q without escapes", s)
		}
	})
}

// The Docker backend's train dies with its station too.
func TestDockerTrainDiesWithKilledStation(t *testing.T) {
	d := needDocker(t)
	killDockerStation(t, d, true)
	wantNoDockerRuns(t, d, 60*time.Second)
}

// Killed together with its watchdog, the station leaves a running container;
// Cleanup at the next start removes it.
func TestDockerCleanupAfterKilledStation(t *testing.T) {
	d := needDocker(t)
	killDockerStation(t, d, false)
	time.Sleep(time.Second)
	if len(dockerTrains(t, d, false)) != 1 {
		t.Fatal("expected the orphaned train to be still running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	wantNoDockerRuns(t, d, 10*time.Second)
}

func dockerTrains(t *testing.T, d *Docker, all bool) []string {
	t.Helper()
	cs, err := d.cli.ContainerList(context.Background(), client.ContainerListOptions{All: all,
		Filters: make(client.Filters).Add("label", "org.trainyard.train=1")})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cs.Items {
		ids = append(ids, c.ID)
	}
	return ids
}

func dockerTrainImages(t *testing.T, d *Docker) int {
	t.Helper()
	is, err := d.cli.ImageList(context.Background(), client.ImageListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, i := range is.Items {
		for _, tag := range i.RepoTags {
			if strings.HasPrefix(tag, "trainyard.local/train:") {
				n++
			}
		}
	}
	return n
}

func wantNoDockerRuns(t *testing.T, d *Docker, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cs, n := dockerTrains(t, d, true), dockerTrainImages(t, d)
		if len(cs) == 0 && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the station's death: containers %v, train images %d", cs, n)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// killDockerStation runs a long train through the Docker backend in a
// station subprocess and kills the station with SIGKILL once it runs.
func killDockerStation(t *testing.T, d *Docker, watchdog bool) {
	t.Helper()
	probeImage(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testStationEnv+"=1", "TRAINRUN_TEST_PROBE="+filepath.Join(probe.dir, "probe"),
		"TRAINRUN_TEST_DOCKER_HOST="+testutil.Dockerd(t), "TRAINRUN_TEST_RESULTS="+t.TempDir())
	if !watchdog {
		cmd.Env = append(cmd.Env, "TRAINRUN_TEST_NO_WATCHDOG=1")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(90 * time.Second)
	for len(dockerTrains(t, d, false)) == 0 {
		select {
		case <-done:
			t.Fatalf("the station ended before the train started: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the train did not start: %s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
}

func TestDockerCleanupSparesLiveRun(t *testing.T) {
	d := needDocker(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() {
		_, err := d.Run(ctx, probeImage(t), RunSpec{ResultsDir: t.TempDir(),
			Args: []string{"/opt/pht_train/probe", "hold", "/opt/pht_results/started", "600"}})
		runErr <- err
	}()
	deadline := time.Now().Add(90 * time.Second)
	for len(dockerTrains(t, d, false)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the train did not start")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := d.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := dockerTrains(t, d, false); len(ids) != 1 {
		t.Fatalf("Cleanup touched the live run: %v", ids)
	}
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v", err)
	}
	wantNoDockerRuns(t, d, 30*time.Second)
}
