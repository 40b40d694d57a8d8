// Command dolly is herd's implementation of the dolly command line.
package main

import "github.com/herdproject/herd/cmd/internal/cli"

func main() { cli.Exec(cli.Dolly) }
