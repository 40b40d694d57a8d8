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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.ByName(os.Args[0])(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
