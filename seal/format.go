// Package seal builds and opens sealed image archives for offline sites: one
// or more OCI images in a tar of an OCI image layout, encrypted as a chunked
// AES-256-GCM stream (docs/sealed-format.md) under a key split between a
// device part kept at the site and a fragment held by the key server. Unseal
// streams the archive, verifies every blob digest and loads the images into a
// registry, an OCI layout or a Docker engine; the legacy azaion-v1 format
// (IV || AES-256-CBC-PKCS7(docker-save tar)) is read for migration.
package seal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/trainyard/trainyard/internal/ids"
)

// Errors callers branch on. Every refusal wraps exactly one of them.
var (
	// ErrTampered: the archive failed authentication (a changed, truncated or
	// extended ciphertext or header) or a blob does not match its digest.
	ErrTampered = errors.New("sealed archive failed authentication (tampered or truncated)")
	// ErrWrongKey: the device key and fragment do not rebuild this archive's key.
	ErrWrongKey = errors.New("wrong key for this archive")
	// ErrMalformed: not a sealed archive, or a structure this version refuses.
	ErrMalformed = errors.New("malformed sealed archive")
	// ErrExpectation: an image required with --expect is missing or differs.
	ErrExpectation = errors.New("expected image missing or different")
)

// FormatV1 names the chunked AEAD format in the header.
const FormatV1 = "trainyard-sealed-v1"

// magic opens every sealed archive; the last byte is the format version. A
// constant, so no importer can change what every archive starts with.
const magic = "TYSEAL\x00\x01"

const (
	// DefaultChunkSize is the plaintext size of every chunk but the last.
	DefaultChunkSize = 1 << 20
	minChunkSize     = 1 << 10
	maxChunkSize     = 16 << 20
	maxHeaderSize    = 1 << 20
	keySize          = 32
	saltSize         = 32
	noncePrefixSize  = 4
	tagSize          = 16
	cipherName       = "AES-256-GCM"
	kdfName          = "HKDF-SHA256"
)

// Image is one image inside an archive, as listed by the authenticated header.
type Image struct {
	// Name is the repository path and tag the image is loaded under
	// (for example "azaion/annotations:1.2"), without a registry host.
	Name string `json:"name"`
	// Digest is the manifest digest; --expect checks it.
	Digest string `json:"digest"`
	// MediaType and Size describe the manifest.
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	// Source is the reference the image was sealed from (information only).
	Source string `json:"source,omitempty"`
}

// Header is the plaintext, authenticated head of a sealed archive. Its bytes
// are hashed into the associated data of every chunk, so changing any of
// them makes every chunk fail.
type Header struct {
	Format      string    `json:"format"`
	ArchiveID   string    `json:"archive_id"`
	Created     time.Time `json:"created"`
	Cipher      string    `json:"cipher"`
	KDF         string    `json:"kdf"`
	ChunkSize   int       `json:"chunk_size"`
	Salt        []byte    `json:"salt"`
	NoncePrefix []byte    `json:"nonce_prefix"`
	// KeyCheck lets unseal tell a wrong key from a tampered body: it is
	// HKDF(master, salt, "key-check"), which reveals nothing of the key.
	KeyCheck []byte  `json:"key_check"`
	Images   []Image `json:"images"`
}

// ValidArchiveID reports whether s may be used as an archive id (also the
// key server's key, so it is kept to a safe alphabet).
func ValidArchiveID(s string) bool { return ids.Valid(s) }

func (h *Header) validate() error {
	switch {
	case h.Format != FormatV1:
		return fmt.Errorf("%w: unknown format %q", ErrMalformed, h.Format)
	case !ValidArchiveID(h.ArchiveID):
		return fmt.Errorf("%w: bad archive id %q", ErrMalformed, h.ArchiveID)
	case h.Cipher != cipherName || h.KDF != kdfName:
		return fmt.Errorf("%w: unsupported cipher %q / kdf %q", ErrMalformed, h.Cipher, h.KDF)
	case h.ChunkSize < minChunkSize || h.ChunkSize > maxChunkSize:
		return fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, h.ChunkSize)
	case len(h.Salt) != saltSize || len(h.NoncePrefix) != noncePrefixSize || len(h.KeyCheck) != keySize:
		return fmt.Errorf("%w: bad salt, nonce prefix or key check length", ErrMalformed)
	case len(h.Images) == 0:
		return fmt.Errorf("%w: no images listed", ErrMalformed)
	}
	seen := map[string]bool{}
	for _, im := range h.Images {
		if im.Name == "" || seen[im.Name] {
			return fmt.Errorf("%w: empty or duplicate image name %q", ErrMalformed, im.Name)
		}
		seen[im.Name] = true
		if !digestRe.MatchString(im.Digest) || im.Size <= 0 {
			return fmt.Errorf("%w: bad digest or size for %s", ErrMalformed, im.Name)
		}
	}
	return nil
}

var digestRe = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)

// encodeHeader returns magic || uint32 length || JSON.
func encodeHeader(h *Header) ([]byte, error) {
	js, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(js) > maxHeaderSize {
		return nil, fmt.Errorf("header too large (%d bytes)", len(js))
	}
	buf := make([]byte, 0, 12+len(js))
	buf = append(buf, magic...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(js)))
	return append(buf, js...), nil
}

// headerReadErr: a file that ends inside its header is malformed; any other
// read failure is the file's (I/O, cancellation), not evidence about it.
func headerReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: reading header: %w", ErrMalformed, err)
	}
	return fmt.Errorf("reading header: %w", &readError{err})
}

// ReadHeader reads and validates the header at the start of r. It returns the
// header and its exact bytes (which the chunk stream is bound to). The header
// is only authenticated once the first chunk decrypts under it.
func ReadHeader(r io.Reader) (*Header, []byte, error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, nil, headerReadErr(err)
	}
	if string(pre[:8]) != magic {
		return nil, nil, fmt.Errorf("%w: not a trainyard sealed archive (bad magic)", ErrMalformed)
	}
	n := binary.BigEndian.Uint32(pre[8:])
	if n == 0 || n > maxHeaderSize {
		return nil, nil, fmt.Errorf("%w: header length %d out of range", ErrMalformed, n)
	}
	raw := make([]byte, 12+int(n))
	copy(raw, pre[:])
	if _, err := io.ReadFull(r, raw[12:]); err != nil {
		return nil, nil, headerReadErr(err)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(raw[12:]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("%w: trailing data after header JSON", ErrMalformed)
	}
	if err := h.validate(); err != nil {
		return nil, nil, err
	}
	return &h, raw, nil
}

func headerHash(raw []byte) [32]byte { return sha256.Sum256(raw) }
