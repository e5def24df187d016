package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
)

// V1Image is the legacy v1 image record of one schema1 layer.
type V1Image struct {
	ID              string        `json:"id"`
	Parent          string        `json:"parent,omitempty"`
	ContentChecksum digest.Digest `json:"contentChecksum"`
	Created         string        `json:"created,omitempty"`
	Comment         string        `json:"comment,omitempty"`
	Author          string        `json:"author,omitempty"`
	Command         string        `json:"command,omitempty"`
	// Compat is the v1 JSON: as signed, or canonical JSON with the new ids
	// when the layer was rewritten.
	Compat json.RawMessage `json:"compat"`
	// Rewritten reports a synthesized id.
	Rewritten bool `json:"rewritten,omitempty"`
}

// RewriteInvalidImageIDs returns the v1 images of the layers, base to leaf,
// with Quay's rewrite_invalid_image_ids rule (CVE-2014-8178): existing maps
// v1 ids already stored to the blob digest stored under them. A layer whose
// id is stored with a different blob gets a new content-addressed id, and so
// does every layer after it; parents follow the new ids. The new id is the
// running sha256 over digest "@" v1Compatibility "|" of every layer so far.
//
// Unlike Quay, the remapped parent image is written to container_config
// "Image", not to a new lowercase "image" key.
func (s *Schema1) RewriteInvalidImageIDs(existing map[string]digest.Digest) ([]V1Image, error) {
	layers, err := s.Layers()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	rewriting := false
	updated := map[string]string{}
	out := make([]V1Image, 0, len(layers))
	for _, l := range layers {
		h.Write([]byte(l.BlobSum.String()))
		h.Write([]byte("@"))
		h.Write([]byte(l.RawV1Compatibility))
		h.Write([]byte("|"))
		id := l.V1.ID
		if stored, ok := existing[id]; ok && stored != l.BlobSum {
			rewriting = true
		}
		if rewriting {
			id = hex.EncodeToString(h.Sum(nil))
		}
		updated[l.V1.ID] = id
		parent := l.V1.Parent
		if p, ok := updated[parent]; ok && parent != "" {
			parent = p
		}
		img := V1Image{ID: id, Parent: parent, ContentChecksum: l.BlobSum, Created: l.V1.Created,
			Comment: l.V1.Comment, Author: l.V1.Author, Command: l.V1.Command,
			Compat: json.RawMessage(l.RawV1Compatibility), Rewritten: rewriting}
		if rewriting {
			c, err := rewriteV1JSON(l.RawV1Compatibility, updated)
			if err != nil {
				return nil, err
			}
			img.Compat = c
		}
		out = append(out, img)
	}
	return out, nil
}

// rewriteV1JSON updates id, parent and container_config.Image through the
// id map and emits canonical JSON.
func rewriteV1JSON(raw string, updated map[string]string) (json.RawMessage, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: v1Compatibility: %w", ErrInvalid, err)
	}
	if id, ok := m["id"].(string); ok {
		m["id"] = updated[id]
	}
	if p, ok := m["parent"].(string); ok && p != "" {
		if np, ok := updated[p]; ok {
			m["parent"] = np
		}
	}
	if cc, ok := m["container_config"].(map[string]any); ok {
		if img, ok := cc["Image"].(string); ok {
			if ni, ok := updated[img]; ok {
				cc["Image"] = ni
			}
		}
	}
	return json.Marshal(m)
}
