package station

import (
	"context"
	"crypto/rsa"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// Protocols a station can run, by name (stop records, logs, --protocol).
// ProtocolPHTv2 is for networks that still send trains built by the PHT
// tools, with that format's weaknesses: every key comes from the train's own
// config, and nobody approves the code.
const (
	ProtocolV1    = "v1"
	ProtocolPHTv2 = "pht-v2"
)

// Protocol is the kind of train a station runs, with the station's key for
// it: V1 or PHTv2. Both go through the one stop flow (station.go); a
// protocol only opens a pulled train as a trainStop.
type Protocol interface {
	// Name is ProtocolV1 or ProtocolPHTv2.
	Name() string
	open(ctx context.Context, s *Station, img v1.Image, ref, work string) (trainStop, error)
}

// V1 runs trainyard/v1 trains: verified against Station.Trust, each stop
// signed with Key. A V1 without a key serves only the station's records
// (status, history, decisions that push nothing).
type V1 struct{ Key *hardened.PrivateKey }

// Name is ProtocolV1.
func (V1) Name() string { return ProtocolV1 }

func (p V1) open(ctx context.Context, s *Station, img v1.Image, _, work string) (trainStop, error) {
	if p.Key == nil {
		return nil, fmt.Errorf("protocol %s needs the station's key", ProtocolV1)
	}
	return s.openV1(ctx, p.Key, img, work)
}

// PHTv2 runs legacy PHT trains with the station's RSA key.
type PHTv2 struct{ Key *rsa.PrivateKey }

// Name is ProtocolPHTv2.
func (PHTv2) Name() string { return ProtocolPHTv2 }

func (p PHTv2) open(ctx context.Context, s *Station, img v1.Image, ref, work string) (trainStop, error) {
	if p.Key == nil {
		return nil, fmt.Errorf("protocol %s needs the station's RSA key", ProtocolPHTv2)
	}
	return s.openLegacy(ctx, p.Key, img, ref, work)
}

// protocol is the station's protocol name ("" when none is set).
func (s *Station) protocol() string {
	if s.Protocol == nil {
		return ""
	}
	return s.Protocol.Name()
}

// v1Key is the station's v1 signing key, nil for another protocol.
func (s *Station) v1Key() *hardened.PrivateKey {
	if p, ok := s.Protocol.(V1); ok {
		return p.Key
	}
	return nil
}
