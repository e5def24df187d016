package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/trainyard/trainyard/errdefs"
)

// ErrUnauthorized means the registry refused the credentials.
var ErrUnauthorized = errdefs.New("registry refused the credentials", errdefs.ErrUnauthorized)

// Login checks user and password against host (a registry's /v2/ endpoint,
// through its token exchange when it has one) and, when they are accepted,
// stores them in the Docker config in configDir ("" = ~/.docker, or the
// credential helper that config names), as `docker login` and `crane auth
// login` do, so that every trainyard command and every other tool using the
// Docker config finds them. Nothing is written when the registry refuses.
func (c *Client) Login(ctx context.Context, host, user, password, configDir string) error {
	reg, err := c.parseRegistry(host)
	if err != nil {
		return err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	rt, err := transport.NewWithContext(ctx, reg, auth, c.Transport(), []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return classifyAuth(host, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return classifyAuth(host, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: %w (%s)", host, ErrUnauthorized, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: /v2/ answered %s", host, resp.Status)
	}
	cf, err := config.Load(configDir)
	if err != nil {
		return err
	}
	// Docker keys Docker Hub by its index URL; every other registry by host.
	key := reg.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{ServerAddress: key, Username: user, Password: password}); err != nil {
		return fmt.Errorf("store credentials for %s: %w", key, err)
	}
	return cf.Save() // temp file + rename
}

func (c *Client) parseRegistry(host string) (name.Registry, error) {
	var opts []name.Option
	if c.insecure {
		opts = append(opts, name.Insecure)
	}
	return name.NewRegistry(host, opts...)
}

func classifyAuth(host string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%s: %w: %w", host, ErrUnauthorized, err)
	}
	return fmt.Errorf("%s: %w", host, err)
}
