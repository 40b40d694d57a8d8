// Package procs runs a herd process on one P (GOMAXPROCS=1) while one is
// enough, and gives it the machine's default as soon as its Go code keeps
// that P busy.
//
// A ring node's pipeline (read, hash, write, forward) hands every chunk
// from goroutine to goroutine. With several Ps, each hand-off can wake an
// idle thread on another CPU, which spins a while looking for work before
// it sleeps again; on a link that a node keeps up with easily, that costs
// more CPU than the work itself. On one P the hand-offs are cheap switches
// on one thread, and the kernel's copies (socket reads, disk writes, which
// run in system calls, outside the P) still run on other CPUs. Measured in
// the bench lab (docs/bench/levers.md): 400 Mbit/s, 8 nodes, 2.8–3.0 CPU
// seconds per GiB on the default GOMAXPROCS, 2.5 on one P.
//
// One P is not enough when Go code itself is the bottleneck: zstd
// decompression, or hashing at several hundred MB/s. The governor samples
// the process's user CPU time (getrusage) every Interval: user time above
// Raise of one CPU means the P is busy with Go code, and GOMAXPROCS goes
// back to the runtime's default; user time below Lower for LowerAfter
// samples in a row brings it back to one.
//
// A GOMAXPROCS environment variable turns the governor off: the
// administrator's choice stands.
package procs

import (
	"context"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Policy is when the governor changes GOMAXPROCS.
type Policy struct {
	// Interval is the sampling period.
	Interval time.Duration
	// Raise is the share of one CPU (0.7 = 70 %) of user time in one
	// Interval above which the process gets the default GOMAXPROCS.
	Raise float64
	// Lower is the share of one CPU below which, LowerAfter samples in a
	// row, the process goes back to one P.
	Lower      float64
	LowerAfter int
}

// DefaultPolicy samples every 200 ms, raises above 70 % of a CPU and
// lowers after a second below 35 %.
var DefaultPolicy = Policy{Interval: 200 * time.Millisecond, Raise: 0.7, Lower: 0.35, LowerAfter: 5}

// governor is the decision, apart from the clock and the runtime.
type governor struct {
	p     Policy
	def   int // the default GOMAXPROCS
	procs int // the current one
	low   int // samples in a row below Lower
}

// step takes one sample, user CPU time spent during wall, and returns the
// GOMAXPROCS to run with.
func (g *governor) step(user, wall time.Duration) int {
	if wall <= 0 {
		return g.procs
	}
	share := float64(user) / float64(wall)
	switch {
	case g.procs == 1 && share >= g.p.Raise:
		g.procs, g.low = g.def, 0
	case g.procs > 1 && share < g.p.Lower:
		if g.low++; g.low >= g.p.LowerAfter {
			g.procs, g.low = 1, 0
		}
	default:
		g.low = 0
	}
	return g.procs
}

// Govern starts the governor with DefaultPolicy; stop ends it and restores
// the runtime's default GOMAXPROCS. It does nothing (stop is a no-op) when
// the GOMAXPROCS environment variable is set or the default is already 1.
func Govern(ctx context.Context) (stop func()) {
	return GovernWith(ctx, DefaultPolicy)
}

// GovernWith is Govern with a policy of the caller's.
func GovernWith(ctx context.Context, p Policy) (stop func()) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		return func() {}
	}
	def := runtime.GOMAXPROCS(0)
	if def <= 1 || p.Interval <= 0 {
		return func() {}
	}
	g := &governor{p: p, def: def, procs: 1}
	runtime.GOMAXPROCS(1)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.Interval)
		defer t.Stop()
		lastUser, lastWall := userTime(), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				user := userTime()
				prev := g.procs
				if n := g.step(user-lastUser, now.Sub(lastWall)); n != prev {
					setProcs(n, def)
				}
				lastUser, lastWall = user, now
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			setProcs(def, def)
		})
	}
}

// setProcs sets GOMAXPROCS to n; n = def goes back to the runtime's
// default, which follows CPU limits as they change.
func setProcs(n, def int) {
	if n >= def {
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(n)
}

// userTime is the process's user CPU time so far.
func userTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano())
}
