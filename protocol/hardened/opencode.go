package hardened

import (
	"context"
	"fmt"
	"io"
)

// dueStop is the route check of PreRun and OpenCode: the train must be due
// at stationID now (its next stop), the approval must cover the station and
// key must be the station's key in the trust store. It returns the stop's
// index on the route.
func dueStop(v *Verified, stationID string, key *PrivateKey) (int, error) {
	st := v.Statement
	pos := -1
	for i, p := range st.Route {
		if p.ID == stationID {
			pos = i
		}
	}
	switch {
	case pos < 0:
		return 0, fmt.Errorf("%w: station %q is not on the route of train %s", ErrRoute, stationID, st.ID)
	case pos < len(v.Stops):
		return 0, fmt.Errorf("%w: station %q already signed stop %d of train %s", ErrReplay, stationID, pos, st.ID)
	case pos > len(v.Stops):
		return 0, fmt.Errorf("%w: train %s is due at stop %d (station %q), not at %q (stop %d)", ErrRoute, st.ID, len(v.Stops), v.Next(), stationID, pos)
	}
	if !v.Approval.allows(stationID) {
		return 0, fmt.Errorf("%w: the approval of train %s does not cover station %q", ErrUnapproved, st.ID, stationID)
	}
	if !v.routeKeys[pos].Equal(key.Public()) {
		return 0, fmt.Errorf("%w: this station's private key does not match the trust store entry for %q", ErrUntrusted, stationID)
	}
	return pos, nil
}

// OpenedCode is a train's code as OpenCode decrypted it.
type OpenedCode struct {
	Verified *Verified
	// Index is the stop the train is due at (this station's position).
	Index int
	// Manifest lists the tree written to the code directory, sorted by
	// path; its digest is the signed Statement.Code.Manifest.
	Manifest *Manifest
}

// OpenCode is PreRun for a look before deciding: the same verification and
// route checks for station, then only the code is decrypted into codeDir
// (empty or absent; emptied on error). The previous stop's results are not
// decrypted, only checked to be present where signed and to have a key this
// station can unwrap. No option applies: nothing is marked in a replay
// guard, so the stop can still run afterwards.
func OpenCode(ctx context.Context, station Party, t Train, codeDir string) (_ *OpenedCode, err error) {
	if err := station.check("OpenCode", "station"); err != nil {
		return nil, err
	}
	stationID, key := station.ID, station.Key
	v, err := Verify(ctx, station.Trust, t.Envelope)
	if err != nil {
		return nil, err
	}
	st := v.Statement
	pos, err := dueStop(v, stationID, key)
	if err != nil {
		return nil, err
	}
	to := stationTo(stationID)
	if t.Code == nil {
		return nil, fmt.Errorf("%w: no code blob", ErrTampered)
	}
	if pos == 0 {
		if t.Results != nil {
			var b [1]byte
			if n, _ := io.ReadFull(t.Results, b[:]); n > 0 {
				return nil, fmt.Errorf("%w: results present at the first stop, where none were signed", ErrTampered)
			}
		}
	} else {
		if t.Results == nil {
			return nil, fmt.Errorf("%w: results of stop %d are missing", ErrTampered, pos-1)
		}
		last := v.Stops[pos-1]
		if _, err := unwrapFor(last.Output.Keys, to, key, wrapInfo("results", st.ID, st.Nonce, pos-1, to)); err != nil {
			return nil, err
		}
	}
	ck, err := unwrapFor(st.Code.Keys, to, key, wrapInfo("code", st.ID, st.Nonce, -1, to))
	if err != nil {
		return nil, err
	}
	if err := prepareDir(codeDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			clearDir(codeDir)
		}
	}()
	m, err := openTree(ctx, t.Code, st.Code.Blob, ck, codeDir, "code", t.BlobsVerified)
	if err != nil {
		return nil, err
	}
	if got := m.Digest(); got != st.Code.Manifest {
		return nil, fmt.Errorf("%w: code tree %s does not match the signed manifest %s", ErrTampered, got, st.Code.Manifest)
	}
	return &OpenedCode{Verified: v, Index: pos, Manifest: m}, nil
}
