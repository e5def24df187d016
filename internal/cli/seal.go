package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/keyserver"
	"github.com/trainyard/trainyard/seal"
	"github.com/trainyard/trainyard/train"
)

func init() {
	register(newSealCmd)
	register(newUnsealCmd)
}

func newSealCmd() *cobra.Command {
	var (
		images    []string
		out       string
		devices   []string
		keysDir   string
		archiveID string
		chunkSize int
		insecure  bool
		ksData    string
		platform  string
		force     bool
	)
	cmd := &cobra.Command{
		Use: "seal --images REF... --out FILE.sealed", Example: examples["seal"],
		Short: "Seal images into an encrypted archive for an offline site (key split: device key + key-server fragment)",
		Long: `Seal pulls the images and writes FILE.sealed: an OCI image layout in a tar, encrypted as a
chunked AES-256-GCM stream (docs/sealed-format.md). For every device it writes, into --keys-dir,
<device>.device-key.json (ship it with the archive to that site) and <device>.fragment (give it to
the key server with 'trainyard keyserver fragment add', then delete it). Neither alone opens the archive.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(images) == 0 || out == "" {
				return &ExitError{Code: 2, Err: errors.New("seal: --images and --out are required")}
			}
			ctx := cmd.Context()
			client := newClient(cmd, insecure)
			var srcs []seal.Source
			for _, ref := range images {
				if l, err := train.ParseImageLocation(ref); err != nil {
					return err
				} else if l.Kind != "registry" {
					// oci:DIR[:TAG|@DIGEST], docker-archive:FILE[:REF], FILE.tar,
					// docker-daemon:REF: opened by the one location parser.
					src, err := localSealSource(cmd, ref)
					if err != nil {
						return err
					}
					srcs = append(srcs, src)
					continue
				}
				r, err := client.ParseReference(ref)
				if err != nil {
					return err
				}
				n, err := seal.NameFor(r)
				if err != nil {
					return err
				}
				ropts := client.RemoteOptions(ctx)
				if platform != "" {
					p, err := v1.ParsePlatform(platform)
					if err != nil {
						return &ExitError{Code: 2, Err: fmt.Errorf("seal: --platform: %w", err)}
					}
					ropts = append(ropts, remote.WithPlatform(*p))
				}
				img, err := remote.Image(r, ropts...)
				if err != nil {
					return fmt.Errorf("pull %s: %w", ref, err)
				}
				// remote.Image checks each layer against its digest as it streams.
				srcs = append(srcs, seal.Source{Name: n, Image: img, Source: r.String(), Verified: true})
			}
			// Open the key-server store first: it may be locked by a running server.
			d := seal.Delivery{KeysDir: keysDir}
			if ksData != "" {
				st, err := keyserver.Open(ksData)
				if err != nil {
					return err
				}
				defer st.Close()
				d.Store = st
			}
			opts := []seal.SealOption{seal.WithDevices(devices...), seal.WithArchiveID(archiveID), seal.WithReplace(force), seal.WithProgress(progressWriter(cmd))}
			if chunkSize > 0 {
				opts = append(opts, seal.WithChunkSize(chunkSize))
			}
			res, err := seal.SealAndDeliver(ctx, out, srcs, d, opts...)
			switch {
			case errors.Is(err, seal.ErrArchiveExists):
				return fmt.Errorf("seal: %w: its key shares would open nothing; choose another --out, or --force to replace it", err)
			case errors.Is(err, seal.ErrShareExists):
				return fmt.Errorf("%w; use another --keys-dir", err)
			case err != nil:
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "sealed %s: archive %s, %d bytes\n", out, res.Header.ArchiveID, res.Bytes)
			for _, im := range res.Header.Images {
				fmt.Fprintf(w, "  %s@%s\n", im.Name, im.Digest)
			}
			for _, s := range res.Devices {
				if s.FragmentFile == "" {
					fmt.Fprintf(w, "device %s: device key %s (ship with the archive); fragment stored in key server %s\n", s.Device, s.DeviceKeyFile, ksData)
					continue
				}
				fmt.Fprintf(w, "device %s: device key %s (ship with the archive), fragment %s:\n  trainyard keyserver fragment add --archive %s --device %s --file %s && rm %s\n",
					s.Device, s.DeviceKeyFile, s.FragmentFile, res.Header.ArchiveID, s.Device, s.FragmentFile, s.FragmentFile)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&images, "images", nil, "images to seal: repo:tag, repo:tag@digest, oci:DIR[:TAG|@DIGEST], docker-archive:FILE[:REPO:TAG], FILE.tar or docker-daemon:REPO:TAG (repeat or comma-separate)")
	f.StringVarP(&out, "out", "o", "", "archive file to write (an existing one is refused without --force)")
	f.BoolVar(&force, "force", false, "replace an existing archive at --out")
	f.StringSliceVar(&devices, "devices", nil, "devices to make key shares for (default: one device named \"default\")")
	f.StringVar(&keysDir, "keys-dir", "", "directory for the device keys and fragments (default: next to --out)")
	f.StringVar(&archiveID, "archive-id", "", "archive id (default: random)")
	f.IntVar(&chunkSize, "chunk-size", 0, "plaintext chunk size in bytes (default 1 MiB)")
	f.StringVar(&platform, "platform", envOr("TRAINYARD_PLATFORM", ""), "platform to pick from multi-platform images, e.g. linux/arm64 (default linux/amd64; TRAINYARD_PLATFORM)")
	f.StringVar(&ksData, "keyserver-data", "", "store the fragments straight into this key-server data dir (server stopped) instead of writing .fragment files")
	registryFlags(cmd, &insecure)

	inspect := &cobra.Command{
		Use: "inspect FILE.sealed", Example: examples["seal inspect"],
		Short: "Print the header of a sealed archive (archive id, images and digests) as JSON; needs no key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := seal.Inspect(args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(h)
		},
	}
	cmd.AddCommand(inspect)
	return cmd
}

// unsealExit gives scripts distinct exit codes: 3 an expected image is
// missing or different, 4 the archive is tampered or malformed, 5 wrong key
// or refused by the key server.
func unsealExit(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, seal.ErrExpectation):
		return &ExitError{Code: 3, Err: err}
	case errors.Is(err, seal.ErrTampered), errors.Is(err, seal.ErrMalformed):
		return &ExitError{Code: 4, Err: err}
	case errors.Is(err, seal.ErrWrongKey), errors.Is(err, keyserver.ErrUnauthorized), errors.Is(err, keyserver.ErrForbidden), errors.Is(err, keyserver.ErrNotFound),
		errors.Is(err, keyserver.ErrBadFragment):
		return &ExitError{Code: 5, Err: err}
	}
	return err
}

// fragmentSource is --fragment-file when given, else a key-server client.
func fragmentSource(ksURL, token, caFile, fragmentFile string) (seal.FragmentSource, error) {
	if fragmentFile != "" {
		return seal.FragmentFile(fragmentFile), nil
	}
	if ksURL == "" {
		return nil, errors.New("unseal: give --keyserver URL (TRAINYARD_KEYSERVER) or --fragment-file")
	}
	var opts []keyserver.ClientOption
	if caFile != "" {
		o, err := keyserver.WithCAFile(caFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	return keyserver.NewClient(ksURL, token, opts...)
}

func newUnsealCmd() *cobra.Command {
	var runUnseal func(*cobra.Command, []string) error
	var (
		ksURL, token, caFile, deviceKey, fragmentFile string
		to, format, version                           string
		expects                                       []string
		insecure                                      bool
	)
	cmd := &cobra.Command{
		Use: "unseal FILE.sealed", Example: examples["unseal"],
		Short: "Decrypt a sealed archive with the device key and the key server's fragment, verify and load its images",
		Long: `Unseal fetches this device's fragment from the key server and loads the images into --to:
registry://HOST (default: the embedded registry), oci:DIR, or docker (Engine API, DOCKER_HOST).
Every chunk is authenticated and every blob digest checked; images become visible only after the
whole archive has authenticated (registry and oci: one streaming pass, blobs staged untagged;
docker: a verify pass, then a load pass). No plaintext tar is written to disk. --expect fails the command if an
image is missing or has another digest. --format azaion-v1 reads the azaion seed's archives.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return unsealExit(runUnseal(cmd, args))
		},
	}
	runUnseal = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		path := args[0]
		var es []seal.Expect
		for _, s := range expects {
			e, err := seal.ParseExpect(s, version)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			es = append(es, e)
		}
		client := newClient(cmd, insecure)
		t, err := seal.OpenTarget(to, insecure, client.RemoteOptions(ctx)...)
		if err != nil {
			return err
		}
		if dt, ok := t.(*seal.DockerTarget); ok {
			if err := dt.Ping(ctx); err != nil {
				return err
			}
		}
		if format != seal.FormatV1 && format != seal.FormatAzaionV1 && format != "" {
			return &ExitError{Code: 2, Err: fmt.Errorf("unseal: unknown --format %q (want %s or %s)", format, seal.FormatV1, seal.FormatAzaionV1)}
		}
		frags, err := fragmentSource(ksURL, token, caFile, fragmentFile)
		if err != nil {
			return err
		}
		uopts := []seal.UnsealOption{seal.WithExpect(es...), seal.WithUnsealProgress(progressWriter(cmd))}
		w := cmd.OutOrStdout()
		if format == seal.FormatAzaionV1 {
			res, err := seal.UnsealLegacyFrom(ctx, path, frags, t, uopts...)
			if err != nil {
				return err
			}
			for _, n := range res.Images {
				fmt.Fprintf(w, "loaded %s (image id %s)\n", seal.LoadedRef(t, n), res.IDs[n])
			}
			return nil
		}
		if deviceKey == "" {
			return errors.New("unseal: give --device-key FILE (TRAINYARD_DEVICE_KEY)")
		}
		res, err := seal.UnsealFrom(ctx, path, seal.KeySource{DeviceKeyFile: deviceKey, Fragments: frags}, t, uopts...)
		if err != nil {
			return err
		}
		for _, im := range res.Images {
			fmt.Fprintf(w, "loaded %s@%s\n", seal.LoadedRef(t, im.Name), im.Digest)
		}
		return nil
	}
	f := cmd.Flags()
	f.StringVar(&ksURL, "keyserver", envOr("TRAINYARD_KEYSERVER", ""), "key server URL (TRAINYARD_KEYSERVER)")
	f.StringVar(&token, "token", envOr("TRAINYARD_KEYSERVER_TOKEN", ""), "key server bearer token (TRAINYARD_KEYSERVER_TOKEN; prefer the env var)")
	f.StringVar(&caFile, "keyserver-ca", envOr("TRAINYARD_KEYSERVER_CA", ""), "PEM CA to trust for the key server's TLS (TRAINYARD_KEYSERVER_CA)")
	f.StringVar(&deviceKey, "device-key", envOr("TRAINYARD_DEVICE_KEY", ""), "this device's key file from seal (TRAINYARD_DEVICE_KEY)")
	f.StringVar(&fragmentFile, "fragment-file", "", "read the fragment from a file instead of the key server")
	f.StringVar(&to, "to", envOr("TRAINYARD_UNSEAL_TO", "registry://"+envOr("TRAINYARD_REGISTRY_ADDR", "127.0.0.1:5000")), "where to load: registry://HOST, oci:DIR or docker (TRAINYARD_UNSEAL_TO)")
	f.StringVar(&format, "format", seal.FormatV1, "archive format: "+seal.FormatV1+" or "+seal.FormatAzaionV1)
	f.StringSliceVar(&expects, "expect", nil, "image that must be loaded: repo:tag[@sha256:...], or repo with --expect-version (repeatable)")
	f.StringVar(&version, "expect-version", envOr("TRAINYARD_EXPECT_VERSION", ""), "tag for --expect names given without one, like the seed's API_VERSION (TRAINYARD_EXPECT_VERSION)")
	registryFlags(cmd, &insecure)
	return cmd
}
