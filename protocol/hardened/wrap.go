package hardened

import (
	"crypto/hpke"
	"encoding/base64"
	"fmt"
	"strconv"
)

// WrappedKey is a content key sealed with HPKE (RFC 9180, base mode,
// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) to one participant.
// Key is base64 of the encapsulated key followed by the ciphertext.
type WrappedKey struct {
	To    string `json:"to"`
	KeyID string `json:"keyid"` // EncKeyID of the recipient's key
	Key   string `json:"key"`
}

// wrapInfo binds a wrapped key to its train, purpose, stop and recipient, so
// it cannot be moved to another train, stop or person (HPKE info).
func wrapInfo(purpose, trainID, nonce string, stop int, to string) []byte {
	return []byte("trainyard/v1 wrap\x00" + purpose + "\x00" + trainID + "\x00" + nonce + "\x00" + strconv.Itoa(stop) + "\x00" + to)
}

func wrapKey(to string, pub PublicKey, info, key []byte) (WrappedKey, error) {
	pk, err := hpke.NewDHKEMPublicKey(pub.Enc)
	if err != nil {
		return WrappedKey{}, err
	}
	ct, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, key)
	if err != nil {
		return WrappedKey{}, err
	}
	return WrappedKey{To: to, KeyID: pub.EncKeyID(), Key: base64.StdEncoding.EncodeToString(ct)}, nil
}

func unwrapKey(w WrappedKey, priv *PrivateKey, info []byte) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(w.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key for %s: %v", ErrMalformed, w.To, err)
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv.Enc)
	if err != nil {
		return nil, err
	}
	key, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot unwrap the key for %s: %v", ErrTampered, w.To, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: unwrapped key is %d bytes", ErrTampered, len(key))
	}
	return key, nil
}
