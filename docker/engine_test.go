// Package docker_test checks the protocol container contract against a real
// Docker Engine started by the test: trainyard's protocol steps on engine
// images in place, and the image `make image` writes, run with the PHT
// station's command line and the engine socket mounted.
package docker_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/trainyard/trainyard/internal/testutil"
	"github.com/trainyard/trainyard/train"
)

const (
	codeMarker   = "PLAINTEXT-CODE-e41b"
	resultMarker = "PLAINTEXT-RESULT-0d7c"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.StopDockerd()
	os.Exit(code)
}

type env struct {
	t    *testing.T
	ctx  context.Context
	host string
	dir  string
	bin  string
	cli  *client.Client
}

// ty runs the trainyard binary `make image` built, against the test engine.
func (e *env) ty(extra []string, args ...string) string {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, e.bin, args...)
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST="+e.host), extra...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("trainyard %v: %v\n%s", args, err, stderr.String())
	}
	return out.String()
}

// tyRefused expects trainyard to fail with one error line containing want.
func (e *env) tyRefused(extra []string, want string, args ...string) {
	e.t.Helper()
	cmd := exec.CommandContext(e.ctx, e.bin, args...)
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST="+e.host), extra...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		e.t.Fatalf("trainyard %v succeeded, want a refusal", args)
	}
	if strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), want) {
		e.t.Fatalf("trainyard %v: stderr %q, want one line with %q", args, stderr.String(), want)
	}
}

func (e *env) imageID(ref string) string {
	e.t.Helper()
	res, err := e.cli.ImageInspect(e.ctx, ref)
	if err != nil {
		e.t.Fatalf("inspect %s: %v", ref, err)
	}
	return res.ID
}

func (e *env) load(ref string) v1.Image {
	e.t.Helper()
	img, err := train.Load(e.ctx, train.DaemonPrefix+ref, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// requireSealed walks every layer of the engine's image and fails on a
// plaintext marker anywhere or a file under the train paths outside the
// top (state) layer.
func (e *env) requireSealed(ref string) []v1.Layer {
	e.t.Helper()
	layers, err := e.load(ref).Layers()
	if err != nil {
		e.t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			e.t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				e.t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			n := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
			if bytes.Contains(b, []byte(codeMarker)) || bytes.Contains(b, []byte(resultMarker)) {
				e.t.Errorf("%s layer %d: /%s holds plaintext", ref, i, n)
			}
			under := strings.HasPrefix(n, train.TrainDir+"/") || strings.HasPrefix(n, train.ResultsDir+"/")
			if under && hdr.Typeflag != tar.TypeDir && !strings.HasPrefix(path.Base(n), ".wh.") && i != len(layers)-1 {
				e.t.Errorf("%s layer %d of %d: /%s below the state layer", ref, i, len(layers), n)
			}
		}
		rc.Close()
	}
	return layers
}

// requireBase checks ref is base's layers plus one state layer.
func (e *env) requireBase(ref string, base v1.Image) {
	e.t.Helper()
	got := e.requireSealed(ref)
	want, _ := base.Layers()
	if len(got) != len(want)+1 {
		e.t.Fatalf("%s: %d layers, want base's %d + 1", ref, len(got), len(want))
	}
	for i := range want {
		a, _ := got[i].DiffID()
		b, _ := want[i].DiffID()
		if a != b {
			e.t.Fatalf("%s layer %d: %s, base has %s", ref, i, a, b)
		}
	}
}

// commitRun is what a PHT station does after running the train: results
// copied into a container of the image and committed to the same tag.
func (e *env) commitRun(ref string, files map[string]string) {
	e.t.Helper()
	c, err := e.cli.ContainerCreate(e.ctx, client.ContainerCreateOptions{Image: ref})
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.cli.ContainerRemove(e.ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n, s := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(s))})
		tw.Write([]byte(s))
	}
	tw.Close()
	if _, err := e.cli.CopyToContainer(e.ctx, c.ID, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.cli.ContainerCommit(e.ctx, c.ID, client.ContainerCommitOptions{Reference: ref, Comment: "train run"}); err != nil {
		e.t.Fatal(err)
	}
}

// dockerRun is `docker run --rm -e ... -v keys:/keys -v sock:/var/run/docker.sock IMAGE args...`
// through the Engine API; it returns the container's output.
func (e *env) dockerRun(image string, envs, binds []string, args ...string) string {
	e.t.Helper()
	c, err := e.cli.ContainerCreate(e.ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: image, Cmd: args, Env: envs},
		// The test engine runs without a bridge; engine images need no network.
		HostConfig: &container.HostConfig{Binds: binds, NetworkMode: "none"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.cli.ContainerRemove(e.ctx, c.ID, client.ContainerRemoveOptions{Force: true})
	if _, err := e.cli.ContainerStart(e.ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		e.t.Fatal(err)
	}
	w := e.cli.ContainerWait(e.ctx, c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case r := <-w.Result:
		code = r.StatusCode
	case err := <-w.Error:
		e.t.Fatal(err)
	}
	logs, err := e.cli.ContainerLogs(e.ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		e.t.Fatal(err)
	}
	var out bytes.Buffer
	io.Copy(&out, logs)
	logs.Close()
	if code != 0 {
		e.t.Fatalf("docker run %s %v: exit %d\n%s", image, args, code, out.String())
	}
	return out.String()
}

func TestProtocolOnEngineImages(t *testing.T) {
	host := testutil.Dockerd(t)
	t.Setenv("DOCKER_HOST", host) // for the in-process checks
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	imageTar := filepath.Join(dir, "protocol.tar")
	mk := exec.CommandContext(ctx, "make", "-C", root, "image", "IMAGE_OUT="+imageTar, "IMAGE_TAG=trainyard-protocol:test")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	e := &env{t: t, ctx: ctx, host: host, dir: dir, bin: filepath.Join(root, "bin", "trainyard-static"), cli: cli}

	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o755)
	for _, n := range []string{"s1", "s2", "user"} {
		e.ty(nil, "train", "keygen", filepath.Join(keys, n))
	}
	code := filepath.Join(dir, "code")
	os.MkdirAll(code, 0o755)
	os.WriteFile(filepath.Join(code, "entrypoint.py"), []byte("print('"+codeMarker+"')\n"), 0o644)

	// The master image in the engine as REPO:base, the train built on it.
	base, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Save(ctx, base, train.DaemonPrefix+"pht/t1:base", nil); err != nil {
		t.Fatal(err)
	}
	e.ty(nil, "train", "build", "--dir", code, "--base", train.DaemonPrefix+"pht/t1:base",
		"--route", "s1="+filepath.Join(keys, "s1.pub.pem")+",s2="+filepath.Join(keys, "s2.pub.pem"),
		"--creator-key", filepath.Join(keys, "user.pem"), "--train-id", "t1", "--out", train.DaemonPrefix+"pht/t1:latest")

	// Station s1 runs trainyard on the host, on the plain engine tag.
	s1 := []string{"STATION_ID=s1", "PRIVATE_KEY_PATH=" + filepath.Join(keys, "s1.pem")}
	before := e.imageID("pht/t1:latest")
	// The wrong station key is refused and the engine's image stays as it was.
	e.tyRefused([]string{"STATION_ID=s1", "PRIVATE_KEY_PATH=" + filepath.Join(keys, "s2.pem")}, "not wrapped for this private key", "protocol", "pre-run", "pht/t1:latest")
	if e.imageID("pht/t1:latest") != before {
		t.Fatal("a refused pre-run changed the engine's image")
	}
	e.ty(s1, "protocol", "pre-run", "pht/t1:latest")
	if e.imageID("pht/t1:latest") == before {
		t.Fatal("pre-run did not modify the engine's image in place")
	}
	b, err := train.ReadFile(ctx, e.load("pht/t1:latest"), path.Join(train.TrainDir, "entrypoint.py"), 1<<20)
	if err != nil || !strings.Contains(string(b), codeMarker) {
		t.Fatalf("pre-run image holds no decrypted train: %q, %v", b, err)
	}
	e.commitRun("pht/t1:latest", map[string]string{"opt/pht_results/r1.txt": resultMarker, "tmp/scratch": resultMarker})
	e.ty(s1, "protocol", "post-run", "pht/t1:latest")
	e.requireBase("pht/t1:latest", base)

	// Station s2 runs the image from `make image` with the PHT station's
	// command line: docker run --rm -e STATION_ID -e PRIVATE_KEY_PATH
	// -v keys -v /var/run/docker.sock IMAGE pre-run TRAIN.
	f, err := os.Open(imageTar)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cli.ImageLoad(ctx, f, client.ImageLoadWithQuiet(true))
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res)
	res.Close()
	sock := strings.TrimPrefix(host, "unix://")
	envs := []string{"STATION_ID=s2", "PRIVATE_KEY_PATH=/keys/s2.pem"}
	binds := []string{keys + ":/keys:ro", sock + ":/var/run/docker.sock"}
	before = e.imageID("pht/t1:latest")
	out := e.dockerRun("trainyard-protocol:test", envs, binds, "pre-run", "pht/t1:latest")
	if !strings.Contains(out, "pre-run ok") || e.imageID("pht/t1:latest") == before {
		t.Fatalf("containerised pre-run: %s", out)
	}
	e.commitRun("pht/t1:latest", map[string]string{"opt/pht_results/r2.txt": resultMarker})
	out = e.dockerRun("trainyard-protocol:test", envs, binds, "post-run", "pht/t1:latest", "--rebase")
	if !strings.Contains(out, "post-run ok") {
		t.Fatalf("containerised post-run: %s", out)
	}
	e.requireBase("pht/t1:latest", base)

	// The creator reads both stations' results.
	res2 := filepath.Join(dir, "results")
	e.ty(nil, "train", "results", train.DaemonPrefix+"pht/t1:latest", "--key", filepath.Join(keys, "user.pem"), "--dir", res2)
	for _, n := range []string{"r1.txt", "r2.txt"} {
		if b, err := os.ReadFile(filepath.Join(res2, n)); err != nil || string(b) != resultMarker {
			t.Fatalf("result %s = %q, %v", n, b, err)
		}
	}
}
