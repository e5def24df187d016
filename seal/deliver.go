package seal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// FragmentStore receives the key-server half of each share;
// *keyserver.Store (a stopped server's data dir) implements it.
type FragmentStore interface {
	AddFragment(archive, device string, fragment []byte) error
}

// FragmentSource hands out a device's fragment of an archive;
// *keyserver.Client implements it, and FragmentFile reads one from a file.
type FragmentSource interface {
	// Fragment returns the fragment of archive (trainyard-sealed-v1).
	Fragment(ctx context.Context, archive string) ([]byte, error)
	// LegacyFragment returns the fragment of an azaion-v1 archive, which
	// names no archive id ("" as in the seed).
	LegacyFragment(ctx context.Context, archive string) ([]byte, error)
}

// Delivery says where SealAndDeliver puts the key shares.
type Delivery struct {
	// KeysDir receives <device>.device-key.json (mode 0600) for every
	// device, and <device>.fragment (0600) when Store is nil. It is created
	// (0700) if missing. Default: the archive's directory.
	KeysDir string
	// Store, when set, takes the fragments instead of fragment files, so a
	// fragment never touches the disk outside the key server's store.
	Store FragmentStore
}

// Delivered is what SealAndDeliver wrote.
type Delivered struct {
	*Sealed
	// Devices are in the order of WithDevices.
	Devices []DeliveredShare
}

// DeliveredShare says where one device's two halves went.
type DeliveredShare struct {
	Device string
	// DeviceKeyFile is shipped to the site with the archive.
	DeviceKeyFile string
	// FragmentFile is for 'keyserver fragment add' and is then deleted;
	// empty when the fragment went into Delivery.Store.
	FragmentFile string
}

// ErrShareExists: SealAndDeliver would overwrite a key share file, which
// may be the only copy of another archive's share. Nothing was sealed.
var ErrShareExists = errors.New("key share file already exists")

// SealAndDeliver seals images into path (as SealFile) and hands out the
// shares: the device key files into d.KeysDir and the fragments into
// d.Store or fragment files beside them. Existing share files are refused
// with ErrShareExists before any image is read; shares are never
// overwritten. If delivery fails after sealing, the archive stays and the
// error names what was not written.
func SealAndDeliver(ctx context.Context, path string, images []Source, d Delivery, opts ...SealOption) (*Delivered, error) {
	var cfg sealConfig
	for _, o := range opts {
		o(&cfg)
	}
	devices := cfg.devices
	if len(devices) == 0 {
		devices = []string{defaultDevice}
	}
	dir := d.KeysDir
	if dir == "" {
		dir = filepath.Dir(path)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys dir: %w", err)
	}
	// Only names Seal will accept become paths.
	if err := checkDevices(devices); err != nil {
		return nil, err
	}
	out := &Delivered{}
	for _, dev := range devices {
		dk, fr := filepath.Join(dir, dev+".device-key.json"), filepath.Join(dir, dev+".fragment")
		// A fragment file is refused even with a store: a leftover
		// fragment beside a new device key would pair the wrong halves.
		for _, p := range []string{dk, fr} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("seal: %s: %w", p, ErrShareExists)
			}
		}
		s := DeliveredShare{Device: dev, DeviceKeyFile: dk}
		if d.Store == nil {
			s.FragmentFile = fr
		}
		out.Devices = append(out.Devices, s)
	}
	res, err := SealFile(ctx, path, images, opts...)
	if err != nil {
		return nil, err
	}
	out.Sealed = res
	id := res.Header.ArchiveID
	for i, s := range res.Shares {
		ds := out.Devices[i]
		if err := WriteDeviceKeyFile(ds.DeviceKeyFile, id, s); err != nil {
			return nil, fmt.Errorf("archive %s sealed, device key of %s not written: %w", id, s.Device, err)
		}
		if d.Store != nil {
			if err := d.Store.AddFragment(id, s.Device, s.Fragment); err != nil {
				return nil, fmt.Errorf("archive %s sealed, fragment of %s not stored: %w", id, s.Device, err)
			}
			continue
		}
		if err := writeSecretFile(ds.FragmentFile, s.Fragment); err != nil {
			return nil, fmt.Errorf("archive %s sealed, fragment of %s not written: %w", id, s.Device, err)
		}
	}
	return out, nil
}

// writeSecretFile creates path 0600, refusing an existing one (O_EXCL): a
// share is never overwritten, not even by a race after the first check.
func writeSecretFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// KeySource says where UnsealFrom gets the two shares of an archive's key.
type KeySource struct {
	// DeviceKeyFile is this device's key file, written by seal.
	DeviceKeyFile string
	// Fragments hands out this device's fragment: a *keyserver.Client, or
	// a FragmentFile.
	Fragments FragmentSource
}

// UnsealFrom unseals a trainyard-sealed-v1 archive through the key server:
// it reads the device key file, checks that it belongs to the archive
// (ErrWrongKey if not, before any request), fetches this device's fragment
// from ks.Fragments, and unseals into t as Unseal does. Errors from the
// fragment source are returned as they are, so that a caller can tell a
// key-server refusal from an outage (keyserver.ErrForbidden,
// keyserver.ErrUnavailable).
func UnsealFrom(ctx context.Context, path string, ks KeySource, t Target, opts ...UnsealOption) (*Result, error) {
	dk, err := ReadDeviceKeyFile(ks.DeviceKeyFile)
	if err != nil {
		return nil, err
	}
	h, err := Inspect(path)
	if err != nil {
		return nil, err
	}
	if dk.ArchiveID != h.ArchiveID {
		return nil, fmt.Errorf("unseal: device key is for archive %s, the archive is %s: %w", dk.ArchiveID, h.ArchiveID, ErrWrongKey)
	}
	frag, err := ks.Fragments.Fragment(ctx, h.ArchiveID)
	if err != nil {
		return nil, err
	}
	return Unseal(ctx, path, Keys{DeviceKey: dk.Key, Fragment: frag}, t, opts...)
}

// UnsealLegacyFrom unseals an azaion-v1 archive with the fragment frags
// hands out for it (the seed's key server answers for no archive id), as
// UnsealLegacy does.
func UnsealLegacyFrom(ctx context.Context, path string, frags FragmentSource, t LegacyTarget, opts ...UnsealOption) (*LegacyResult, error) {
	frag, err := frags.LegacyFragment(ctx, "")
	if err != nil {
		return nil, err
	}
	return UnsealLegacy(ctx, path, frag, t, opts...)
}

// MaxFragmentSize bounds a fragment file, like the key server's answers.
const MaxFragmentSize = 4096

// ErrBadFragment: a fragment file is empty or larger than MaxFragmentSize.
// It is a key refusal (it matches ErrWrongKey), not an I/O error.
var ErrBadFragment = fmt.Errorf("%w: fragment file is empty or oversized", ErrWrongKey)

// FragmentFile is a FragmentSource that reads the fragment from a file,
// for sites that get it by hand instead of from a key server; it answers
// the same bytes for every archive.
type FragmentFile string

// Fragment reads the file, bounded by MaxFragmentSize.
func (f FragmentFile) Fragment(context.Context, string) ([]byte, error) {
	fh, err := os.Open(string(f))
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, MaxFragmentSize+1))
	if err != nil {
		return nil, fmt.Errorf("fragment file %s: %w", f, err)
	}
	if len(b) == 0 || len(b) > MaxFragmentSize {
		return nil, fmt.Errorf("fragment file %s: %w", f, ErrBadFragment)
	}
	return b, nil
}

// LegacyFragment reads the file, as Fragment.
func (f FragmentFile) LegacyFragment(ctx context.Context, archive string) ([]byte, error) {
	return f.Fragment(ctx, archive)
}
