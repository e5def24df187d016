// Package deps pins the modules that trainyard's packages are being built on
// so that go mod tidy keeps them while work is in progress. Removed once every
// module is imported by real code.
package deps

import (
	_ "github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/go-jose/go-jose/v4"
	_ "github.com/google/go-containerregistry/pkg/crane"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "github.com/google/go-containerregistry/pkg/v1/random"
	_ "github.com/google/go-containerregistry/pkg/v1/tarball"
	_ "github.com/moby/moby/client"
	_ "github.com/opencontainers/go-digest"
	_ "github.com/opencontainers/image-spec/specs-go/v1"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/secure-systems-lab/go-securesystemslib/cjson"
	_ "github.com/theupdateframework/go-tuf/v2/metadata"
	_ "github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	_ "github.com/theupdateframework/go-tuf/v2/metadata/updater"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/time/rate"
)
