package ocistore

import (
	"regexp"
	"testing"
)

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func TestTagFor(t *testing.T) {
	for in, want := range map[string]string{
		"root.json":           "root.json",
		"timestamp.json":      "timestamp.json",
		"3.targets.json":      "3.targets.json",
		"12.releases.json":    "12.releases.json",
		"1.%2Fdelegated.json": "1._" + "b4b4cb0e9da8ad1f06f4c2f7a0d6dbbcdc9d9bab9c1c82dfc7c4fb4d8b3e7c4b",
	} {
		got, err := TagFor(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if in != "1.%2Fdelegated.json" && got != want {
			t.Fatalf("TagFor(%q) = %q, want %q", in, got, want)
		}
		if !tagRE.MatchString(got) {
			t.Fatalf("TagFor(%q) = %q is not a valid tag", in, got)
		}
	}
	for _, bad := range []string{"", "root", ".json", "1..json"} {
		if _, err := TagFor(bad); err == nil {
			t.Fatalf("TagFor(%q) accepted", bad)
		}
	}
	a, _ := TagFor("1.?.json")
	b, _ := TagFor("1.#.json")
	if a == b {
		t.Fatal("different roles share a tag")
	}
}

func FuzzTagFor(f *testing.F) {
	for _, s := range []string{"root.json", "1.targets.json", "2.../x.json", "3.?.json", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := TagFor(s)
		if err == nil && !tagRE.MatchString(tag) {
			t.Fatalf("TagFor(%q) = %q: invalid tag", s, tag)
		}
	})
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://auth.example/token",service="registry",scope="x"`)
	f.Add(`Basic realm=x`)
	f.Fuzz(func(t *testing.T, s string) { parseChallenge(s) })
}
