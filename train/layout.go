// Package train owns the train image: the PHT-compatible train_config.json
// model, the image layout under /opt, and daemonless image handling on
// go-containerregistry (read files from an image's layers with whiteouts
// respected, write the mutable train state as one replaceable layer, load and
// save images from a registry, an OCI layout or a docker tarball).
//
// The package knows nothing about cryptography: the legacy PHT protocol lives
// in protocol/phtv2, the hardened one elsewhere; both build on this package.
package train

// Paths inside a train image, without the leading slash as they appear in
// layer tarballs. They are the PHT library's layout, kept so that existing
// trains work.
const (
	// ConfigPath is the plaintext train configuration.
	ConfigPath = "opt/train_config.json"
	// TrainDir holds the algorithm (encrypted at rest in the registry).
	TrainDir = "opt/pht_train"
	// ResultsDir holds the results (encrypted between stations).
	ResultsDir = "opt/pht_results"
	// UserKeyPath duplicates creator.encrypted_key as raw bytes.
	UserKeyPath = "opt/user_sym_key.key"
	// QueryName is the optional query file inside TrainDir.
	QueryName = "query.json"
)

// StateComment marks the history entry of the layer that holds the mutable
// train state (config, train files, results). Exactly one such layer is kept:
// every write replaces it instead of stacking a new layer per station, so
// old plaintext or old ciphertext never lingers in lower layers.
const StateComment = "trainyard: train state layer"

// MaxConfigSize bounds train_config.json; real configs are a few KiB.
const MaxConfigSize = 8 << 20
