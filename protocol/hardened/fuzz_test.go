package hardened

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
)

// Every parser of the package has a fuzz target; `go test` runs the seeds.

func seedEnvelope(f *testing.F) (*testNet, []byte) {
	n := newTestNet(f)
	env, _, _ := n.roundTrip(f, 2)
	b, err := env.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	return n, b
}

func FuzzParseEnvelope(f *testing.F) {
	n, good := seedEnvelope(f)
	f.Add(good)
	f.Add([]byte(`{"protocol":"trainyard/v1","train":{"payloadType":"x","payload":"","signatures":[]},"stops":[]}`))
	f.Add([]byte(`{"protocol":"trainyard/v1","extra":1}`))
	f.Add([]byte(`null`))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := ParseEnvelope(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error not ErrMalformed: %v", err)
			}
			return
		}
		b, err := env.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseEnvelope(b); err != nil {
			t.Fatalf("re-parse of marshalled envelope: %v", err)
		}
		// Verification of arbitrary input never panics, and anything it
		// accepts carries consistent stops.
		if v, err := Verify(ctx, n.trust, env); err == nil && len(v.Stops) != len(env.Stops) {
			t.Fatal("verified stop count differs")
		}
	})
}

func FuzzParseStatement(f *testing.F) {
	n := newTestNet(f)
	env, _ := n.create(f)
	raw, _ := env.Train.DecodeB64Payload()
	f.Add(raw)
	f.Add([]byte(`{"protocol":"trainyard/v1","route":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatement(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseStatement(b); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzParseStopRecord(f *testing.F) {
	n := newTestNet(f)
	env, _, _ := n.roundTrip(f, 1)
	raw, _ := env.Stops[0].DecodeB64Payload()
	f.Add(raw)
	f.Add([]byte(`{"protocol":"trainyard/v1","input":null,"output":{"keys":[{}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseStopRecord(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseStopRecord(b); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzParseStreamHeader(f *testing.F) {
	h := StreamHeader{Alg: streamAlgAES256GCM, ChunkSize: DefaultChunkSize}
	f.Add(h.marshal())
	f.Add([]byte("TYSTRM01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseStreamHeader(data)
		if err != nil {
			return
		}
		if !bytes.Equal(h.marshal(), data) {
			t.Fatal("header does not re-encode to its input")
		}
	})
}

func FuzzOpenReader(f *testing.F) {
	key := bytes.Repeat([]byte{1}, 32)
	f.Add(sealBytes(f, key, []byte("hello results"), 512))
	f.Add(sealBytes(f, key, bytes.Repeat([]byte("z"), 1500), 512))
	f.Add(sealBytes(f, key, nil, 512))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewOpenReader(bytes.NewReader(data), key)
		if err != nil {
			return
		}
		// Anything decrypting must have been sealed under key by us: the
		// seeds. Mutations must fail, not panic or loop.
		io.Copy(io.Discard, r)
	})
}

func FuzzUnpackTree(f *testing.F) {
	var buf bytes.Buffer
	if _, err := packTree(context.Background(), os.DirFS(newTestNet(f).code), &buf, -1); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		m, err := unpackTree(context.Background(), bytes.NewReader(data), dir)
		if err != nil {
			return
		}
		// What was written is exactly what the manifest says.
		again, err := TreeManifest(context.Background(), os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		if again.Digest() != m.Digest() {
			t.Fatal("manifest of unpacked tree differs from the one unpackTree returned")
		}
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	k := mustKey(f)
	priv, _ := k.MarshalPEM()
	pub, _ := k.Public().MarshalPEM()
	f.Add(priv)
	f.Add(pub)
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := ParsePublicKeyPEM(data); err == nil {
			b, err := p.MarshalPEM()
			if err != nil {
				t.Fatal(err)
			}
			if q, err := ParsePublicKeyPEM(b); err != nil || !q.Equal(p) {
				t.Fatal("public key does not round trip")
			}
		}
		if s, err := ParsePrivateKeyPEM(data); err == nil {
			if _, err := s.MarshalPEM(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
