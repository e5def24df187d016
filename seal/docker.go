package seal

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"
)

// DockerAPI is the part of the Docker Engine API client a DockerTarget uses
// (*client.Client from github.com/moby/moby/client satisfies it).
type DockerAPI interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (client.ImageLoadResult, error)
	ImageInspect(ctx context.Context, image string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
}

// NewDockerClient connects to the engine named by DOCKER_HOST (default the
// local socket), negotiating the API version.
func NewDockerClient() (*client.Client, error) {
	return client.New(client.FromEnv)
}

// DockerTarget loads images into a Docker engine through the Engine API
// (POST /images/load, the `docker load` equivalent). The docker-archive tar
// (blobs, then manifest.json naming the images) is built on the fly into the
// request body; nothing touches the local disk. manifest.json is written
// only at Commit, so an aborted unseal cuts the upload before the engine
// knows any image: the engine then refuses the incomplete archive.
type DockerTarget struct {
	api  DockerAPI
	inv  *Inventory
	pw   *io.PipeWriter
	tw   *tar.Writer
	done chan error
}

// NewDockerTarget returns a target that loads through api.
func NewDockerTarget(api DockerAPI) *DockerTarget { return &DockerTarget{api: api} }

// Ping checks that the engine answers before any pass over the archive, so
// a missing daemon fails at once instead of as a closed pipe after a full
// verification pass. An api without Ping (a test fake) is taken as present.
func (t *DockerTarget) Ping(ctx context.Context) error {
	p, ok := t.api.(interface {
		Ping(context.Context, client.PingOptions) (client.PingResult, error)
	})
	if !ok {
		return nil
	}
	if _, err := p.Ping(ctx, client.PingOptions{}); err != nil {
		host := os.Getenv("DOCKER_HOST")
		if h, ok := t.api.(interface{ DaemonHost() string }); ok {
			host = h.DaemonHost()
		}
		return fmt.Errorf("no Docker engine at DOCKER_HOST=%s: is dockerd running? or use --to oci:DIR: %w", host, err)
	}
	return nil
}

// Prepare implements Target: it starts the load request.
func (t *DockerTarget) Prepare(ctx context.Context, inv *Inventory) error {
	t.inv = inv
	pr, pw := io.Pipe()
	t.pw, t.tw, t.done = pw, tar.NewWriter(pw), make(chan error, 1)
	go func() {
		err := dockerLoad(ctx, t.api, pr)
		pr.CloseWithError(err) // unblock writers if the engine gave up early
		t.done <- err
	}()
	return nil
}

func dockerLoad(ctx context.Context, api DockerAPI, r io.Reader) error {
	res, err := api.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer res.Close()
	dec := json.NewDecoder(res)
	for {
		var m struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker load: reading response: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return fmt.Errorf("docker load: %s", m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return fmt.Errorf("docker load: %s", m.Error)
		}
	}
}

// WriteBlob implements Target.
func (t *DockerTarget) WriteBlob(_ context.Context, d v1.Descriptor, r io.Reader) error {
	if err := t.tw.WriteHeader(&tar.Header{Name: blobPath(d.Digest), Mode: 0o644, Size: d.Size, ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.Copy(t.tw, r)
	return err
}

type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Commit implements Target: it writes manifest.json, ends the upload and
// waits for the engine's answer.
func (t *DockerTarget) Commit(context.Context) error {
	var entries []dockerManifestEntry
	for _, im := range t.inv.Images {
		e := dockerManifestEntry{Config: blobPath(im.Config.Digest), RepoTags: []string{dockerName(im.Name)}}
		for _, l := range im.Layers {
			e.Layers = append(e.Layers, blobPath(l.Digest))
		}
		entries = append(entries, e)
	}
	b, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	if err := t.tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := t.tw.Write(b); err != nil {
		return err
	}
	if err := t.tw.Close(); err != nil {
		return err
	}
	pw := t.pw
	t.pw = nil // Abort must not wait for the answer a second time
	if err := pw.Close(); err != nil {
		return err
	}
	return <-t.done
}

// Abort implements Target: the request body fails, so the engine loads nothing.
func (t *DockerTarget) Abort(context.Context) {
	if t.pw == nil {
		return
	}
	t.pw.CloseWithError(errors.New("seal: unseal aborted"))
	<-t.done
	t.pw = nil
}

// Resolve implements Target: it returns the image ID (config digest on the
// classic store, manifest digest on the containerd store) and repo digests.
func (t *DockerTarget) Resolve(ctx context.Context, n string) ([]string, error) {
	res, err := t.api.ImageInspect(ctx, dockerName(n))
	if cerrdefs.IsNotFound(err) {
		return nil, nil // not there: the caller's expectation fails
	}
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	out := []string{res.ID}
	for _, rd := range res.RepoDigests {
		if _, d, ok := strings.Cut(rd, "@"); ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// dockerName drops the "library/" prefix Docker adds itself.
func dockerName(n string) string { return strings.TrimPrefix(n, "library/") }
