package cli

import "testing"

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "512M": 512 << 20, "512m": 512 << 20, "1g": 1 << 30, "1Gi": 1 << 30,
		"1GiB": 1 << 30, "64k": 64 << 10, "2T": 2 << 40,
	} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-3M", "lots", "1.5.3G", "12X"} {
		if n, err := parseByteSize(in); err == nil {
			t.Errorf("%q: accepted as %d", in, n)
		}
	}
}

func TestNonNegativeDuration(t *testing.T) {
	var d nonNegativeDuration
	if err := d.Set("-3s"); err == nil {
		t.Fatal("-3s accepted")
	}
	if err := d.Set("1h"); err != nil || d.String() != "1h0m0s" {
		t.Fatalf("1h: %v %s", err, d.String())
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512M", "1Gi", "0", "-1", "9223372036854775807", "1e9", "1.5G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseByteSize(s)
		if err == nil && n < 0 {
			t.Fatalf("%q parsed to negative %d", s, n)
		}
	})
}
