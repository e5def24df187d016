package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/trainyard/trainyard/registry"
)

// short timeouts so that each attack fails in well under a second or two.
var testTimeouts = registry.Timeouts{Dial: time.Second, TLSHandshake: time.Second, ResponseHeader: 300 * time.Millisecond,
	IdleConn: time.Second, Stall: 300 * time.Millisecond, StallBytes: 1024}

func newTestClient() *registry.Client {
	return registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()), registry.WithTimeouts(testTimeouts))
}

// hangingListener accepts connections and never answers.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read or written
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

var blobGet = regexp.MustCompile(`^/v2/.+/blobs/sha256:[a-f0-9]{64}$`)

// slowRegistry is a real registry whose blob downloads are paced: chunk bytes
// every interval after the headers.
func slowRegistry(t *testing.T, chunk int, interval time.Duration) (string, *registry.Client) {
	t.Helper()
	inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !blobGet.MatchString(r.URL.Path) {
			inner.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.(http.Flusher).Flush()
		for len(body) > 0 {
			n := min(chunk, len(body))
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			body = body[n:]
			select {
			case <-time.After(interval):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), newTestClient()
}

func pushRandom(t *testing.T, c *registry.Client, ref string, size int64) {
	t.Helper()
	img, err := random.Image(size, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(context.Background(), img, ref); err != nil {
		t.Fatal(err)
	}
}

// readAll pulls ref and reads its config and every layer to the end.
func readAll(ctx context.Context, c *registry.Client, ref string) error {
	img, err := c.Pull(ctx, ref)
	if err != nil {
		return err
	}
	if _, err := img.ConfigFile(); err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	start := time.Now()
	err := f()
	if el := time.Since(start); el > d {
		t.Fatalf("took %v, want under %v (err %v)", el, d, err)
	}
	return err
}

// TestPullFromHangingRegistryTimesOut: a registry that accepts the connection
// and never answers fails the pull with ErrTimeout instead of hanging.
func TestPullFromHangingRegistryTimesOut(t *testing.T) {
	host := hangingListener(t)
	c := newTestClient()
	err := within(t, 5*time.Second, func() error { return readAll(context.Background(), c, host+"/pht/train:v1") })
	if !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if _, err := c.ListTags(context.Background(), host+"/pht/train"); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("list tags: err = %v, want ErrTimeout", err)
	}
}

// TestPullFromTricklingRegistryStalls: headers arrive, then the body comes at
// 10 bytes/s, which keeps the connection busy forever; the stall detector
// fails it although bytes keep arriving.
func TestPullFromTricklingRegistryStalls(t *testing.T) {
	host, c := slowRegistry(t, 1, 100*time.Millisecond)
	pushRandom(t, c, host+"/pht/train:v1", 64<<10)
	err := within(t, 5*time.Second, func() error { return readAll(context.Background(), c, host+"/pht/train:v1") })
	if !errors.Is(err, registry.ErrStalled) || !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
}

// TestSlowButMovingTransferSucceeds: no total deadline. A blob that takes
// several stall periods but keeps moving above the floor arrives whole.
func TestSlowButMovingTransferSucceeds(t *testing.T) {
	host, c := slowRegistry(t, 8<<10, 50*time.Millisecond)
	pushRandom(t, c, host+"/pht/train:v1", 160<<10) // 20 chunks: about 1 s, over 3 stall periods
	start := time.Now()
	if err := readAll(context.Background(), c, host+"/pht/train:v1"); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 2*testTimeouts.Stall {
		t.Fatalf("transfer took only %v: the test does not span several stall periods", el)
	}
}

// TestSlowConsumerIsNotAStall: a reader that pauses longer than the stall
// period between reads is not the registry's fault.
func TestSlowConsumerIsNotAStall(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(nopLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c := newTestClient()
	pushRandom(t, c, host+"/pht/train:v1", 256<<10)
	img, err := c.Pull(context.Background(), host+"/pht/train:v1")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 100)
	for i := 0; i < 3; i++ {
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * testTimeouts.Stall)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("slow consumer failed: %v", err)
	}
}

// TestPushToNonReadingRegistryStalls: a registry that stops reading an
// upload (the client blocks writing to the socket) fails the push.
func TestPushToNonReadingRegistryStalls(t *testing.T) {
	inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/blobs/uploads/") && r.ContentLength != 0 {
			<-stop // never reads the body
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	defer close(stop)
	host := strings.TrimPrefix(srv.URL, "http://")
	c := newTestClient()
	// Larger than loopback socket buffers, so the writer really blocks.
	l, err := random.Layer(64<<20, "application/vnd.oci.image.layer.v1.tar")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := c.ParseRepository(host + "/pht/train")
	if err != nil {
		t.Fatal(err)
	}
	err = within(t, 10*time.Second, func() error {
		return remote.WriteLayer(repo, l, c.RemoteOptions(context.Background())...)
	})
	if !errors.Is(err, registry.ErrStalled) {
		t.Fatalf("err = %v, want ErrStalled", err)
	}
}

func TestTimeoutsFromEnv(t *testing.T) {
	t.Setenv(registry.EnvStallTimeout, "5s")
	t.Setenv(registry.EnvHeaderTimeout, "0")
	got, err := registry.TimeoutsFromEnv()
	if err != nil || got.Stall != 5*time.Second || got.ResponseHeader != 0 || got.Dial != registry.DefaultTimeouts().Dial {
		t.Fatalf("got %+v, %v", got, err)
	}
	t.Setenv(registry.EnvStallTimeout, "soon")
	if _, err := registry.TimeoutsFromEnv(); err == nil || !strings.Contains(err.Error(), registry.EnvStallTimeout) {
		t.Fatalf("bad value accepted: %v", err)
	}
	// A client built from a bad environment fails its calls with that error.
	c := registry.NewClient(registry.WithKeychain(authn.NewMultiKeychain()))
	if _, err := c.ListTags(context.Background(), "127.0.0.1:1/x"); err == nil || !strings.Contains(err.Error(), registry.EnvStallTimeout) {
		t.Fatalf("err = %v, want the env error", err)
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// fullBacklog returns the address of a socket that listens with a backlog
// of 0 and never accepts; once its queue is full the kernel drops further
// SYNs, so a new connection attempt hangs in connect().
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue; the attempt that no longer completes tells us it is full.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("backlog never filled")
	return ""
}

// TestDialTimeout: a registry whose connect() never completes fails with
// ErrTimeout after the dial timeout.
func TestDialTimeout(t *testing.T) {
	host := fullBacklog(t)
	c := newTestClient()
	err := within(t, 10*time.Second, func() error {
		_, err := c.ListTags(context.Background(), host+"/pht/train")
		return err
	})
	if !errors.Is(err, registry.ErrTimeout) || !strings.Contains(err.Error(), "dial") {
		t.Fatalf("err = %v, want a dial ErrTimeout", err)
	}
}
