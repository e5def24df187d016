package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/trainyard/trainyard/registry"
	"github.com/trainyard/trainyard/tuf"
	"github.com/trainyard/trainyard/tuf/client"
	"github.com/trainyard/trainyard/tuf/keys"
	"github.com/trainyard/trainyard/tuf/ocistore"
	"github.com/trainyard/trainyard/tuf/repo"
)

// attacked is what one attack works on: a publisher that published
// hello.txt (and what prepare added) and a client that trusts it.
type attacked struct {
	*env
	dir   string          // the client's state directory
	store *ocistore.Store // what the client reads (through tamper when set)
	c     *client.Client  // bootstrapped unless the case is fresh
}

// attackCase is one attack from the TUF threat model.
type attackCase struct {
	name string
	th   repo.Thresholds
	keys map[string]int
	// prepare publishes more before the client bootstraps.
	prepare func(a *attacked)
	// tamper, when set, sits between the client and the registry.
	tamper func(a *attacked) http.RoundTripper
	// fresh: the client has not bootstrapped, the attack is on bootstrap.
	fresh bool
	// attack changes the registry (or the clock) and returns the client
	// operations that must each be refused with want, leaving the
	// trusted metadata byte-identical.
	attack func(a *attacked) []func() error
	want   error
	// after checks what must hold once the attack was refused (recovery).
	after func(a *attacked)
}

func (a *attacked) pull(c *client.Client) func() error {
	return func() error { _, err := c.PullMetadata(a.ctx); return err }
}

// later is a client on the same trusted metadata whose clock runs d ahead.
func (a *attacked) later(d time.Duration) *client.Client {
	return client.New(a.store, a.dir, client.WithClock(func() time.Time { return time.Now().Add(d) }))
}

// leakedKey is the first private key of role: what an attacker who stole it holds.
func (a *attacked) leakedKey(role string) keys.Signer {
	files, _ := filepath.Glob(filepath.Join(a.master, "keys", role, "*.key"))
	kf, err := os.ReadFile(files[0])
	a.must(err)
	k, err := keys.Decrypt(kf, []byte("pw-"+role))
	a.must(err)
	return k
}

// putTimestamp replaces the registry's timestamp with change applied to
// it, re-signed by signers (none: the old signatures stay).
func (a *attacked) putTimestamp(change func(*metadata.Metadata[metadata.TimestampType]), signers ...keys.Signer) {
	data, err := a.store.GetMetadata(a.ctx, "timestamp.json", 0)
	a.must(err)
	ts, err := metadata.Timestamp().FromBytes(data)
	a.must(err)
	change(ts)
	if len(signers) > 0 {
		ts.ClearSignatures()
		a.must(keys.SignMetadata(ts, signers...))
	}
	bad, err := ts.ToBytes(true)
	a.must(err)
	a.must(a.store.PutMetadata(a.ctx, "timestamp.json", bad))
}

// targetOps are the three ways to get a target's bytes; each must be
// refused without touching a previous destination, leaving temp files or
// writing a byte.
func (a *attacked) targetOps(name string) []func() error {
	t := a.t
	return []func() error{
		func() error {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "out")
			a.must(os.WriteFile(out, []byte("previous"), 0o644))
			_, err := a.c.Download(a.ctx, name, out)
			if b, _ := os.ReadFile(out); string(b) != "previous" {
				t.Fatalf("destination changed: %q", b)
			}
			if ents, _ := os.ReadDir(outDir); len(ents) != 1 {
				t.Fatalf("temp files left: %v", ents)
			}
			if ents, _ := filepath.Glob(filepath.Join(a.dir, ".tuf-*")); len(ents) != 0 {
				t.Fatalf("temp files left: %v", ents)
			}
			return err
		},
		func() error {
			var buf bytes.Buffer
			err := a.c.WriteTo(a.ctx, &buf, &buf, name)
			if buf.Len() != 0 {
				t.Fatalf("%d bytes written", buf.Len())
			}
			return err
		},
		func() error { _, err := a.c.Fetch(a.ctx, name, 1<<20); return err },
	}
}

// multiParts publishes multi, three parts, the middle one shared with b.bin.
var multiParts = []string{"first part\n", "BBBB", "third"}

func prepareMulti(a *attacked) {
	a.pushFile("b.bin", "BBBB")
	a.pushParts("multi", multiParts[0], "@b.bin", multiParts[2])
	a.must(a.pub.PushMetadata(a.ctx))
}

func blobTamper(content string, extend bool) func(a *attacked) http.RoundTripper {
	return func(*attacked) http.RoundTripper {
		return tamperTransport{"sha256:" + sha256hex(content), http.DefaultTransport, extend}
	}
}

func attackCases() []attackCase {
	cases := []attackCase{
		{
			name: "rollback: timestamp re-tagged to an older version",
			prepare: func(a *attacked) {
				a.pushFile("x", "x2")
				a.must(a.pub.PushMetadata(a.ctx)) // timestamp v2, trusted
			},
			attack: func(a *attacked) []func() error {
				a.must(a.rc.Tag(a.ctx, a.repo+":1.timestamp.json", ocistore.TimestampTag))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrRollback,
		},
		{
			name: "freeze: the last timestamp served after it expired",
			attack: func(a *attacked) []func() error {
				return []func() error{a.pull(a.later(48 * time.Hour))}
			},
			want: tuf.ErrExpired,
		},
		{
			// refresh-timestamp alone is not enough for a 9-day freeze
			name: "freeze: a fresh timestamp over an expired snapshot",
			attack: func(a *attacked) []func() error {
				a.must(a.pub.RefreshTimestamp(a.ctx))
				return []func() error{a.pull(a.later(9 * 24 * time.Hour))}
			},
			want: tuf.ErrExpired,
		},
		{
			name:   "arbitrary software: a target's blob changed",
			tamper: blobTamper("hello, world\n", false),
			attack: func(a *attacked) []func() error { return a.targetOps("hello.txt") },
			want:   tuf.ErrTampered,
		},
		{
			name:   "endless data: a target's blob extended",
			tamper: blobTamper("hello, world\n", true),
			attack: func(a *attacked) []func() error { return a.targetOps("hello.txt") },
			want:   tuf.ErrTampered,
		},
		{
			// The snapshot signs the targets file's length and hash: refused
			// before its signatures are even looked at.
			name: "arbitrary software: a target added to signed targets metadata",
			attack: func(a *attacked) []func() error {
				a.pushFile("new", "new")
				a.must(a.pub.PushMetadata(a.ctx)) // targets v2
				data, err := a.store.GetMetadata(a.ctx, "2.targets.json", 0)
				a.must(err)
				md, err := metadata.Targets().FromBytes(data)
				a.must(err)
				md.Signed.Targets["evil"] = &metadata.TargetFiles{Length: 1, Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Path: "evil"}
				bad, err := md.ToBytes(true)
				a.must(err)
				a.must(a.store.PutMetadata(a.ctx, "2.targets.json", bad))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrTooLarge,
		},
		{
			// The timestamp is not hashed anywhere: its own signature refuses it.
			name: "arbitrary software: a timestamp changed without its key",
			attack: func(a *attacked) []func() error {
				a.putTimestamp(func(ts *metadata.Metadata[metadata.TimestampType]) {
					ts.Signed.Expires = ts.Signed.Expires.Add(time.Hour)
				})
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrSignature,
		},
		{
			// the snapshot's hash of targets v2 refuses the old, validly signed v1
			name: "mix-and-match: an older targets file served as the new version",
			attack: func(a *attacked) []func() error {
				a.pushFile("new", "new")
				a.must(a.pub.PushMetadata(a.ctx))
				a.must(a.rc.Tag(a.ctx, a.repo+":1.targets.json", "2.targets.json"))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrTampered,
		},
		{
			name: "endless data: a 1 MiB timestamp",
			attack: func(a *attacked) []func() error {
				a.must(a.store.PutMetadata(a.ctx, "timestamp.json", bytes.Repeat([]byte(" "), 1<<20)))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrTooLarge,
		},
		{
			name: "endless data: a timestamp one byte over the default limit",
			attack: func(a *attacked) []func() error {
				n := client.DefaultLimits().Timestamp + 1
				a.must(a.store.PutMetadata(a.ctx, "timestamp.json", bytes.Repeat([]byte(" "), int(n))))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrTooLarge,
		},
		{
			name:  "wrong root key at bootstrap",
			fresh: true,
			attack: func(a *attacked) []func() error {
				other, err := keys.Generate("")
				a.must(err)
				pub, err := keys.MarshalPublic(other.Public())
				a.must(err)
				return []func() error{func() error {
					_, err := a.c.Bootstrap(a.ctx, pub)
					if a.c.Initialized() {
						a.t.Fatal("client trusted a root after a refused bootstrap")
					}
					return err
				}}
			},
			want: tuf.ErrSignature,
			after: func(a *attacked) { // the right key file works
				ids, _ := filepath.Glob(filepath.Join(a.master, "keys", "root", "*.pub"))
				good, err := os.ReadFile(ids[0])
				a.must(err)
				_, err = a.c.Bootstrap(a.ctx, good)
				a.must(err)
			},
		},
		{
			name:  "another repository's root.json at bootstrap",
			fresh: true,
			attack: func(a *attacked) []func() error {
				e2 := newEnv(a.t)
				e2.setup(nil, nil)
				return []func() error{func() error { _, err := a.c.Bootstrap(a.ctx, e2.rootJSON()); return err }}
			},
			want: tuf.ErrSignature,
		},
		{
			name: "threshold: one of two timestamp keys signs a fresh timestamp alone",
			th:   repo.Thresholds{repo.Timestamp: 2, repo.Root: 2},
			keys: map[string]int{repo.Timestamp: 2, repo.Root: 2},
			attack: func(a *attacked) []func() error {
				a.putTimestamp(func(ts *metadata.Metadata[metadata.TimestampType]) { ts.Signed.Version++ }, a.leakedKey(repo.Timestamp))
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrSignature,
		},
		{
			// An attacker with the timestamp key pushes a timestamp far in
			// the future; clients are stuck (rollback) until the publisher
			// rotates the timestamp key, then they recover.
			name: "fast-forward: a leaked timestamp key's version 1000",
			attack: func(a *attacked) []func() error {
				a.putTimestamp(func(ts *metadata.Metadata[metadata.TimestampType]) { ts.Signed.Version = 1000 }, a.leakedKey(repo.Timestamp))
				_, err := a.c.PullMetadata(a.ctx) // validly signed: accepted
				a.must(err)
				a.pushFile("fix", "fix")
				// the publisher sees a timestamp it did not publish and refuses...
				if err := a.pub.PushMetadata(a.ctx); !errors.Is(err, tuf.ErrConflict) {
					a.t.Fatalf("publish over a foreign timestamp: %v", err)
				}
				// ...until its admin, who knows the key leaked, forces it
				a.pub = repo.New(a.env.store, a.master, repo.WithForce(true), repo.WithPasswords(func(role string) ([]byte, error) { return []byte("pw-" + role), nil }))
				a.must(a.pub.PushMetadata(a.ctx)) // timestamp v2 < 1000
				return []func() error{a.pull(a.c)}
			},
			want: tuf.ErrRollback,
			after: func(a *attacked) { // rotate the timestamp key: the client drops the old timestamp
				_, _, err := a.pub.CreateKey(repo.Timestamp, false)
				a.must(err)
				a.must(a.pub.ResetKeys(a.ctx, nil))
				a.must(a.pub.PushMetadata(a.ctx))
				changed, err := a.c.PullMetadata(a.ctx)
				a.must(err)
				if fmt.Sprint(changed) != "[fix]" {
					a.t.Fatalf("changed %v", changed)
				}
			},
		},
	}
	for _, extend := range []bool{false, true} {
		what := "arbitrary software: part %q of a multi-part target changed"
		if extend {
			what = "endless data: part %q of a multi-part target extended"
		}
		for _, part := range multiParts {
			cases = append(cases, attackCase{
				name:    fmt.Sprintf(what, part),
				prepare: prepareMulti,
				tamper:  blobTamper(part, extend),
				attack:  func(a *attacked) []func() error { return a.targetOps("multi") },
				want:    tuf.ErrTampered,
			})
		}
	}
	return cases
}

// TestAttacksRefused: every attack of the TUF threat model that the OCI
// layout can stage, each refused with its typed error and no change to
// what the client trusts.
func TestAttacksRefused(t *testing.T) {
	for _, tc := range attackCases() {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.setup(tc.th, tc.keys)
			a := &attacked{env: e, dir: t.TempDir(), store: e.store}
			if tc.prepare != nil {
				tc.prepare(a)
			}
			if tc.tamper != nil {
				rc := registry.NewClient(registry.WithInsecure(true), registry.WithTransport(tc.tamper(a)))
				store, err := ocistore.New(rc, e.repo)
				e.must(err)
				a.store = store
			}
			a.c = client.New(a.store, a.dir)
			if !tc.fresh {
				_, err := a.c.Bootstrap(e.ctx, e.rootJSON())
				e.must(err)
			}
			ops := tc.attack(a)
			if len(ops) == 0 {
				t.Fatal("the attack checks no refusal")
			}
			for _, op := range ops {
				refused(t, a.dir, a.c, tc.want, op)
			}
			if tc.after != nil {
				tc.after(a)
			}
		})
	}
}

// refused runs op and checks it fails with want and leaves the trusted
// metadata byte-identical.
func refused(t *testing.T, dir string, c *client.Client, want error, op func() error) {
	t.Helper()
	before := snapshotDir(t, c, dir)
	err := op()
	if !errors.Is(err, want) {
		t.Fatalf("want %v, got %v", want, err)
	}
	t.Logf("refused: %v", err)
	after := snapshotDir(t, c, dir)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("trusted metadata changed on refusal")
	}
}

// tamperTransport rewrites the body of blob responses with the given digest.
type tamperTransport struct {
	digest string
	next   http.RoundTripper
	extend bool // append bytes instead of flipping one
}

func (tt tamperTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tt.next.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/"+tt.digest) {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if tt.extend {
		body = append(body, bytes.Repeat([]byte("x"), 1<<16)...)
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", fmt.Sprint(len(body)))
	} else if len(body) > 0 {
		body[0] ^= 0xff
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
