package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/trainyard/trainyard/protocol/hardened"
)

func init() { register(newKeysCmd) }

// newKeysCmd manages the key pairs of the trainyard/v1 protocol (ed25519 to
// sign, X25519 to receive wrapped keys) for stations and users.
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Key pairs of the trainyard/v1 protocol (ed25519 + X25519) for stations and users"}
	var encrypt bool
	gen := &cobra.Command{
		Use:   "generate PREFIX",
		Short: "Write PREFIX.key (two PKCS#8 PEM blocks, mode 0600) and PREFIX.pub (two SPKI PEM blocks)",
		Long: `Write a new key pair. With --encrypt the private key is encrypted (PKCS#8
PBES2: scrypt and AES-256-CBC, which openssl also reads) under a passphrase
from TRAINYARD_KEY_PASSWORD or asked twice on the terminal; every command that
reads the key then asks for it (or reads TRAINYARD_KEY_PASSWORD).`,
		Example: `  trainyard keys generate hospital-a
  trainyard keys generate --encrypt alice
  TRAINYARD_KEY_PASSWORD=... trainyard keys generate --encrypt board`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []hardened.KeyFileOption
			if encrypt {
				opts = append(opts, hardened.WithPassphrase(newPassphrase(cmd, "passphrase for "+args[0]+".key")))
			}
			k, err := hardened.GenerateKeyFiles(args[0]+".key", args[0]+".pub", opts...)
			if err != nil {
				return err
			}
			pub := k.Public()
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.key and %s.pub\nsign key %s\nenc key  %s\n", args[0], args[0], pub.SignKeyID(), pub.EncKeyID())
			return nil
		},
	}
	gen.Flags().BoolVar(&encrypt, "encrypt", false, "encrypt the private key with a passphrase (TRAINYARD_KEY_PASSWORD, else asked twice)")
	var output string
	var checkOutput func() error
	show := &cobra.Command{
		Use:   "show FILE",
		Short: "Print the key ids of a public (.pub) or private (.key) key file",
		Example: `  trainyard keys show hospital-a.pub
  trainyard keys show alice.key -o json | jq -r .sign_key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(); err != nil {
				return err
			}
			private := false
			pub, err := hardened.LoadPublicKey(args[0])
			if err != nil {
				priv, perr := loadPrivateKey(cmd, args[0])
				if perr != nil {
					return err
				}
				pub, private = priv.Public(), true
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), KeyIDs{SignKey: pub.SignKeyID(), EncKey: pub.EncKeyID(), Private: private})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sign key %s\nenc key  %s\n", pub.SignKeyID(), pub.EncKeyID())
			return nil
		},
	}
	checkOutput = outputFlag(show, &output)
	cmd.AddCommand(gen, show)
	return cmd
}

// loadPrivateKey opens a trainyard/v1 key file, asking for the passphrase
// (TRAINYARD_KEY_PASSWORD, else the terminal) only when it is encrypted.
func loadPrivateKey(cmd *cobra.Command, path string) (*hardened.PrivateKey, error) {
	return hardened.LoadPrivateKey(path, hardened.WithPassphrase(func() ([]byte, error) {
		return readPassphrase(cmd, "passphrase for "+path, false)
	}))
}

// newPassphrase returns the passphrase for a new key: TRAINYARD_KEY_PASSWORD,
// else asked twice on the terminal; empty ones are refused.
func newPassphrase(cmd *cobra.Command, what string) func() ([]byte, error) {
	return func() ([]byte, error) { return readPassphrase(cmd, what, true) }
}

func readPassphrase(cmd *cobra.Command, what string, confirm bool) ([]byte, error) {
	if v, ok := os.LookupEnv("TRAINYARD_KEY_PASSWORD"); ok {
		if v == "" {
			return nil, errors.New("TRAINYARD_KEY_PASSWORD is empty")
		}
		return []byte(v), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, fmt.Errorf("%s: set TRAINYARD_KEY_PASSWORD (no terminal to ask on)", what)
	}
	ask := func(prompt string) ([]byte, error) {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: ", prompt)
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(cmd.ErrOrStderr())
		return pw, err
	}
	pw, err := ask(what)
	if err != nil {
		return nil, err
	}
	if len(pw) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		again, err := ask("again")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	return pw, nil
}
