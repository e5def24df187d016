package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/trainyard/trainyard/internal/aeadstream"
)

// The body is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár
// 2015) over AES-256-GCM: plaintext is cut into chunks of ChunkSize bytes
// (the last may be shorter, and is empty only for an empty payload); chunk i
// is sealed with nonce = NoncePrefix(4) || uint64_be(i) and associated data
// SHA-256(header bytes) || final flag (1 for the last chunk, else 0). So
// reordering, dropping, duplicating or truncating chunks, appending data, or
// changing one header byte all fail authentication.

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealLayout is the archive format's chunk layout (see above); the
// chunking itself is internal/aeadstream's, shared with trains.
type sealLayout struct {
	prefix []byte
	hh     [32]byte
}

func (l sealLayout) Nonce(dst []byte, i uint64, _ bool) []byte {
	return binary.BigEndian.AppendUint64(append(dst, l.prefix...), i)
}

func (l sealLayout) AD(dst []byte, final bool) []byte {
	dst = append(dst, l.hh[:]...)
	if final {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// chunkWriter encrypts a plaintext stream into sealed chunks.
type chunkWriter = aeadstream.Writer

func newChunkWriter(w io.Writer, key, prefix []byte, hh [32]byte, size int) (*chunkWriter, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	return aeadstream.NewWriter(w, aead, sealLayout{prefix: prefix, hh: hh}, size), nil
}

// chunkReader decrypts and authenticates sealed chunks. It returns io.EOF
// only after a chunk marked final has been authenticated and nothing
// follows it; any failure is ErrTampered and sticks, and a failure to read
// the archive itself is a readError.
type chunkReader = aeadstream.Reader

func newChunkReader(r io.Reader, key, prefix []byte, hh [32]byte, size int) (*chunkReader, error) {
	if size < minChunkSize || size > maxChunkSize {
		return nil, fmt.Errorf("%w: chunk size %d out of range", ErrMalformed, size)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	cr := aeadstream.NewReader(r, aead, sealLayout{prefix: prefix, hh: hh}, size, 64<<10, func(f aeadstream.Failure, i uint64) error {
		switch f {
		case aeadstream.NoFinal:
			return fmt.Errorf("%w: archive truncated after chunk %d (no final chunk)", ErrTampered, i)
		case aeadstream.Short:
			return fmt.Errorf("%w: archive truncated in chunk %d", ErrTampered, i)
		}
		return fmt.Errorf("%w: chunk %d (at byte %d of the body) does not authenticate", ErrTampered, i, i*uint64(size+tagSize))
	})
	cr.ReadErr = func(err error) error { return &readError{err: err} }
	return cr, nil
}
