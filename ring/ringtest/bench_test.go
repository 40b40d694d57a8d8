//go:build ringtest

package ringtest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkRing sends a 1 GiB random file with 'herd send' (fsync on,
// i.e. without -n) through a chain of 1 and of 4 herd recv processes that
// write to tmpfs. One op is one session; node start-up is not timed.
// Metrics: MB/s is 10^6 bytes per second of the sender's run as every node
// gets the whole file (so per node); dolly-MB/s is the sender's own
// MBytes/s total; sender-CPU-s/GiB and node-CPU-s/GiB are user+system CPU
// seconds per GiB, the node figure the mean over the nodes; pct-of-bare
// is MB/s as a percentage of BenchmarkBare's at the same N, when that ran
// before in the same process (go test -bench 'Bare|Ring').
func BenchmarkRing(b *testing.B) {
	const size = 1 << 30
	in := randomFile(b, size, 11)
	rateRE := regexp.MustCompile(`(?m)^MBytes/s: ([0-9.]+)$`)
	for _, n := range []int{1, 4} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			dir := workDir(b)
			var wall, senderCPU, nodeCPU time.Duration
			var dollyRate float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rdir := filepath.Join(dir, fmt.Sprintf("run%d", i))
				if err := os.Mkdir(rdir, 0o755); err != nil {
					b.Fatal(err)
				}
				nodes := startNodes(b, rdir, addrs(seq(1, n)...), nodeOpts{})
				b.StartTimer()
				r := send(b, rdir, 10*time.Minute, "herd", "send", "-q", "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
				b.StopTimer()
				wantExit(b, r, 0)
				allDone(b, r, nodeAddrs(nodes))
				waitExit(b, nodes, 0)
				wall += r.elapsed
				senderCPU += r.state.UserTime() + r.state.SystemTime()
				for _, nd := range nodes {
					nodeCPU += nd.cmd.ProcessState.UserTime() + nd.cmd.ProcessState.SystemTime()
					out := filepath.Join(nd.dir, "out.img")
					if fi, err := os.Stat(out); err != nil || fi.Size() != size {
						b.Fatalf("node %s: output %v, %v", nd.addr, fi, err)
					}
					if err := os.Remove(out); err != nil {
						b.Fatal(err)
					}
				}
				if m := rateRE.FindStringSubmatch(r.stdout); m != nil {
					v, _ := strconv.ParseFloat(m[1], 64)
					dollyRate += v
				}
				b.StartTimer()
			}
			b.StopTimer()
			gib := float64(b.N) * size / (1 << 30)
			mbs := float64(b.N) * size / 1e6 / wall.Seconds()
			b.ReportMetric(mbs, "MB/s")
			reportPctOfBare(b, n, mbs)
			b.ReportMetric(dollyRate/float64(b.N), "dolly-MB/s")
			b.ReportMetric(senderCPU.Seconds()/gib, "sender-CPU-s/GiB")
			b.ReportMetric(nodeCPU.Seconds()/gib/float64(n), "node-CPU-s/GiB")
		})
	}
}
