package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/daemon"
	"github.com/moby/moby/client"
)

// ErrNoEngine is wrapped when a docker-daemon: location is used and no
// Docker Engine answers.
var ErrNoEngine = errors.New("no Docker Engine reachable (set DOCKER_HOST or mount /var/run/docker.sock)")

// defaultSocket is where the Engine listens without DOCKER_HOST; the PHT
// protocol container gets it mounted.
const defaultSocket = "/var/run/docker.sock"

func engineClient() (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoEngine, err)
	}
	return c, nil
}

// engineConfigured is true when DOCKER_HOST is set or the default socket
// exists: only then is a plain reference looked up in the local engine.
func engineConfigured() bool {
	if os.Getenv("DOCKER_HOST") != "" {
		return true
	}
	fi, err := os.Stat(defaultSocket)
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// ResolveLocal returns DaemonPrefix+loc when loc is a plain reference and
// the local Docker Engine holds that image, the PHT protocol container's
// contract (`pre-run IMAGE` works on the engine's image in place), and loc
// otherwise. Set TRAINYARD_NO_ENGINE=1 to never ask the engine.
func ResolveLocal(ctx context.Context, loc string) string {
	kind, p := ParseLocation(loc)
	if kind != "registry" || os.Getenv("TRAINYARD_NO_ENGINE") == "1" || !engineConfigured() {
		return loc
	}
	ref, err := name.ParseReference(p)
	if err != nil {
		return loc
	}
	c, err := engineClient()
	if err != nil {
		return loc
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.ImageInspect(ctx, ref.String()); err != nil {
		return loc
	}
	return DaemonPrefix + p
}

// rawConfigImage serves the config exactly as stored: the daemon package
// rebuilds ConfigFile from the Engine's inspect and history answers, which
// lose the layer/history pairing the state layer is found by.
type rawConfigImage struct{ v1.Image }

func (i rawConfigImage) ConfigFile() (*v1.ConfigFile, error) {
	raw, err := i.RawConfigFile()
	if err != nil {
		return nil, err
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return &cf, nil
}

func loadDaemon(ctx context.Context, p string) (v1.Image, error) {
	ref, err := name.ParseReference(p)
	if err != nil {
		return nil, fmt.Errorf("docker-daemon:%s: %w", p, err)
	}
	c, err := engineClient()
	if err != nil {
		return nil, err
	}
	// One `docker save` into a temporary file: constant memory, one export.
	// The client stays open for the image's lifetime (it is read lazily).
	img, err := daemon.Image(ref, daemon.WithClient(c), daemon.WithContext(ctx), daemon.WithFileBufferedOpener())
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("docker-daemon:%s: %w", p, err)
	}
	return rawConfigImage{img}, nil
}

func saveDaemon(ctx context.Context, img v1.Image, p string) error {
	tag, err := name.NewTag(p)
	if err != nil {
		return fmt.Errorf("docker-daemon:%s needs a tag: %w", p, err)
	}
	c, err := engineClient()
	if err != nil {
		return err
	}
	defer c.Close()
	// docker load streams the image in; the tag moves only once it is complete.
	if _, err := daemon.Write(tag, img, daemon.WithClient(c), daemon.WithContext(ctx)); err != nil {
		return fmt.Errorf("write docker-daemon:%s: %w", p, err)
	}
	return nil
}
