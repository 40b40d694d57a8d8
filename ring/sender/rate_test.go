package sender

import (
	"math"
	"testing"
	"time"
)

// The meter's rate is what arrived over the last five seconds: steady on a
// steady link whatever the report interval, the average since the start
// before five seconds passed, falling to zero for a node that stopped
// reporting, and it says when the node last moved.
func TestMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name    string
		reports [][2]float64 // seconds, bytes
		now     float64
		want    float64 // bytes per second
		moved   float64
	}{
		{"steady 0.5 MB/s, reports every 0.5s", steady(0, 20, 0.5, 500_000), 20, 500_000, 20},
		{"steady 0.5 MB/s, reports every 0.25s", steady(0, 20, 0.25, 500_000), 20, 500_000, 20},
		{"first seconds: the average since the start", steady(0, 2, 0.5, 1_000_000), 2, 1_000_000, 2},
		{"faster in the last 5s", append(steady(0, 10, 0.5, 100_000), steadyFrom(10, 20, 0.5, 1_000_000, 1_000_000)...), 20, 1_000_000, 20},
		{"stopped 10s ago", steady(0, 10, 0.5, 500_000), 20, 0, 10},
		{"stopped 2s ago", steady(0, 10, 0.5, 500_000), 12, 500_000 * 3.0 / 5.0, 10},
		{"reporting but not moving", append(steady(0, 10, 0.5, 500_000), steadyFrom(10.5, 20, 0.5, 5_000_000, 0)...), 20, 0, 10},
	}
	for _, tt := range tests {
		var m meter
		m.start(t0)
		for _, r := range tt.reports {
			m.add(at(r[0]), int64(r[1]))
		}
		got := m.rate(at(tt.now))
		if math.Abs(got-tt.want) > tt.want*0.02+1 {
			t.Errorf("%s: rate %.0f B/s, want %.0f", tt.name, got, tt.want)
		}
		if !m.moved.Equal(at(tt.moved)) {
			t.Errorf("%s: moved at %v, want %v", tt.name, m.moved.Sub(t0), at(tt.moved).Sub(t0))
		}
		if len(m.samples) > 50 {
			t.Errorf("%s: %d samples kept", tt.name, len(m.samples))
		}
	}
}

// steady is reports from `from` to `to` seconds every `every` seconds of a
// link moving rate bytes per second since 0.
func steady(from, to, every, rate float64) [][2]float64 {
	return steadyFrom(from+every, to, every, 0, rate)
}

// steadyFrom is reports from `from` to `to` seconds, every `every`, of b0
// bytes at `from` growing by rate bytes per second (b0 = 0: from 0 at
// time 0).
func steadyFrom(from, to, every, b0, rate float64) [][2]float64 {
	var out [][2]float64
	base := b0
	start := from
	if b0 == 0 {
		start = 0
	}
	for s := from; s <= to+1e-9; s += every {
		out = append(out, [2]float64{s, base + rate*(s-start)})
	}
	return out
}
