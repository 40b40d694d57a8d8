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
// decompression, or hashing at several hundred MB/s. Nor when the process
// as a whole keeps a CPU busy: on an unshaped link a node's Go code (the
// hash) and its system calls (the socket read, the disk write) take turns
// on one thread, where two Ps would let them overlap. The governor samples
// the process's CPU time (getrusage) every Interval: user time above Raise
// of one CPU means the P is busy with Go code, user and system time
// together above Saturate mean the process is CPU-bound; either gives
// GOMAXPROCS back to the runtime's default. User and system time together
// below Lower for LowerAfter samples in a row bring it back to one.
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
	// Saturate is the share of one CPU of user and system time together
	// in one Interval above which the process gets the default
	// GOMAXPROCS; 0 never raises on it.
	Saturate float64
	// Lower is the share of one CPU (user and system time) below which,
	// LowerAfter samples in a row, the process goes back to one P.
	Lower      float64
	LowerAfter int
}

// DefaultPolicy samples every 200 ms, raises above 70 % of a CPU in user
// time or 90 % in all, and lowers after a second below 35 %.
var DefaultPolicy = Policy{Interval: 200 * time.Millisecond, Raise: 0.7, Saturate: 0.9, Lower: 0.35, LowerAfter: 5}

// governor is the decision, apart from the clock and the runtime.
type governor struct {
	p     Policy
	def   int // the default GOMAXPROCS
	procs int // the current one
	low   int // samples in a row below Lower
}

// step takes one sample, the user and the whole (user and system) CPU
// time spent during wall, and returns the GOMAXPROCS to run with.
func (g *governor) step(user, all, wall time.Duration) int {
	if wall <= 0 {
		return g.procs
	}
	share, busy := float64(user)/float64(wall), float64(all)/float64(wall)
	switch {
	case g.procs == 1 && (share >= g.p.Raise || g.p.Saturate > 0 && busy >= g.p.Saturate):
		g.procs, g.low = g.def, 0
	case g.procs > 1 && busy < g.p.Lower:
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
		lastUser, lastAll := cpuTime()
		lastWall := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				user, all := cpuTime()
				prev := g.procs
				if n := g.step(user-lastUser, all-lastAll, now.Sub(lastWall)); n != prev {
					setProcs(n, def)
				}
				lastUser, lastAll, lastWall = user, all, now
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

// cpuTime is the process's user CPU time so far, and its user and system
// CPU time together.
func cpuTime() (user, all time.Duration) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
