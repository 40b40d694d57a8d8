package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPUTimes is the machine's CPU time so far, from /proc/stat's "cpu"
// line, in clock ticks.
type CPUTimes struct {
	Idle, Total uint64
}

// ParseProcStat reads the "cpu" line of /proc/stat: idle is idle plus
// iowait, total every field up to steal (guest time is already in user).
func ParseProcStat(r io.Reader) (CPUTimes, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return CPUTimes{}, fmt.Errorf("/proc/stat: cpu line with %d fields", len(f)-1)
		}
		var t CPUTimes
		for i, s := range f[1:min(len(f), 9)] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu field %d %q: %w", i+1, s, err)
			}
			if t.Total+v < t.Total {
				return CPUTimes{}, fmt.Errorf("/proc/stat: cpu times overflow")
			}
			t.Total += v
			if i == 3 || i == 4 { // idle, iowait
				t.Idle += v
			}
		}
		return t, nil
	}
	if err := sc.Err(); err != nil {
		return CPUTimes{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return CPUTimes{}, fmt.Errorf("/proc/stat: no cpu line")
}

// IdleShare is the share of CPU time idle between a and b (1 when no
// time passed).
func IdleShare(a, b CPUTimes) float64 {
	if b.Total <= a.Total {
		return 1
	}
	return float64(b.Idle-a.Idle) / float64(b.Total-a.Total)
}

// quiesce waits, at most max, until the machine's CPUs were at least
// idle (a share) idle during one sample of every: what a run leaves behind
// (processes exiting, a private tmpfs of several GiB being freed, the
// nodes' verification) must not be charged to the next. It returns how
// long it waited and whether the machine got that quiet.
func quiesce(ctx context.Context, idle float64, every, max time.Duration) (time.Duration, bool) {
	start := time.Now()
	read := func() (CPUTimes, error) {
		f, err := os.Open("/proc/stat")
		if err != nil {
			return CPUTimes{}, err
		}
		defer f.Close()
		return ParseProcStat(f)
	}
	prev, err := read()
	if err != nil {
		return 0, false
	}
	for time.Since(start) < max {
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-time.After(every):
		}
		cur, err := read()
		if err != nil {
			return time.Since(start), false
		}
		if IdleShare(prev, cur) >= idle {
			return time.Since(start), true
		}
		prev = cur
	}
	return time.Since(start), false
}
