package ocistore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// Keychain returns a keychain with fixed credentials (dtuf's
// DTUF_USERNAME/DTUF_PASSWORD or DTUF_TOKEN), falling back to the Docker
// config when none is given.
func Keychain(username, password, token string) authn.Keychain {
	if username == "" && token == "" {
		return authn.DefaultKeychain
	}
	return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: username, Password: password, RegistryToken: token})}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// Token performs the registry's token authentication for actions (pull,
// push, "*") on the store's repository and returns the bearer token; an
// empty token means the registry needs none (anonymous or Basic auth).
func (s *Store) Token(ctx context.Context, kc authn.Keychain, httpClient *http.Client, actions ...string) (string, error) {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	reg := s.repo.Registry
	ping := url.URL{Scheme: reg.Scheme(), Host: reg.RegistryStr(), Path: "/v2/"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ping.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("ping %s: %w", reg, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return "", nil
	}
	scheme, params := parseChallenge(resp.Header.Get("WWW-Authenticate"))
	if !strings.EqualFold(scheme, "bearer") {
		return "", nil
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || params["realm"] == "" {
		return "", fmt.Errorf("registry %s: bad bearer realm %q", reg, params["realm"])
	}
	q := realm.Query()
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	q.Set("scope", "repository:"+s.repo.RepositoryStr()+":"+strings.Join(actions, ","))
	realm.RawQuery = q.Encode()
	treq, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return "", err
	}
	if kc != nil {
		a, err := kc.Resolve(reg)
		if err != nil {
			return "", err
		}
		cfg, err := authn.Authorization(ctx, a)
		if err != nil {
			return "", err
		}
		if cfg.RegistryToken != "" {
			return cfg.RegistryToken, nil
		}
		if cfg.Username != "" {
			treq.SetBasicAuth(cfg.Username, cfg.Password)
		}
	}
	tresp, err := httpClient.Do(treq)
	if err != nil {
		return "", fmt.Errorf("token from %s: %w", realm.Host, err)
	}
	defer tresp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(tresp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if tresp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token from %s: %s", realm.Host, tresp.Status)
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		return "", fmt.Errorf("token from %s: %w", realm.Host, err)
	}
	if tok.AccessToken != "" {
		return tok.AccessToken, nil
	}
	return tok.Token, nil
}

// parseChallenge splits `Bearer realm="x",service="y"`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		var kv string
		rest = strings.TrimSpace(rest)
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				break
			}
			kv, rest = v[1:end+1], strings.TrimPrefix(strings.TrimSpace(v[end+2:]), ",")
		} else {
			kv, rest, _ = strings.Cut(v, ",")
		}
		params[strings.ToLower(strings.TrimSpace(k))] = kv
	}
	return scheme, params
}
