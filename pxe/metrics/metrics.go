// Package metrics is what herd's boot services and install campaign tell
// Prometheus (GET /metrics), through github.com/prometheus/client_golang:
//
//   - herd_nodes{state}: inventory nodes in each state, and per node
//     herd_node_bytes, herd_node_rate_bytes_per_second,
//     herd_node_local_boot, herd_node_last_report_seconds, read from the
//     node store at each scrape;
//   - herd_sessions_total{kind,result} and herd_bytes_total: ring
//     sessions and the bytes the nodes received in them;
//   - herd_install_duration_seconds: from a node's boot for an install to
//     its report done; herd_step_duration_seconds{step}: the time nodes
//     spent in each state (booting, registered, installing...).
//
// The durations are measured on the store: Metrics.Store wraps it and
// times every change of a node's state made through it.
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/ring/sender"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one registry of herd's metrics.
type Metrics struct {
	reg      *prometheus.Registry
	store    inventory.Store
	now      func() time.Time
	sessions *prometheus.CounterVec
	bytes    prometheus.Counter
	install  prometheus.Histogram
	step     *prometheus.HistogramVec

	mu      sync.Mutex
	since   map[string]time.Time // when each node entered its state
	started map[string]time.Time // when each node's install began
}

// New returns the metrics of the nodes in store; now is the clock (nil:
// time.Now).
func New(store inventory.Store, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(), store: store, now: now,
		since: map[string]time.Time{}, started: map[string]time.Time{},
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herd_sessions_total", Help: "Ring sessions herd ran, by kind (stage2, install) and result (ok: every node verified; failed).",
		}, []string{"kind", "result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herd_bytes_total", Help: "Bytes the nodes received in herd's ring sessions.",
		}),
		install: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herd_install_duration_seconds", Help: "Time from a node's boot for an install to its report done.",
			Buckets: prometheus.ExponentialBuckets(30, 2, 10), // 30 s .. 4.3 h
		}),
		step: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herd_step_duration_seconds", Help: "Time nodes spent in each install state before the next.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 s .. 2.3 h
		}, []string{"step"}),
	}
	m.reg.MustRegister(m.sessions, m.bytes, m.install, m.step, nodeCollector{m})
	return m
}

// Handler serves the registry in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Session counts a ring session of kind and its bytes.
func (m *Metrics) Session(kind string, rep *sender.Report, err error) {
	result := "ok"
	if err != nil || rep == nil || len(rep.Failed()) > 0 {
		result = "failed"
	}
	m.sessions.WithLabelValues(kind, result).Inc()
	if rep != nil {
		for _, n := range rep.Nodes {
			m.bytes.Add(float64(n.Received))
		}
	}
}

// Store is store with every change of a node's state timed.
func (m *Metrics) Store() inventory.Store { return timedStore{m.store, m} }

type timedStore struct {
	inventory.Store
	m *Metrics
}

func (s timedStore) Update(name string, fn func(*inventory.Status) error) error {
	var from, to contract.State
	err := s.Store.Update(name, func(st *inventory.Status) error {
		from = st.State
		if err := fn(st); err != nil {
			return err
		}
		to = st.State
		return nil
	})
	if err == nil && from != to {
		s.m.transition(name, from, to)
	}
	return err
}

// transition times a node's change of state.
func (m *Metrics) transition(name string, from, to contract.State) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.since[name]; ok && from != "" {
		m.step.WithLabelValues(string(from)).Observe(now.Sub(t).Seconds())
	}
	m.since[name] = now
	switch to {
	case contract.StateBooting, contract.StateRegistered:
		if _, ok := m.started[name]; !ok {
			m.started[name] = now
		}
	case contract.StateDone:
		if t, ok := m.started[name]; ok {
			m.install.Observe(now.Sub(t).Seconds())
			delete(m.started, name)
		}
	case contract.StateFailed, contract.StateUnknown:
		delete(m.started, name)
	}
}

// nodeCollector reads the store at each scrape.
type nodeCollector struct{ m *Metrics }

var (
	descNodes      = prometheus.NewDesc("herd_nodes", "Inventory nodes in each install state.", []string{"state"}, nil)
	descBytes      = prometheus.NewDesc("herd_node_bytes", "Bytes of the node's current or last transfer.", []string{"node"}, nil)
	descRate       = prometheus.NewDesc("herd_node_rate_bytes_per_second", "Transfer rate the node last reported.", []string{"node"}, nil)
	descLocalBoot  = prometheus.NewDesc("herd_node_local_boot", "1 when the node's next boot is from its disk, 0 when it installs.", []string{"node"}, nil)
	descLastReport = prometheus.NewDesc("herd_node_last_report_seconds", "Unix time the node was last heard from; 0 = never.", []string{"node"}, nil)
	descStoreError = prometheus.NewDesc("herd_node_store_errors", "1 when the node store could not be read for this scrape.", nil, nil)
)

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodes, descBytes, descRate, descLocalBoot, descLastReport, descStoreError} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	list, err := c.m.store.List()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descStoreError, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(descStoreError, prometheus.GaugeValue, 0)
	counts := inventory.CountStates(list)
	for _, st := range contract.States {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	for _, s := range list {
		local := 0.0
		if s.LocalBoot {
			local = 1
		}
		last := 0.0
		if !s.LastReport.IsZero() {
			last = float64(s.LastReport.UnixMilli()) / 1000
		}
		name := strings.ToValidUTF8(s.Name, "?")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bytes), name)
		ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, s.Rate, name)
		ch <- prometheus.MustNewConstMetric(descLocalBoot, prometheus.GaugeValue, local, name)
		ch <- prometheus.MustNewConstMetric(descLastReport, prometheus.GaugeValue, last, name)
	}
}
