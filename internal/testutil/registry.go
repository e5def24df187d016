package testutil

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// QuietRegistry is go-containerregistry's in-memory registry with its
// request log discarded: the tests' stand-in for a real registry where disk
// and a process of its own do not matter.
func QuietRegistry() http.Handler {
	return ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
}

// Registry serves QuietRegistry on a loopback port until the test ends.
func Registry(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(QuietRegistry())
	t.Cleanup(srv.Close)
	return srv
}
