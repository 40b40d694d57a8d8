package procs

import (
	"context"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestStep(t *testing.T) {
	p := Policy{Interval: time.Second, Raise: 0.7, Saturate: 0.9, Lower: 0.35, LowerAfter: 3}
	ms := time.Millisecond
	tests := []struct {
		name      string
		procs     int
		low       int
		user, all time.Duration // in 1 s
		want      int
		wlow      int
	}{
		{"idle on one P stays", 1, 0, 10 * ms, 20 * ms, 1, 0},
		{"busy P raises", 1, 0, 700 * ms, 750 * ms, 8, 0},
		{"just below Raise stays", 1, 0, 699 * ms, 800 * ms, 1, 0},
		{"a CPU-bound process raises, its Go code not busy", 1, 0, 400 * ms, 950 * ms, 8, 0},
		{"just below Saturate stays", 1, 0, 400 * ms, 899 * ms, 1, 0},
		{"raised and busy stays", 8, 2, 1500 * ms, 1700 * ms, 8, 0},
		{"raised, between the thresholds: no countdown", 8, 2, 300 * ms, 500 * ms, 8, 0},
		{"raised, little user time but busy in the kernel: no countdown", 8, 2, 100 * ms, 600 * ms, 8, 0},
		{"raised and quiet counts down", 8, 0, 100 * ms, 200 * ms, 8, 1},
		{"raised and quiet long enough lowers", 8, 2, 100 * ms, 200 * ms, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &governor{p: p, def: 8, procs: tt.procs, low: tt.low}
			if got := g.step(tt.user, tt.all, time.Second); got != tt.want || g.low != tt.wlow {
				t.Errorf("step(%v user, %v in all, of 1s) from %d P, %d low = %d P, %d low; want %d, %d", tt.user, tt.all, tt.procs, tt.low, got, g.low, tt.want, tt.wlow)
			}
		})
	}
	g := &governor{p: p, def: 8, procs: 1}
	if got := g.step(time.Second, time.Second, 0); got != 1 {
		t.Errorf("a sample over no time changed GOMAXPROCS to %d", got)
	}
	// Without Saturate, only user time raises.
	g = &governor{p: Policy{Interval: time.Second, Raise: 0.7, Lower: 0.35, LowerAfter: 3}, def: 8, procs: 1}
	if got := g.step(100*ms, 990*ms, time.Second); got != 1 {
		t.Errorf("Saturate 0: raised to %d on system time", got)
	}
}

// waitProcs waits at most d until GOMAXPROCS satisfies ok.
func waitProcs(d time.Duration, ok func(int) bool) (int, bool) {
	end := time.Now().Add(d)
	for {
		n := runtime.GOMAXPROCS(0)
		if ok(n) || time.Now().After(end) {
			return n, ok(n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGovern runs the governor on this process: one P at the start, the
// default while a goroutine keeps the CPU busy, one again once it stops,
// the default after stop.
func TestGovern(t *testing.T) {
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS is set: the governor stays off")
	}
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skip("one CPU: nothing to govern")
	}
	stop := GovernWith(context.Background(), Policy{Interval: 20 * time.Millisecond, Raise: 0.5, Lower: 0.2, LowerAfter: 3})
	defer stop()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS = %d after Govern; want 1", n)
	}
	var busy atomic.Bool
	busy.Store(true)
	go func() {
		x := 0
		for busy.Load() {
			x++
		}
		_ = x
	}()
	n, ok := waitProcs(10*time.Second, func(n int) bool { return n > 1 })
	busy.Store(false)
	if !ok {
		t.Fatalf("a busy goroutine for 10s: GOMAXPROCS still %d; want %d", n, def)
	}
	if n, ok := waitProcs(10*time.Second, func(n int) bool { return n == 1 }); !ok {
		t.Fatalf("idle for 10s: GOMAXPROCS still %d; want 1", n)
	}
	stop()
	if n := runtime.GOMAXPROCS(0); n != def {
		t.Errorf("GOMAXPROCS = %d after stop; want the default %d", n, def)
	}
}

func TestGovernOffWithEnv(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	before := runtime.GOMAXPROCS(0)
	stop := Govern(context.Background())
	defer stop()
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Errorf("GOMAXPROCS set in the environment: the governor changed it from %d to %d", before, n)
	}
}
