package bare

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"time"
)

// Main is the command line of the bare relay ("herd-bench bare send|node
// ..."); it returns the exit status: 0 done, 1 failed, 2 bad usage.
//
//	bare send [--block BYTES] [--congestion ALG] FILE ADDR
//	bare node [--block BYTES] [--congestion ALG] [--listen ADDR] [--next ADDR] OUT
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() int {
		fmt.Fprintln(stderr, "usage: bare send [OPTIONS] FILE ADDR | bare node [OPTIONS] [--listen ADDR] [--next ADDR] OUT")
		return 2
	}
	if len(args) == 0 {
		return usage()
	}
	var cfg Config
	fs := flag.NewFlagSet("bare "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Block, "block", Block, "read size in `BYTES`")
	fs.StringVar(&cfg.Congestion, "congestion", "cubic", "TCP congestion control `ALG` of the data connections (\"system\": the system's)")
	listen := fs.String("listen", ":"+strconv.Itoa(Port), "node: listen on `ADDR`")
	next := fs.String("next", "", "node: forward to the node at `ADDR` (none: the last node)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	// One goroutine: one P, unless the environment says otherwise.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	start := time.Now()
	var n int64
	var err error
	switch {
	case args[0] == "send" && fs.NArg() == 2:
		n, err = Send(ctx, fs.Arg(0), fs.Arg(1), cfg)
	case args[0] == "node" && fs.NArg() == 1:
		var ln net.Listener
		if ln, err = net.Listen("tcp", *listen); err != nil {
			break
		}
		n, err = Node(ctx, ln, fs.Arg(0), *next, cfg)
		ln.Close()
	default:
		return usage()
	}
	if err != nil {
		fmt.Fprintf(stderr, "bare %s: %v\n", args[0], err)
		return 1
	}
	sec := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "bare %s: %d bytes in %.3fs (%.1f MB/s)\n", args[0], n, sec, float64(n)/1e6/sec)
	return 0
}
