package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func init() { register(newLoginCmd) }

func newLoginCmd() *cobra.Command {
	var user string
	var passwordStdin, insecure bool
	cmd := &cobra.Command{
		Use:   "login REGISTRY -u USER [--password-stdin]",
		Short: "Check credentials with a registry and store them in the Docker config (like docker login)",
		Long: `Check USER's password with REGISTRY and, when it accepts them, store them in
the Docker config ($DOCKER_CONFIG/config.json, default ~/.docker/config.json,
or the credential helper that file names). Every trainyard command, docker,
crane, skopeo and oras then find them. The password is read from stdin with
--password-stdin, else asked on the terminal.`,
		Example: `  trainyard login registry.example.org -u alice
  echo "$TOKEN" | trainyard login registry.example.org -u ci --password-stdin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return &ExitError{Code: 2, Err: errors.New("--username (-u) is required")}
			}
			pw, err := loginPassword(cmd, passwordStdin)
			if err != nil {
				return err
			}
			if err := newClient(cmd, insecure).Login(cmd.Context(), args[0], user, pw, os.Getenv("DOCKER_CONFIG")); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s\n", args[0], user)
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password (or token) from stdin")
	registryFlags(cmd, &insecure)
	return cmd
}

func loginPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", &ExitError{Code: 2, Err: errors.New("empty password on stdin")}
		}
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", &ExitError{Code: 2, Err: errors.New("no terminal to ask for the password on: use --password-stdin")}
	}
	fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(cmd.ErrOrStderr())
	return string(pw), err
}
