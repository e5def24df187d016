package hardened

import (
	"bytes"
	"encoding/json"
)

// Where the station glue puts the protocol's three artifacts in a train
// image (paths inside the image, without the leading slash, as in the train
// package). All three live in the one replaceable state layer; the sealed
// code blob never changes along the route.
const (
	ConfigPath      = "opt/train_config.json"          // the Envelope (JSON)
	CodeBlobPath    = "opt/pht_train/code.sealed"      // sealed code tree
	ResultsBlobPath = "opt/pht_results/results.sealed" // sealed results of the last stop
)

// IsEnvelope reports whether a train config is a v1 envelope (as opposed to
// a legacy pht-v2 train_config.json), without validating it.
func IsEnvelope(config []byte) bool {
	var probe struct {
		Protocol string `json:"protocol"`
	}
	d := json.NewDecoder(bytes.NewReader(config))
	return d.Decode(&probe) == nil && probe.Protocol == Protocol
}
