// Command herd installs and refreshes Linux clusters over the network; see
// 'herd help'. Installed under the names dolly, dollyS or dollyC it takes
// those programs' command lines.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/herdproject/herd/cmd/internal/cli"
	"github.com/herdproject/herd/internal/procs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// One P while one is enough (see package procs).
	stopProcs := procs.Govern(ctx)
	code := cli.ByName(os.Args[0])(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stopProcs()
	stop()
	os.Exit(code)
}
