package hardened

import "fmt"

// Unverified decodes the statement and stop records without checking any
// signature or key, for display (`trainyard train show`). Nothing it returns
// may be trusted; use Verify for decisions.
func (e *Envelope) Unverified() (*Statement, []StopRecord, error) {
	raw, err := e.Train.DecodeB64Payload()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: statement payload: %v", ErrMalformed, err)
	}
	st, err := ParseStatement(raw)
	if err != nil {
		return nil, nil, err
	}
	var stops []StopRecord
	for i, s := range e.Stops {
		raw, err := s.DecodeB64Payload()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: stop %d payload: %v", ErrMalformed, i, err)
		}
		r, err := ParseStopRecord(raw)
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, *r)
	}
	return st, stops, nil
}
