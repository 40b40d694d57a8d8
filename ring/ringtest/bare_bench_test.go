//go:build ringtest

package ringtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/bench/bare"
	"github.com/herdproject/herd/internal/gobuild"
)

// bareMBs holds BenchmarkBare's MB/s per N, for BenchmarkRing's
// pct-of-bare (BenchmarkBare runs first: its file sorts first).
var bareMBs sync.Map // int -> float64

// BenchmarkBare is BenchmarkRing's floor: the same 1 GiB random file
// through a chain of 1 and of 4 nodes on loopback, each writing to tmpfs,
// carried by bench/bare's relay (herd-bench bare: 512 KiB reads, forward,
// pwrite, fsync; no framing, hashing or verification by the relay). The
// harness checks every copy's SHA-256 afterwards, untimed. Metrics as
// BenchmarkRing's: MB/s per node, sender and mean node CPU-s/GiB.
func BenchmarkBare(b *testing.B) {
	const size = 1 << 30
	in := randomFile(b, size, 11)
	want := inputSHA(b, in)
	relay := bareRelay(b)
	port := strconv.Itoa(bare.Port)
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			dir := workDir(b)
			var wall, senderCPU, nodeCPU time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rdir := filepath.Join(dir, fmt.Sprintf("run%d", i))
				var nodes []*node
				for k := 1; k <= n; k++ {
					nd := filepath.Join(rdir, "node-"+addr(k))
					if err := os.MkdirAll(nd, 0o755); err != nil {
						b.Fatal(err)
					}
					args := []string{"bare", "node", "--listen", net.JoinHostPort(addr(k), port)}
					if k < n {
						args = append(args, "--next", net.JoinHostPort(addr(k+1), port))
					}
					p := startCmd(b, rdir, "bare-"+addr(k), nd, exec.Command(relay, append(args, "out.img")...))
					nodes = append(nodes, &node{proc: p, addr: addr(k), dir: nd})
				}
				for _, nd := range nodes {
					waitListening(b, nd, net.JoinHostPort(nd.addr, port))
				}
				b.StartTimer()
				start := time.Now()
				src := startCmd(b, rdir, "bare-send", rdir, exec.Command(relay, "bare", "send", in, net.JoinHostPort(addr(1), port)))
				code, ok := src.wait(10 * time.Minute)
				elapsed := time.Since(start)
				b.StopTimer()
				if !ok || code != 0 {
					b.Fatalf("bare send: exit %d:\n%s", code, src.dump())
				}
				waitExit(b, nodes, 0)
				wall += elapsed
				senderCPU += src.cmd.ProcessState.UserTime() + src.cmd.ProcessState.SystemTime()
				for _, nd := range nodes {
					nodeCPU += nd.cmd.ProcessState.UserTime() + nd.cmd.ProcessState.SystemTime()
					out := filepath.Join(nd.dir, "out.img")
					if got := sha256File(b, out); got != want {
						b.Fatalf("node %s: copy has SHA-256 %s, want %s", nd.addr, got, want)
					}
					if err := os.Remove(out); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			b.StopTimer()
			gib := float64(b.N) * size / (1 << 30)
			mbs := float64(b.N) * size / 1e6 / wall.Seconds()
			bareMBs.Store(n, mbs)
			b.ReportMetric(mbs, "MB/s")
			b.ReportMetric(senderCPU.Seconds()/gib, "sender-CPU-s/GiB")
			b.ReportMetric(nodeCPU.Seconds()/gib/float64(n), "node-CPU-s/GiB")
		})
	}
}

// reportPctOfBare adds herd's MB/s as a percentage of BenchmarkBare's at
// the same N, when BenchmarkBare ran before in this process.
func reportPctOfBare(b *testing.B, n int, mbs float64) {
	if v, ok := bareMBs.Load(n); ok && v.(float64) > 0 {
		b.ReportMetric(100*mbs/v.(float64), "pct-of-bare")
	}
}

// bareRelay builds cmd/herd-bench (its "bare" command is the relay) for
// this benchmark, and removes it when b ends.
func bareRelay(b *testing.B) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bins, err := gobuild.Build(ctx, "./cmd/herd-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bins.Remove() })
	return bins.Path("herd-bench")
}

// waitListening waits until a bare node accepts connections on target
// (it ignores a connection that closes without a stream).
func waitListening(tb testing.TB, n *node, target string) {
	tb.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if n.exited() {
			tb.Fatalf("%s ended before it listened:\n%s", n.addr, n.dump())
		}
		if c, err := net.DialTimeout("tcp", target, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s did not listen on %s within %v:\n%s", n.addr, target, readyTimeout, n.dump())
}
