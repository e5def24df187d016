package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/hardened"
)

// outputFlag adds -o/--output (text or json) and returns a check to call
// before any work, so a typo fails before a pull or a decryption.
func outputFlag(c *cobra.Command, format *string) func() error {
	c.Flags().StringVarP(format, "output", "o", "text", "output `format`: text or json (field names are stable, see README)")
	return func() error {
		switch *format {
		case "text", "json":
			return nil
		}
		return &ExitError{Code: 2, Err: fmt.Errorf("--output %q: use text or json", *format)}
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// TrainStop is one finished stop in the JSON of `train show` and `train open`.
type TrainStop struct {
	Index   int       `json:"index"`
	Station string    `json:"station"`
	Time    time.Time `json:"time"`
}

// TrainFacts is `train show -o json` of a trainyard/v1 train: the public
// facts of its envelope. Verified is false: show checks no signature.
type TrainFacts struct {
	Protocol   string      `json:"protocol"` // "trainyard/v1"
	Verified   bool        `json:"verified"` // always false for show; train open verifies
	ID         string      `json:"id"`
	Creator    string      `json:"creator"`
	Created    time.Time   `json:"created"`
	Route      []string    `json:"route"` // station ids in order
	Stops      []TrainStop `json:"stops"` // finished stops, in order
	Next       string      `json:"next,omitempty"`
	Approval   string      `json:"approval"` // the approval digest the stations check
	Base       string      `json:"base,omitempty"`
	Entrypoint []string    `json:"entrypoint"`
	Cmd        []string    `json:"cmd,omitempty"`
}

func trainFacts(st *hardened.Statement, stops []hardened.StopRecord) TrainFacts {
	f := TrainFacts{Protocol: st.Protocol, ID: st.ID, Creator: st.Creator.ID, Created: st.Created,
		Route: []string{}, Stops: []TrainStop{}, Approval: st.Code.Approval, Base: st.Base,
		Entrypoint: st.Exec.Entrypoint, Cmd: st.Exec.Cmd}
	for _, r := range st.Route {
		f.Route = append(f.Route, r.ID)
	}
	for _, s := range stops {
		f.Stops = append(f.Stops, TrainStop{Index: s.Index, Station: s.Station, Time: s.Time})
	}
	if len(stops) < len(st.Route) {
		f.Next = st.Route[len(stops)].ID
	}
	return f
}

// OpenedTrain is `train open -o json`: what was verified and where the
// results went.
type OpenedTrain struct {
	ID          string      `json:"id"`
	TrainDigest string      `json:"train_digest"` // digest of the creator-signed statement
	Creator     string      `json:"creator"`
	Route       []string    `json:"route"`
	Stops       []TrainStop `json:"stops"` // every stop, each signature verified from the first
	Complete    bool        `json:"complete"`
	Approval    string      `json:"approval"`
	ResultsDir  string      `json:"results_dir"`
}

// KeyIDs is `keys show -o json`.
type KeyIDs struct {
	SignKey string `json:"sign_key"` // ed25519 key id
	EncKey  string `json:"enc_key"`  // X25519 key id
	Private bool   `json:"private"`  // FILE was a private key
}

// TrainDigest is `train digest -o json`.
type TrainDigest struct {
	Digest     string   `json:"digest"` // what approvers sign (trust approve-train --digest)
	Code       string   `json:"code"`
	Base       string   `json:"base"`
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd,omitempty"`
}
