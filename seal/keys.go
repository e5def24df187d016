package seal

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"os"

	"github.com/trainyard/trainyard/internal/fsutil"
)

// The archive has one random 32-byte master secret M that is never stored.
// For every device d, seal draws a random device part D_d and gives the key
// server the fragment F_d = M XOR D_d: each share alone is uniformly random
// and says nothing about M; both together rebuild it. Keys are derived from M
// with HKDF-SHA256 (salt from the header, info bound to the archive id).

const (
	infoData  = "trainyard-sealed-v1 data-key "
	infoCheck = "trainyard-sealed-v1 key-check "
	// DeviceKeyFormat names the device key file format.
	DeviceKeyFormat = "trainyard-device-key-v1"
)

// Share is one device's half of the key split.
type Share struct {
	Device string
	// DeviceKey stays with the site (the device key file).
	DeviceKey []byte
	// Fragment goes to the key server (keyserver fragment add).
	Fragment []byte
}

// DeviceKeyFile is the JSON document a site keeps next to the archive.
type DeviceKeyFile struct {
	Format    string `json:"format"`
	ArchiveID string `json:"archive_id"`
	Device    string `json:"device"`
	Key       []byte `json:"key"`
}

func deriveKeys(master, salt []byte, archiveID string) (data, check []byte, err error) {
	data, err = hkdf.Key(sha256.New, master, salt, infoData+archiveID, keySize)
	if err != nil {
		return nil, nil, err
	}
	check, err = hkdf.Key(sha256.New, master, salt, infoCheck+archiveID, keySize)
	return data, check, err
}

func xor32(a, b []byte) []byte {
	out := make([]byte, keySize)
	subtle.XORBytes(out, a, b)
	return out
}

func splitMaster(master []byte, devices []string) ([]Share, error) {
	shares := make([]Share, 0, len(devices))
	for _, d := range devices {
		dk := make([]byte, keySize)
		if _, err := rand.Read(dk); err != nil {
			return nil, err
		}
		shares = append(shares, Share{Device: d, DeviceKey: dk, Fragment: xor32(master, dk)})
	}
	return shares, nil
}

// openKeys rebuilds the data key from the two shares and checks it against
// the header's key check value.
func openKeys(h *Header, deviceKey, fragment []byte) ([]byte, error) {
	if len(deviceKey) != keySize || len(fragment) != keySize {
		return nil, fmt.Errorf("%w: device key is %d bytes and fragment %d bytes, want %d each (a legacy azaion fragment? use --format azaion-v1)", ErrWrongKey, len(deviceKey), len(fragment), keySize)
	}
	master := xor32(deviceKey, fragment)
	data, check, err := deriveKeys(master, h.Salt, h.ArchiveID)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(check, h.KeyCheck) != 1 {
		return nil, fmt.Errorf("%w %s: the device key and key-server fragment do not rebuild its key (or its header was changed)", ErrWrongKey, h.ArchiveID)
	}
	return data, nil
}

// WriteDeviceKeyFile stores a device share as JSON, mode 0600, atomically.
func WriteDeviceKeyFile(path, archiveID string, s Share) error {
	b, err := json.MarshalIndent(DeviceKeyFile{Format: DeviceKeyFormat, ArchiveID: archiveID, Device: s.Device, Key: s.DeviceKey}, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// ReadDeviceKeyFile reads a device key file written by WriteDeviceKeyFile.
func ReadDeviceKeyFile(path string) (*DeviceKeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f DeviceKeyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("device key file %s: %w", path, err)
	}
	if f.Format != DeviceKeyFormat || len(f.Key) != keySize {
		return nil, fmt.Errorf("device key file %s: not a %s file", path, DeviceKeyFormat)
	}
	return &f, nil
}
