// Command dollyC is herd's implementation of the dollyC command line.
package main

import "github.com/herdproject/herd/cmd/internal/cli"

func main() { cli.Exec(cli.DollyC) }
