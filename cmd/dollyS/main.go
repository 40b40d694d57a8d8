// Command dollyS is herd's implementation of the dollyS command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/herdproject/herd/cmd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.DollyS(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
