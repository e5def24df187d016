package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/trainyard/trainyard/protocol/hardened"
)

func init() { register(newKeysCmd) }

// newKeysCmd manages the key pairs of the trainyard/v1 protocol (ed25519 to
// sign, X25519 to receive wrapped keys) for stations and users.
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Key pairs of the trainyard/v1 protocol (ed25519 + X25519) for stations and users"}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate PREFIX",
		Short: "Write PREFIX.key (two PKCS#8 PEM blocks, mode 0600) and PREFIX.pub (two SPKI PEM blocks)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := hardened.GenerateKeyFiles(args[0]+".key", args[0]+".pub")
			if err != nil {
				return err
			}
			pub := k.Public()
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s.key and %s.pub\nsign key %s\nenc key  %s\n", args[0], args[0], pub.SignKeyID(), pub.EncKeyID())
			return nil
		},
	}, &cobra.Command{
		Use:   "show FILE",
		Short: "Print the key ids of a public (.pub) or private (.key) key file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := hardened.LoadPublicKey(args[0])
			if err != nil {
				priv, perr := hardened.LoadPrivateKey(args[0])
				if perr != nil {
					return err
				}
				pub = priv.Public()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sign key %s\nenc key  %s\n", pub.SignKeyID(), pub.EncKeyID())
			return nil
		},
	})
	return cmd
}
