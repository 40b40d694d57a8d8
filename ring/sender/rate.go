package sender

import "time"

// RateWindow is the span a node's receive rate is averaged over.
const RateWindow = 5 * time.Second

// meter turns a node's progress reports (the bytes that arrived at it, as
// they arrive) into its receive rate over the last RateWindow and the time
// it last moved.
type meter struct {
	// samples are oldest first; the first may lie before the window: the
	// base the rate is measured from.
	samples []sample
	moved   time.Time
}

type sample struct {
	t time.Time
	b int64
}

// start begins the meter at t with nothing received.
func (m *meter) start(t time.Time) {
	m.samples = append(m.samples[:0], sample{t, 0})
	m.moved = t
}

// add records that b bytes had arrived at t.
func (m *meter) add(t time.Time, b int64) {
	if n := len(m.samples); n == 0 || b > m.samples[n-1].b {
		m.moved = t
	}
	m.samples = append(m.samples, sample{t, b})
	for len(m.samples) > 2 && !m.samples[1].t.After(t.Add(-RateWindow)) {
		m.samples = m.samples[1:]
	}
}

// progressed records that the node took bytes from its socket at t: it
// moves, even when nothing more arrives (the rest of the stream waits in
// its socket).
func (m *meter) progressed(t time.Time) { m.moved = t }

// silent is how long a node may send no report before its rate counts
// down to what it received over the window up to now.
const silent = time.Second

// rate is the bytes per second that arrived over the window ending at the
// last report (or at now, once the node has been silent for a second:
// the rate of a node that stopped falls to zero).
func (m *meter) rate(now time.Time) float64 {
	n := len(m.samples)
	if n < 2 {
		return 0
	}
	last := m.samples[n-1]
	end := last.t
	if now.Sub(end) > silent {
		end = now
	}
	base := m.samples[0]
	for _, s := range m.samples {
		if !s.t.After(end.Add(-RateWindow)) {
			base = s
		}
	}
	dt := end.Sub(base.t).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.b-base.b) / dt
}
