// Command herd-bench measures herd's ring against a star of HTTP clients
// on a switched network of network namespaces it builds (and removes),
// and writes the figures as CSV, a markdown table and an SVG plot.
//
//	herd-bench [--quick] [--reps N] [--only REGEXP] [--out DIR]
//
// It needs root. See bench/ for what is measured and how. Two hidden
// commands are the harness's own: "wrap" (around every measured
// program) and "bare send|node" (the bare relay of bench/bare, the floor
// the ring is compared with).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/herdproject/herd/bench"
	"github.com/herdproject/herd/bench/bare"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "wrap" {
		w, err := bench.ParseWrap(os.Args[2:])
		if err != nil {
			fmt.Fprintln(os.Stderr, "herd-bench wrap:", err)
			os.Exit(2)
		}
		if err := w.Run(ctx, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "herd-bench wrap:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		os.Exit(bare.Main(ctx, os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
