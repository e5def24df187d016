package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/seal"
	"github.com/trainyard/trainyard/train"
)

// imageLocationHelp is the one sentence every command's help uses for the
// image location forms (train.ParseImageLocation).
const imageLocationHelp = "a registry reference, oci:DIR[:TAG|@DIGEST], docker-archive:FILE[:REPO:TAG], FILE.tar or docker-daemon:REPO:TAG"

// localSealSource opens a non-registry --images location for seal. The name
// the image is loaded under at the site comes from the location: an
// archive's RepoTag, an OCI layout's io.containerd.image.name or full
// ref.name annotation, else DIR's base name with the tag (skopeo's
// "oci:alpine:3.19" becomes alpine:3.19).
func localSealSource(cmd *cobra.Command, loc string) (seal.Source, error) {
	img, n, err := train.LoadNamed(cmd.Context(), loc, nil)
	if err != nil {
		return seal.Source{}, err
	}
	if n == "" {
		if l, _ := train.ParseImageLocation(loc); l.Kind == "oci" && l.Digest == "" {
			tag := l.Tag
			if tag == "" {
				tag = "latest"
			}
			n = strings.ToLower(filepath.Base(filepath.Clean(l.Path))) + ":" + tag
		}
	}
	if n == "" {
		return seal.Source{}, fmt.Errorf("seal: %s carries no image name: write it as docker-archive:FILE:REPO:TAG or oci:DIR:TAG", loc)
	}
	r, err := name.ParseReference(n)
	if err != nil {
		return seal.Source{}, fmt.Errorf("seal: %s: name %q: %w", loc, n, err)
	}
	sn, err := seal.NameFor(r)
	if err != nil {
		return seal.Source{}, fmt.Errorf("seal: %s: %w", loc, err)
	}
	return seal.Source{Name: sn, Image: img, Source: loc}, nil
}
