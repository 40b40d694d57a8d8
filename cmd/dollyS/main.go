// Command dollyS is herd's implementation of the dollyS command line.
package main

import "github.com/herdproject/herd/cmd/internal/cli"

func main() { cli.Exec(cli.DollyS) }
