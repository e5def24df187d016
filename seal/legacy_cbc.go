package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// Decrypting the azaion seed's format as a stream.

// FormatAzaionV1 names the azaion seed's archive format: IV(16) ||
// AES-256-CBC(SHA-256(fragment), IV, PKCS7(docker-save tar)). It has no MAC:
// it is read only so that existing archives can still be loaded.
const FormatAzaionV1 = "azaion-v1"

// legacyKey is the seed's key derivation: SHA-256 of the fragment bytes.
func legacyKey(fragment []byte) []byte {
	k := sha256.Sum256(fragment)
	return k[:]
}

// cbcReader decrypts IV || AES-256-CBC ciphertext as a stream and removes
// PKCS#7 padding at the end. It reads 1 MiB at a time and decrypts it in
// place with one CryptBlocks call (Go's CBC decrypter costs the same per
// byte at any size, but large calls keep the per-call and copy overhead
// out of the loop), holding back the last block until EOF.
type cbcReader struct {
	r    io.Reader
	mode cipher.BlockMode
	// buf[:aes.BlockSize] takes the held-back block so that it and the
	// next chunk are contiguous; ciphertext is read into the rest.
	buf  []byte
	out  []byte // decrypted, not yet returned (a slice of buf)
	held bool   // buf[:aes.BlockSize] holds the last decrypted block
	eof  bool
	err  error
}

const cbcChunk = 1 << 20

func newCBCReader(r io.Reader, key []byte) (*cbcReader, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(r, iv); err != nil {
		return nil, fmt.Errorf("%w: azaion-v1 archive shorter than its IV", ErrMalformed)
	}
	return &cbcReader{r: r, mode: cipher.NewCBCDecrypter(block, iv), buf: make([]byte, aes.BlockSize+cbcChunk)}, nil
}

func (c *cbcReader) fill() error {
	n, err := io.ReadFull(c.r, c.buf[aes.BlockSize:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		c.eof = true
	} else if err != nil {
		return &readError{err} // the file's failure, not the archive's
	}
	if n%aes.BlockSize != 0 {
		return fmt.Errorf("%w: azaion-v1 ciphertext is not a whole number of blocks (truncated?)", ErrTampered)
	}
	ct := c.buf[aes.BlockSize : aes.BlockSize+n]
	c.mode.CryptBlocks(ct, ct)
	all := ct
	if c.held {
		all = c.buf[:aes.BlockSize+n]
	}
	if c.eof {
		if len(all) == 0 {
			return fmt.Errorf("%w: azaion-v1 archive has no data", ErrTampered)
		}
		p := int(all[len(all)-1])
		if p == 0 || p > aes.BlockSize || p > len(all) {
			return fmt.Errorf("%w: azaion-v1 padding invalid (wrong fragment or damaged archive)", ErrWrongKey)
		}
		for _, b := range all[len(all)-p:] {
			if int(b) != p {
				return fmt.Errorf("%w: azaion-v1 padding invalid (wrong fragment or damaged archive)", ErrWrongKey)
			}
		}
		c.out, c.held = all[:len(all)-p], false
		return nil
	}
	// n > 0 here (a full chunk was read), so all has at least one block.
	k := len(all) - aes.BlockSize
	c.out = all[:k]
	// The held block moves to the front only after out has been consumed:
	// fill is called when out is empty, so keep it at the end for now.
	c.held = true
	return nil
}

func (c *cbcReader) Read(b []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.eof {
			return 0, io.EOF
		}
		if c.held {
			copy(c.buf[:aes.BlockSize], c.buf[len(c.buf)-aes.BlockSize:])
		}
		if c.err = c.fill(); c.err != nil {
			return 0, c.err
		}
	}
	n := copy(b, c.out)
	c.out = c.out[n:]
	return n, nil
}

// openLegacy returns a stream of the plaintext docker-save tar of an
// azaion-v1 archive. The plaintext is NOT authenticated (unexported so no
// importer can take it for a verified stream); UnsealLegacy
// checks the tar's own hash chain before loading.
func openLegacy(path string, fragment []byte) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := newCBCReader(f, legacyKey(fragment))
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, f}, nil
}
