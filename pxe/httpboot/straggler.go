package httpboot

import (
	"slices"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// Straggler kinds (dashRow.Straggler).
const (
	stragglerSlow  = "slow"  // receiving well below the median rate
	stragglerStuck = "stuck" // in its step much longer than its peers
)

// stragglerRules say when a node stands out from its peers. Zero fields
// are the defaults of defaultRules.
type stragglerRules struct {
	// SlowFraction: a receiving node slower than this fraction of the
	// median rate of the receiving nodes is slow.
	SlowFraction float64
	// StuckFactor and StuckFloor: a node in its step longer than
	// StuckFactor times the median time of the nodes in that step, and
	// longer than StuckFloor, is stuck.
	StuckFactor float64
	StuckFloor  time.Duration
	// MinPeers is how many nodes (itself included) must share the step
	// before a node is compared with them: one node has no median.
	MinPeers int
}

var defaultRules = stragglerRules{SlowFraction: 0.5, StuckFactor: 3, StuckFloor: time.Minute, MinPeers: 3}

// active is whether a node in st is on its way somewhere: the steps of
// an unknown, done or failed node are history, not progress.
func active(st inventory.Status) bool {
	switch st.CurrentState() {
	case contract.StateBooting, contract.StateRegistered, contract.StateInstalling:
		return true
	}
	return false
}

func receiving(st inventory.Status) bool {
	return st.CurrentState() == contract.StateInstalling && (st.Step == "" || st.Step == contract.StepReceiving)
}

// stragglers returns, for each node of list, "" or why it is a straggler
// at now: stragglerSlow (receiving below r.SlowFraction of the median
// rate of the receiving nodes) or stragglerStuck (in an active step
// longer than r.StuckFactor times the median of that step's nodes and
// than r.StuckFloor). Slow wins over stuck.
func stragglers(list []inventory.Status, now time.Time, r stragglerRules) []string {
	out := make([]string, len(list))
	var rates []float64
	inStep := map[contract.Step][]float64{}
	for _, st := range list {
		if receiving(st) {
			rates = append(rates, st.Rate)
		}
		if active(st) && st.Step != "" && !st.StepSince.IsZero() {
			inStep[st.Step] = append(inStep[st.Step], now.Sub(st.StepSince).Seconds())
		}
	}
	medRate := 0.0
	if len(rates) >= r.MinPeers {
		medRate = median(rates)
	}
	medStep := map[contract.Step]float64{}
	for step, d := range inStep {
		if len(d) >= r.MinPeers {
			medStep[step] = median(d)
		}
	}
	for i, st := range list {
		switch {
		case medRate > 0 && receiving(st) && st.Rate < r.SlowFraction*medRate:
			out[i] = stragglerSlow
		case active(st) && !st.StepSince.IsZero():
			m, ok := medStep[st.Step]
			d := now.Sub(st.StepSince)
			if ok && d > r.StuckFloor && d.Seconds() > r.StuckFactor*m {
				out[i] = stragglerStuck
			}
		}
	}
	return out
}

// median is the median of xs (which it sorts); 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// eta is how many seconds a receiving node needs for the rest of its
// transfer at its rate; -1 when that is unknown (not receiving, no
// total, no rate).
func eta(st inventory.Status) float64 {
	if !receiving(st) || st.Total <= 0 || st.Rate <= 0 {
		return -1
	}
	return float64(max(st.Total-st.Bytes, 0)) / st.Rate
}
