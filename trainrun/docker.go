package trainrun

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/trainyard/trainyard/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Docker runs trains through the Docker Engine API: the image is loaded into
// the daemon under a throw-away tag, run without network, with a read-only
// root, no capabilities, no new privileges, Docker's default seccomp profile
// and cgroup limits; results travel in and out of an anonymous volume at
// /opt/pht_results by the copy API, so the daemon may be remote. The data
// directory is a read-only bind mount and so must be on the daemon's host.
type Docker struct {
	cli    *client.Client
	unpack UnpackOptions
	// noWatchdog runs without the watchdog (tests of Cleanup alone).
	noWatchdog bool
}

var _ Runner = (*Docker)(nil)

// DockerOption configures a Docker runner.
type DockerOption func(*dockerOpts)

type dockerOpts struct {
	host   string
	unpack UnpackOptions
}

// WithDockerHost sets the daemon address (unix:///var/run/docker.sock,
// tcp://...); default DOCKER_HOST or the platform default.
func WithDockerHost(host string) DockerOption { return func(o *dockerOpts) { o.host = host } }

// WithDockerResultLimits bounds what is copied back from the results volume.
func WithDockerResultLimits(o UnpackOptions) DockerOption {
	return func(d *dockerOpts) { d.unpack = o }
}

// NewDocker returns a Docker-backed Runner. It does not contact the daemon;
// call Available for that.
func NewDocker(opts ...DockerOption) (*Docker, error) {
	var o dockerOpts
	for _, f := range opts {
		f(&o)
	}
	copts := []client.Opt{client.FromEnv}
	if o.host != "" {
		copts = append(copts, client.WithHost(o.host))
	}
	cli, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("%w: docker client: %w", ErrUnavailable, err)
	}
	return &Docker{cli: cli, unpack: o.unpack}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.cli.Close() }

// Available pings the daemon and negotiates the API version.
func (d *Docker) Available(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("%w: docker daemon: %w", ErrUnavailable, err)
	}
	return nil
}

// Run loads img, runs it to completion and removes the container, its
// volume and the image again, whatever happens.
func (d *Docker) Run(ctx context.Context, img v1.Image, spec RunSpec) (res Result, err error) {
	s, p, err := prepare(img, spec)
	if err != nil {
		return res, err
	}
	if err := d.Available(ctx); err != nil {
		return res, err
	}
	// Cleanup must run even when ctx is done.
	cleanupCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	}

	runID := randomHex(8)
	tag := "trainyard.local/train:" + runID
	// Should this process die before the deferred removals below, the
	// watchdog (lifecycle.go) removes the run's container (found by its
	// label), volume and image; it is released after them.
	owner, unlock, err := dockerRunLock(runID)
	if err != nil {
		return res, err
	}
	defer unlock()
	if !d.noWatchdog {
		self, err := os.Executable()
		if err != nil {
			return res, fmt.Errorf("starting the run's watchdog: %w", err)
		}
		wd, err := startWatchdog(self, "docker", d.cli.DaemonHost(), runID, tag)
		if err != nil {
			return res, err
		}
		defer wd.release()
	}
	if err := d.load(ctx, img, tag); err != nil {
		return res, err
	}
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		_, _ = d.cli.ImageRemove(c, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	}()

	mounts := []mount.Mount{{Type: mount.TypeVolume, Target: ResultsPath}}
	if s.DataDir != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: s.DataDir, Target: s.DataPath, ReadOnly: true})
	}
	tmpfs := map[string]string{}
	if s.TmpSize > 0 {
		tmpfs["/tmp"] = "rw,nosuid,nodev,size=" + strconv.FormatInt(s.TmpSize, 10)
	}
	pids := s.PIDs
	// The runc backend's filter, not the daemon's default (which differs by
	// engine version and allows AF_VSOCK and the rest of the families
	// before 28.x): the same calls are refused whichever backend runs.
	profile, err := dockerSeccomp()
	if err != nil {
		return res, err
	}
	created, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:           tag,
			Entrypoint:      p.Args,
			Env:             p.Env,
			WorkingDir:      p.Cwd,
			User:            p.User,
			Hostname:        "train",
			NetworkDisabled: true,
			Labels:          map[string]string{"org.trainyard.train": "1", runLabel: runID, ownerLabel: owner, imageLabel: tag},
			AttachStdout:    true,
			AttachStderr:    true,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "none",
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges:true", "seccomp=" + profile},
			Mounts:         mounts,
			Tmpfs:          tmpfs,
			IpcMode:        "private",
			Resources: container.Resources{
				Memory:     s.Memory,
				MemorySwap: s.Memory,
				PidsLimit:  &pids,
				NanoCPUs:   int64(s.CPUs * 1e9),
			},
		},
	})
	if err != nil {
		return res, fmt.Errorf("docker create: %w", err)
	}
	id := created.ID
	defer func() {
		c, cancel := cleanupCtx()
		defer cancel()
		_, _ = d.cli.ContainerRemove(c, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}()

	if err := d.copyIn(ctx, id, s.ResultsDir); err != nil {
		return res, err
	}

	// Attach before the start so that no output of a short run is lost.
	att, err := d.cli.ContainerAttach(ctx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return res, fmt.Errorf("docker attach: %w", err)
	}
	defer att.Close()
	logsDone := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(s.Stdout, s.Stderr, att.Reader)
		logsDone <- err
	}()

	runCtx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	if _, err := d.cli.ContainerStart(runCtx, id, client.ContainerStartOptions{}); err != nil {
		if startFailed(err.Error()) {
			return res, fmt.Errorf("%w: docker start: %w", ErrStart, err)
		}
		return res, fmt.Errorf("docker start: %w", err)
	}

	wait := d.cli.ContainerWait(context.WithoutCancel(ctx), id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var waitErr error
	select {
	case <-wait.Result:
	case waitErr = <-wait.Error:
	case <-runCtx.Done():
		c, cancel := cleanupCtx()
		_, _ = d.cli.ContainerKill(c, id, client.ContainerKillOptions{Signal: "KILL"})
		cancel()
		select {
		case <-wait.Result:
		case <-wait.Error:
		case <-time.After(30 * time.Second):
		}
	}
	res.Duration = time.Since(start)
	select {
	case <-logsDone:
	case <-time.After(10 * time.Second):
	}

	// Results come back whatever the outcome, as runc's bind mount would leave them.
	c, cancelCopy := cleanupCtx()
	copyErr := d.copyOut(c, id, s.ResultsDir, s.MaxResults)
	cancelCopy()

	if runCtx.Err() != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("train run canceled: %w", ctx.Err())
		}
		res.TimedOut = true
		res.ExitCode = 128 + 9
		return res, fmt.Errorf("%w after %s (killed)", ErrTimeout, s.Timeout)
	}
	if waitErr != nil {
		return res, fmt.Errorf("docker wait: %w", waitErr)
	}
	c, cancelInspect := cleanupCtx()
	info, err := d.cli.ContainerInspect(c, id, client.ContainerInspectOptions{})
	cancelInspect()
	if err != nil {
		return res, fmt.Errorf("docker inspect: %w", err)
	}
	if st := info.Container.State; st != nil {
		res.ExitCode, res.OOMKilled = st.ExitCode, st.OOMKilled
		if st.Error != "" && res.ExitCode == 0 {
			return res, fmt.Errorf("docker: %s", st.Error)
		}
	}
	if copyErr != nil {
		return res, copyErr
	}
	if res.ExitCode != 0 || res.OOMKilled {
		return res, &ExitError{Code: res.ExitCode, OOMKilled: res.OOMKilled}
	}
	return res, nil
}

// load streams img as a docker-save tarball into the daemon. Every layer is
// checked against the manifest's digest and the config's diff id on its way
// (verifiedImage); a mismatch aborts the upload before its end, so the
// daemon never completes the load. The engine checks diff ids on load as
// well (TestDockerEngineRefusesSwappedLayer); this check does not depend on it.
func (d *Docker) load(ctx context.Context, img v1.Image, tag string) (err error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	vimg, err := verifyingImage(img)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := tarball.Write(ref, vimg, pw)
		pw.CloseWithError(err)
		written <- err
	}()
	defer func() {
		pr.Close()
		// The writer's error (a refused layer) explains a failed load best.
		if werr := <-written; werr != nil && (err == nil || errors.Is(werr, ErrLayerDigest)) {
			err = fmt.Errorf("docker load: %w", werr)
		}
	}()
	resp, err := d.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer resp.Close()
	// The daemon answers with a stream of JSON messages; errors arrive in-band.
	dec := json.NewDecoder(io.LimitReader(resp, 1<<20))
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("docker load: reading response: %w", err)
		}
		if m.Error != "" {
			return fmt.Errorf("docker load: %s", m.Error)
		}
	}
}

// copyIn puts the contents of dir into the results volume before the start.
func (d *Docker) copyIn(ctx context.Context, id, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, dir)) }()
	defer pr.Close()
	if _, err := d.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: ResultsPath, Content: pr}); err != nil {
		return fmt.Errorf("docker copy to %s: %w", ResultsPath, err)
	}
	return nil
}

// copyOut replaces the contents of dir with the results volume's.
func (d *Docker) copyOut(ctx context.Context, id, dir string, maxResults int64) error {
	out, err := d.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: ResultsPath})
	if err != nil {
		return fmt.Errorf("docker copy from %s: %w", ResultsPath, err)
	}
	defer out.Content.Close()
	if err := fsutil.RemoveContents(dir); err != nil {
		return err
	}
	opt := d.unpack
	opt.StripComponents, opt.NoChown = 1, true
	var content io.Reader = out.Content
	if maxResults > 0 {
		lr := limitResultsTar(ctx, out.Content, maxResults)
		defer lr.Close()
		content = lr
	}
	if err := UnpackTar(ctx, content, dir, opt); err != nil {
		return fmt.Errorf("copying results out: %w", err)
	}
	return nil
}

// tarDir writes the regular files, directories and symlinks under dir as a
// tar stream with names relative to dir.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, hdr.Size)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// dockerSeccomp is trainSeccomp for a process without capabilities, as the
// JSON profile the Engine API takes in a "seccomp=" security option (the
// profile format of Docker is a superset of the runtime spec's).
func dockerSeccomp() (string, error) {
	empty := []string{}
	sc, err := trainSeccomp(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: empty, Effective: empty, Permitted: empty, Inheritable: empty, Ambient: empty}}})
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	return string(b), nil
}

// Labels of a run's container: its run id (for the watchdog), and for
// Cleanup its owner (host name and lock file, see dockerRunLock) and image.
const (
	runLabel   = "org.trainyard.run"
	ownerLabel = "org.trainyard.owner"
	imageLabel = "org.trainyard.image"
)

// dockerLockPrefix names the lock files of Docker runs in os.TempDir().
const dockerLockPrefix = "trainyard-docker-run-"

// dockerRunLock creates and holds a lock file for one run, as a run of the
// runc backend holds its bundle's: a restarted station's Cleanup removes the
// containers of runs whose lock nobody holds. The owner string names this
// host too, since stations on other hosts may share the daemon.
func dockerRunLock(runID string) (owner string, unlock func(), err error) {
	host, err := os.Hostname()
	if err != nil {
		return "", nil, fmt.Errorf("locking the run: %w", err)
	}
	path := filepath.Join(os.TempDir(), dockerLockPrefix+runID+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("locking the run: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(path)
		return "", nil, fmt.Errorf("locking the run: %w", err)
	}
	return host + ":" + path, func() { os.Remove(path); f.Close() }, nil
}

// abandonedLock reports whether no live run holds the lock file at path (a
// missing file counts: a live run keeps it until its container is gone).
func abandonedLock(path string) bool {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

// Cleanup removes the containers (with their results volumes) and images of
// runs started on this host by a station that was killed together with its
// watchdog: those whose owner's lock nobody holds. Runs of live stations and
// of other hosts sharing the daemon are left alone. A station calls it once
// at start.
func (d *Docker) Cleanup(ctx context.Context) error {
	if err := d.Available(ctx); err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	list, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", "org.trainyard.train=1")})
	if err != nil {
		return fmt.Errorf("docker list: %w", err)
	}
	var errs []error
	for _, c := range list.Items {
		h, lock, ok := strings.Cut(c.Labels[ownerLabel], ":")
		if !ok || h != host || !strings.HasPrefix(filepath.Base(lock), dockerLockPrefix) || !abandonedLock(lock) {
			continue
		}
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			errs = append(errs, fmt.Errorf("docker remove: %w", err))
		}
		if tag := c.Labels[imageLabel]; strings.HasPrefix(tag, "trainyard.local/train:") {
			_, _ = d.cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		}
	}
	locks, _ := filepath.Glob(filepath.Join(os.TempDir(), dockerLockPrefix+"*.lock"))
	for _, l := range locks {
		if abandonedLock(l) {
			os.Remove(l)
		}
	}
	return errors.Join(errs...)
}

// removeDockerRun is the Docker watchdog's work: the containers of run
// (with their results volumes) and its image, on the daemon at host.
func removeDockerRun(ctx context.Context, host, run, tag string) {
	cli, err := client.New(client.FromEnv, client.WithHost(host))
	if err != nil {
		return
	}
	defer cli.Close()
	_, _ = cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", runLabel+"="+run)})
	if err == nil {
		for _, c := range list.Items {
			_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
	_, _ = cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
}
