package cli

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/internal/fsutil"
	"github.com/trainyard/trainyard/manifest"
	"github.com/trainyard/trainyard/registry"
)

func init() { register(newManifestCmd) }

// manifestEnv holds the flags every manifest subcommand shares.
type manifestEnv struct {
	insecure  bool
	maxSize   int64
	mediaType string
}

func (e *manifestEnv) flags(cmd *cobra.Command) {
	registryFlags(cmd, &e.insecure)
	cmd.Flags().Int64Var(&e.maxSize, "max-size", manifest.DefaultMaxSize, "refuse manifests larger than this many bytes")
	cmd.Flags().StringVar(&e.mediaType, "media-type", "", "declared media type of a FILE or stdin manifest (registries send it as Content-Type)")
}

// source is a loaded manifest and where it came from.
type source struct {
	m   manifest.Manifest
	ref name.Reference // nil for files and stdin
	cl  *registry.Client
}

// load reads FILE, - (stdin) or IMAGE-REF and parses it strictly. A ref by
// digest must match the manifest's own digest (pull by digest).
func (e *manifestEnv) load(cmd *cobra.Command, arg string) (*source, error) {
	opts := []manifest.Option{manifest.WithMaxSize(e.maxSize)}
	mt := e.mediaType
	src := &source{}
	var raw []byte
	var err error
	switch {
	case arg == "-":
		raw, err = manifest.Read(cmd.InOrStdin(), opts...)
	case fileExists(arg) || looksLikePath(arg):
		var f *os.File
		if f, err = os.Open(arg); err == nil {
			raw, err = manifest.Read(f, opts...)
			f.Close()
		}
	default:
		src.cl = newClient(cmd, e.insecure)
		if src.ref, err = src.cl.ParseReference(arg); err != nil {
			return nil, fmt.Errorf("%s is neither a file nor an image reference: %w", arg, err)
		}
		var d *remote.Descriptor
		if d, err = src.cl.Get(cmd.Context(), arg); err == nil {
			raw = d.Manifest
			if int64(len(raw)) > e.maxSize {
				return nil, fmt.Errorf("%s: %w", arg, manifest.ErrTooLarge)
			}
			if mt == "" {
				mt = string(d.MediaType)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if mt != "" {
		opts = append(opts, manifest.WithMediaType(mt))
	}
	if src.m, err = manifest.Parse(raw, opts...); err != nil {
		return nil, err
	}
	if dr, ok := src.ref.(name.Digest); ok {
		if err := manifest.VerifyDigest(src.m, digest.Digest(dr.DigestStr())); err != nil {
			return nil, err
		}
	}
	return src, nil
}

// looksLikePath keeps a mistyped file name from becoming a Docker Hub request.
// A name ending in .json is a path unless it is shaped like a tagged
// reference (HOST/REPO:TAG), as trainyard's own TUF tags are
// (REG/repo:1.root.json); an existing file of that name still wins.
func looksLikePath(p string) bool {
	if strings.HasPrefix(p, ".") || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "~") {
		return true
	}
	if !strings.HasSuffix(p, ".json") {
		return false
	}
	slash := strings.LastIndex(p, "/")
	return slash < 0 || !strings.Contains(p[slash+1:], ":")
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// blobFetcher opens blobs from a repository; ggcr verifies each digest as it streams.
func blobFetcher(repo name.Repository, cl *registry.Client) manifest.BlobFetcher {
	return manifest.BlobFetcherFunc(func(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
		if _, err := manifest.ParseDigest(string(d)); err != nil {
			return nil, err
		}
		l, err := remote.Layer(repo.Digest(d.String()), cl.RemoteOptions(ctx)...)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	})
}

var errNoBlobs = manifest.BlobFetcherFunc(func(context.Context, digest.Digest) (io.ReadCloser, error) {
	return nil, errors.New("no blob source: use an IMAGE-REF, --blobs DIR or --blobs-from REPO")
})

func (s *source) fetchBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if s.ref == nil {
		return errNoBlobs(ctx, d)
	}
	l, err := remote.Layer(s.ref.Context().Digest(d.String()), s.cl.RemoteOptions(ctx)...)
	if err != nil {
		return nil, err
	}
	return l.Compressed()
}

// dirBlobs reads blobs from DIR/<algorithm>/<hex>, the layout of an OCI image layout's blobs/.
func dirBlobs(dir string) manifest.BlobFetcher {
	return manifest.BlobFetcherFunc(func(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
		if _, err := manifest.ParseDigest(string(d)); err != nil {
			return nil, err
		}
		return os.Open(filepath.Join(dir, string(d.Algorithm()), d.Encoded()))
	})
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w", path, manifest.ErrTooLarge)
	}
	return b, nil
}

// writeOut writes to path atomically, or to stdout when path is empty or "-".
func writeOut(cmd *cobra.Command, path string, b []byte) error {
	if path == "" || path == "-" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	return fsutil.WriteFileAtomic(path, b, 0o644)
}

func newManifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Inspect, digest, verify, sign and convert image manifests (schema1, schema2, lists, OCI)",
		Long: "Each command takes FILE, - (stdin) or IMAGE-REF (fetched raw from the registry).\n" +
			"Manifests are parsed strictly: duplicate JSON keys, media-type disagreement, manifest/index\n" +
			"ambiguity and malformed schema1 signatures are refused with one line naming the problem.",
	}
	cmd.AddCommand(newManifestInspectCmd(), newManifestDigestCmd(), newManifestVerifyCmd(),
		newManifestSignCmd(), newManifestConvertCmd(), newManifestKeygenCmd())
	return cmd
}

func newManifestInspectCmd() *cobra.Command {
	var e manifestEnv
	var output string
	cmd := &cobra.Command{
		Use:   "inspect FILE|-|IMAGE-REF",
		Short: "Print a JSON summary: kind, digest, layers (schema1: from the signed payload), signatures",
		Example: `  trainyard manifest inspect 127.0.0.1:5000/net/trust:1.root.json
  trainyard manifest inspect manifest.json --media-type application/vnd.oci.image.manifest.v1+json
  crane manifest alpine:3.19 | trainyard manifest inspect - -o text`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "json" && output != "text" {
				return &ExitError{Code: 2, Err: fmt.Errorf("--output %q: use json or text", output)}
			}
			src, err := e.load(cmd, args[0])
			if err != nil {
				return err
			}
			sum := manifest.Describe(src.m)
			if output == "text" {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "kind       %s\nmedia type %s\ndigest     %s\nsize       %d\n", sum.Kind, sum.MediaType, sum.Digest, sum.Size)
				if sum.Config != nil {
					fmt.Fprintf(w, "config     %s\n", sum.Config.Digest)
				}
				for _, l := range sum.Layers {
					fmt.Fprintf(w, "layer      %s %d\n", l.Digest, l.Size)
				}
				for _, m := range sum.Manifests {
					fmt.Fprintf(w, "manifest   %s %d\n", m.Digest, m.Size)
				}
				return nil
			}
			out, err := json.MarshalIndent(sum, "", "  ")
			if err != nil {
				return err
			}
			return writeOut(cmd, "", append(out, '\n'))
		},
	}
	e.flags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output `format`: json (the manifest package's Summary fields) or text")
	return cmd
}

func newManifestDigestCmd() *cobra.Command {
	var e manifestEnv
	var alg string
	cmd := &cobra.Command{
		Use:   "digest FILE|-|IMAGE-REF",
		Short: "Print the manifest digest (schema1: over the signed payload; signatures are not checked)",
		Example: `  trainyard manifest digest 127.0.0.1:5000/azaion/annotations:3.1
  trainyard manifest digest --algorithm sha512 manifest.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := e.load(cmd, args[0])
			if err != nil {
				return err
			}
			d, err := src.m.DigestAlg(digest.Algorithm(alg))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d)
			return nil
		},
	}
	e.flags(cmd)
	cmd.Flags().StringVar(&alg, "algorithm", "sha256", "digest algorithm: sha256 or sha512")
	return cmd
}

func newManifestVerifyCmd() *cobra.Command {
	var e manifestEnv
	var configPath, want string
	cmd := &cobra.Command{
		Use:   "verify FILE|-|IMAGE-REF",
		Short: "Exit 0 only if the manifest is well formed and its signatures (schema1) or config digest (--config) hold",
		Example: `  trainyard manifest verify schema1.json
  trainyard manifest verify manifest.json --config config.json --digest sha256:3f1c...`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := e.load(cmd, args[0])
			if err != nil {
				return err
			}
			if want != "" {
				if err := manifest.VerifyDigest(src.m, digest.Digest(want)); err != nil {
					return err
				}
			}
			var config []byte
			if configPath != "" {
				if config, err = readLimited(configPath, e.maxSize); err != nil {
					return err
				}
			}
			res, err := manifest.VerifyManifest(src.m, config)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), res)
			return nil
		},
	}
	e.flags(cmd)
	cmd.Flags().StringVar(&configPath, "config", "", "config blob FILE to check against the manifest's config descriptor (size and digest)")
	cmd.Flags().StringVar(&want, "digest", "", "expected manifest digest (sha256:… or sha512:…)")
	return cmd
}

func loadKey(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, nil
	}
	b, err := readLimited(path, 1<<20)
	if err != nil {
		return nil, err
	}
	k, err := manifest.ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func newManifestSignCmd() *cobra.Command {
	var e manifestEnv
	var keyPath, output string
	cmd := &cobra.Command{
		Use:   "sign FILE|-|IMAGE-REF --key PEM",
		Short: "Sign a schema1 manifest (ES256/384/512 by curve, RS256 for RSA); the digest does not change",
		Example: `  trainyard manifest keygen --output signer.pem
  trainyard manifest sign schema1.json --key signer.pem -o signed.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := loadKey(keyPath)
			if err != nil {
				return err
			}
			if k == nil {
				return &ExitError{Code: 2, Err: errors.New("--key is required")}
			}
			src, err := e.load(cmd, args[0])
			if err != nil {
				return err
			}
			s, ok := src.m.(*manifest.Schema1)
			if !ok {
				return fmt.Errorf("%w: only schema1 manifests carry signatures (this is %s); use convert --to schema1", manifest.ErrUnsupported, src.m.Kind())
			}
			out, err := manifest.SignSchema1(s.Payload(), k)
			if err != nil {
				return err
			}
			return writeOut(cmd, output, out)
		},
	}
	e.flags(cmd)
	cmd.Flags().StringVar(&keyPath, "key", envOr("TRAINYARD_MANIFEST_KEY", ""), "PEM private key, EC or RSA (TRAINYARD_MANIFEST_KEY)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the signed manifest to FILE (default stdout)")
	return cmd
}

func newManifestConvertCmd() *cobra.Command {
	var e manifestEnv
	var to, keyPath, configPath, configOut, blobsDir, blobsFrom, output, repo, tag string
	cmd := &cobra.Command{
		Use:   "convert FILE|-|IMAGE-REF --to schema1|schema2|oci",
		Short: "Convert schema2/OCI to schema1 (signed with --key), schema1 to schema2/OCI, schema2 <-> OCI",
		Example: `  trainyard manifest convert 127.0.0.1:5000/app:1 --to schema1 --key signer.pem -o schema1.json
  trainyard manifest convert schema1.json --to oci --blobs ./layout/blobs --config-out config.json -o oci.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, ok := map[string]manifest.Kind{"schema1": manifest.KindSchema1, "schema2": manifest.KindDockerV2,
				"docker": manifest.KindDockerV2, "oci": manifest.KindOCIManifest}[strings.ToLower(to)]
			if !ok {
				return &ExitError{Code: 2, Err: fmt.Errorf("--to %q: want schema1, schema2 or oci", to)}
			}
			k, err := loadKey(keyPath)
			if err != nil {
				return err
			}
			src, err := e.load(cmd, args[0])
			if err != nil {
				return err
			}
			opts := manifest.ConvertOptions{Blobs: manifest.BlobFetcherFunc(src.fetchBlob), MaxConfigSize: e.maxSize, Name: repo, Tag: tag, Key: k}
			switch {
			case blobsDir != "":
				opts.Blobs = dirBlobs(blobsDir)
			case blobsFrom != "":
				cl := newClient(cmd, e.insecure)
				r, err := cl.ParseRepository(blobsFrom)
				if err != nil {
					return err
				}
				opts.Blobs = blobFetcher(r, cl)
			}
			if _, ok := src.m.(*manifest.Image); ok && target == manifest.KindSchema1 && configPath != "" {
				if opts.Config, err = readLimited(configPath, e.maxSize); err != nil {
					return fmt.Errorf("config: %w (give it with --config FILE)", err)
				}
			}
			if src.ref != nil {
				if opts.Name == "" {
					opts.Name = src.ref.Context().RepositoryStr()
				}
				if t, ok := src.ref.(name.Tag); ok && opts.Tag == "" {
					opts.Tag = t.TagStr()
				}
			}
			if _, ok := src.m.(*manifest.Schema1); ok && target != manifest.KindSchema1 && configOut == "" {
				return &ExitError{Code: 2, Err: errors.New("schema1 -> " + to + " creates a config blob: give --config-out FILE")}
			}
			res, err := manifest.Convert(cmd.Context(), src.m, target, opts)
			var ie *manifest.InputError
			switch {
			case errors.As(err, &ie) && ie.Input == "name":
				return &ExitError{Code: 2, Err: errors.New("schema1 needs a repository and tag: give --name and --tag")}
			case errors.As(err, &ie) && ie.Input == "config":
				return fmt.Errorf("config: %w (give it with --config FILE)", ie.Err)
			case errors.As(err, &ie) && ie.Input == "layers":
				return fmt.Errorf("layer sizes and diff ids need the layer blobs (IMAGE-REF or --blobs DIR): %w", ie.Err)
			case err != nil:
				return err
			}
			if res.Unsigned {
				fmt.Fprintln(cmd.ErrOrStderr(), "trainyard: no --key: the schema1 manifest is unsigned (application/vnd.docker.distribution.manifest.v1+json)")
			}
			if res.Config != nil {
				if err := fsutil.WriteFileAtomic(configOut, res.Config, 0o644); err != nil {
					return err
				}
			}
			return writeOut(cmd, output, res.Manifest)
		},
	}
	e.flags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "target format: schema1, schema2 or oci")
	cmd.Flags().StringVar(&keyPath, "key", envOr("TRAINYARD_MANIFEST_KEY", ""), "PEM private key to sign schema1 output (TRAINYARD_MANIFEST_KEY)")
	cmd.Flags().StringVar(&configPath, "config", "", "config blob FILE (schema2/OCI -> schema1; default: fetched from IMAGE-REF)")
	cmd.Flags().StringVar(&configOut, "config-out", "", "where to write the new config blob (schema1 -> schema2/OCI)")
	cmd.Flags().StringVar(&blobsDir, "blobs", "", "read blobs from DIR/<algorithm>/<hex> (an OCI layout's blobs dir) instead of the registry")
	cmd.Flags().StringVar(&blobsFrom, "blobs-from", "", "read blobs from this registry REPO (for a FILE or stdin source)")
	cmd.Flags().StringVar(&repo, "name", "", "repository name for schema1 output (default: from IMAGE-REF)")
	cmd.Flags().StringVar(&tag, "tag", "", "tag for schema1 output (default: from IMAGE-REF)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the manifest to FILE (default stdout)")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func newManifestKeygenCmd() *cobra.Command {
	var alg, output string
	cmd := &cobra.Command{
		Use:   "keygen --output FILE",
		Short: "Generate a schema1 signing key (PKCS#8 PEM): ES256 (default), ES384, ES512 or RS256",
		Example: `  trainyard manifest keygen --output signer.pem
  trainyard manifest keygen --alg RS256 --output rsa-signer.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return &ExitError{Code: 2, Err: errors.New("--output is required")}
			}
			k, pemBytes, err := manifest.GenerateKey(alg)
			if err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(output, pemBytes, 0o600); err != nil {
				return err
			}
			kid, err := manifest.KeyID(k.Public())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s key written to %s, key id %s\n", strings.ToUpper(alg), output, kid)
			return nil
		},
	}
	cmd.Flags().StringVar(&alg, "alg", "ES256", "ES256, ES384, ES512 or RS256")
	cmd.Flags().StringVarP(&output, "output", "o", "", "PEM file to write (mode 0600)")
	return cmd
}
