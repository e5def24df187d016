// Command trainyard brings analysis code to sensitive data: verified trains,
// TUF-secured distribution over OCI registries and sealed offline archives.
package main

import (
	"os"

	"github.com/trainyard/trainyard/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
