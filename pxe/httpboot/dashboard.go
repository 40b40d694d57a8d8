package httpboot

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// The dashboard's feed: one snapshot of every node for the page, as JSON
// (GET /api/dashboard) or as server-sent events (GET /api/events), so
// that a page showing 1,000 nodes makes one request a second, not one
// per node.
const (
	// snapshotMaxAge: clients asking within it share one snapshot (one
	// read of the store).
	snapshotMaxAge = 500 * time.Millisecond
	// historyEvery and historyLen: the aggregate rate is sampled at most
	// once a historyEvery, the last historyLen samples kept (10 min).
	historyEvery = time.Second
	historyLen   = 600
	// eventEvery is the period of the event stream; eventStreamMax ends
	// a stream (EventSource reconnects) so that none lives forever, and
	// maxStreams bounds the streams open at once.
	eventEvery     = time.Second
	eventStreamMax = 10 * time.Minute
	maxStreams     = 32
)

// dashboard is the feed's state: the rate history and the last snapshot.
type dashboard struct {
	mu      sync.Mutex
	at      time.Time // of snap
	snap    []byte    // JSON of the last dashSnapshot
	history []rateSample
	next    int // where the next sample goes once history is full
	streams chan struct{}
}

func newDashboard() *dashboard {
	return &dashboard{streams: make(chan struct{}, maxStreams)}
}

// dashSnapshot is GET /api/dashboard's body.
type dashSnapshot struct {
	Time time.Time `json:"time"`
	// Counts has every state, in the cycle's order.
	Counts []stateCount `json:"counts"`
	// Racks are the inventory's racks, sorted.
	Racks []string `json:"racks"`
	// Rate is the sum of the installing nodes' rates (bytes/s); Bytes and
	// Total sum the installing and done nodes' bytes and totals.
	Rate  float64 `json:"rate"`
	Bytes int64   `json:"bytes"`
	Total int64   `json:"total"`
	// ETA is the seconds the slowest receiving node still needs; -1 when
	// no node's is known.
	ETA float64 `json:"eta"`
	// History is the aggregate rate over time, oldest first.
	History []rateSample `json:"history"`
	// Nodes: failed first, then the inventory's order.
	Nodes []dashRow `json:"nodes"`
}

type stateCount struct {
	State contract.State `json:"state"`
	N     int            `json:"n"`
}

// rateSample is the aggregate rate (bytes/s) at T (Unix seconds).
type rateSample struct {
	T    int64   `json:"t"`
	Rate float64 `json:"rate"`
}

// dashRow is one node of the dashboard.
type dashRow struct {
	Name  string         `json:"name"`
	MAC   string         `json:"mac"`
	IP    string         `json:"ip,omitempty"`
	Rack  string         `json:"rack,omitempty"`
	State contract.State `json:"state"`
	Step  contract.Step  `json:"step,omitempty"`
	// StepSecs is how long the node has been in its step; -1 = unknown.
	StepSecs float64 `json:"step_secs"`
	Bytes    int64   `json:"bytes"`
	Total    int64   `json:"total,omitempty"`
	Rate     float64 `json:"rate"`
	// ETA is the seconds to the end of its transfer; -1 = unknown.
	ETA float64 `json:"eta"`
	// Straggler is "", "slow" or "stuck".
	Straggler string `json:"straggler,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Message   string `json:"message,omitempty"`
	LocalBoot bool   `json:"local_boot,omitempty"`
}

// buildSnapshot computes the dashboard of list at now (history aside).
func buildSnapshot(list []inventory.Status, racks []string, now time.Time) dashSnapshot {
	snap := dashSnapshot{Time: now, Racks: racks, ETA: -1, Nodes: make([]dashRow, 0, len(list))}
	counts := inventory.CountStates(list)
	for _, s := range contract.States {
		snap.Counts = append(snap.Counts, stateCount{s, counts[s]})
	}
	strag := stragglers(list, now, defaultRules)
	for i, st := range list {
		row := dashRow{
			Name: st.Name, MAC: st.MAC, IP: st.IP, Rack: st.Rack, State: st.CurrentState(), Step: st.Step, StepSecs: -1,
			Bytes: st.Bytes, Total: st.Total, Rate: st.Rate, ETA: eta(st), Straggler: strag[i],
			Reason: st.Reason, Message: st.Message, LocalBoot: st.LocalBoot,
		}
		if !st.StepSince.IsZero() {
			row.StepSecs = max(now.Sub(st.StepSince).Seconds(), 0)
		}
		switch row.State {
		case contract.StateInstalling:
			snap.Rate += st.Rate
			fallthrough
		case contract.StateDone:
			snap.Bytes += st.Bytes
			snap.Total += st.Total
		}
		snap.ETA = max(snap.ETA, row.ETA)
		snap.Nodes = append(snap.Nodes, row)
	}
	// Failed first, then the stragglers: what needs the operator; the
	// sort is stable, so the inventory's order stays within each.
	slices.SortStableFunc(snap.Nodes, func(a, b dashRow) int {
		return cmp.Compare(rank(a), rank(b))
	})
	return snap
}

func rank(r dashRow) int {
	switch {
	case r.State == contract.StateFailed:
		return 0
	case r.Straggler != "":
		return 1
	}
	return 2
}

// racks returns the inventory's racks, sorted, without repeats.
func racks(inv *inventory.Inventory) []string {
	out := []string{}
	for _, n := range inv.Nodes {
		if n.Rack != "" {
			out = append(out, n.Rack)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sample adds the aggregate rate at now to the history, at most once per
// historyEvery; it returns the history, oldest first.
func (d *dashboard) sample(now time.Time, rate float64) []rateSample {
	if n := len(d.history); n == 0 || now.Sub(time.Unix(d.last().T, 0)) >= historyEvery {
		s := rateSample{T: now.Unix(), Rate: rate}
		if len(d.history) < historyLen {
			d.history = append(d.history, s)
		} else {
			d.history[d.next] = s
			d.next = (d.next + 1) % historyLen
		}
	}
	return append(slices.Clone(d.history[d.next:]), d.history[:d.next]...)
}

func (d *dashboard) last() rateSample {
	if d.next == 0 {
		return d.history[len(d.history)-1]
	}
	return d.history[d.next-1]
}

// RecordRates takes a snapshot every historyEvery until ctx ends, so
// that the aggregate rate's history has no gaps while nobody watches
// (herd serve runs it beside the servers).
func (h *Handler) RecordRates(ctx context.Context) {
	t := time.NewTicker(historyEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = h.snapshot()
		}
	}
}

// snapshot returns the dashboard's JSON: the one of a snapshot taken
// within snapshotMaxAge, or a new one. The history grows as snapshots
// are taken (RecordRates takes one a second).
func (h *Handler) snapshot() ([]byte, error) {
	d := h.dash
	d.mu.Lock()
	defer d.mu.Unlock()
	now := h.cfg.Now()
	if d.snap != nil && now.Sub(d.at) >= 0 && now.Sub(d.at) < snapshotMaxAge {
		return d.snap, nil
	}
	list, err := h.cfg.Store.List()
	if err != nil {
		return nil, err
	}
	snap := buildSnapshot(list, racks(h.cfg.Inventory), now)
	snap.History = d.sample(now, snap.Rate)
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, err
	}
	d.at, d.snap = now, b
	return b, nil
}

// serveDashboard answers GET /api/dashboard.
func (h *Handler) serveDashboard(w http.ResponseWriter, r *http.Request) {
	b, err := h.snapshot()
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// serveEvents answers GET /api/events: the snapshot as a server-sent
// event ("event: dashboard") every eventEvery, until the client goes, the
// server shuts down or eventStreamMax passed (the browser's EventSource
// connects again, retry: 1000 ms). Beyond maxStreams open streams it
// answers 503.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case h.dash.streams <- struct{}{}:
		defer func() { <-h.dash.streams }()
	default:
		writeJSONError(w, http.StatusServiceUnavailable, "%d event streams open already: poll /api/dashboard", maxStreams)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithTimeout(r.Context(), eventStreamMax)
	defer cancel()
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
	tick := time.NewTicker(eventEvery)
	defer tick.Stop()
	for {
		b, err := h.snapshot()
		if err != nil {
			// The store failed: say so, try again at the next tick.
			b, _ = json.Marshal(apiError{Error: err.Error()})
			_, err = fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
		} else {
			_, err = fmt.Fprintf(w, "event: dashboard\ndata: %s\n\n", b)
		}
		if err != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
