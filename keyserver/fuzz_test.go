package keyserver

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
)

// FuzzServeFragment: any Authorization header, archive path or query gets a
// well-formed refusal (or the genuine fragment for the genuine token), never
// a panic or a 5xx.
func FuzzServeFragment(f *testing.F) {
	s, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	tok, _, err := s.CreateToken("site-a", "", "")
	if err != nil {
		f.Fatal(err)
	}
	if err := s.AddFragment("ar-1", "site-a", []byte("frag")); err != nil {
		f.Fatal(err)
	}
	h := NewServer(s, WithLogger(quiet()), WithIPRateLimit(1e9, 1e9), WithTokenRateLimit(1e9, 1e9), WithFailureLimit(1e9, 1e9))
	f.Add("Bearer "+tok, "ar-1", "")
	f.Add("Bearer "+tok, "", "archive=ar-1")
	f.Add("bearer x", "../../etc", "archive=%00")
	f.Add("", "ar-1", "")
	f.Fuzz(func(t *testing.T, auth, archive, query string) {
		p := FragmentPathPrefix + url.PathEscape(archive)
		if archive == "" {
			p = LegacyPath
		}
		req := httptest.NewRequest(http.MethodGet, "http://ks"+p, nil)
		req.URL.RawQuery = query
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%d for %q %q %q", rec.Code, auth, archive, query)
		}
		if rec.Code == http.StatusOK && (auth != "Bearer "+tok || rec.Body.String() != "frag") {
			t.Fatalf("fragment served for %q", auth)
		}
	})
}

// FuzzAddrPrefix: any remote address string maps to a prefix without a
// panic; a parsable address maps to a masked prefix that contains it.
func FuzzAddrPrefix(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:10.1.2.3", "2001:db8::1", "fe80::1%eth0", "", "1.2.3.4:80", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ip string) {
		got := AddrPrefix(ip, 24, 64)
		a, err := netip.ParseAddr(ip)
		if err != nil {
			if got != ip {
				t.Fatalf("unparsable %q mapped to %q", ip, got)
			}
			return
		}
		p, err := netip.ParsePrefix(got)
		if err != nil || !p.Contains(a.Unmap().WithZone("")) || p != p.Masked() {
			t.Fatalf("%q -> %q (%v)", ip, got, err)
		}
	})
}
