package metrics

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/ring/sender"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type memStore struct {
	mu sync.Mutex
	st map[string]*inventory.Status
}

func (s *memStore) Get(name string) (inventory.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.st[name], nil
}

func (s *memStore) List() ([]inventory.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []inventory.Status
	for _, n := range []string{"n1", "n2"} {
		out = append(out, *s.st[n])
	}
	return out, nil
}

func (s *memStore) Update(name string, fn func(*inventory.Status) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *s.st[name]
	if err := fn(&c); err != nil {
		return err
	}
	*s.st[name] = c
	return nil
}

// TestDurations: a node's way booting → registered → installing → done
// through the timed store gives one install duration (the whole way) and
// one step duration per state left; a failed install gives none.
func TestDurations(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	store := &memStore{st: map[string]*inventory.Status{"n1": {Name: "n1"}, "n2": {Name: "n2"}}}
	m := New(store, func() time.Time { return now })
	st := m.Store()
	step := func(name string, to contract.State, after time.Duration) {
		now = now.Add(after)
		if err := st.Update(name, func(s *inventory.Status) error { return nodestate.Transition(s, to, "", time.Time{}) }); err != nil {
			t.Fatal(err)
		}
	}
	step("n1", contract.StateBooting, 0)
	step("n1", contract.StateRegistered, 20*time.Second)
	step("n1", contract.StateInstalling, 5*time.Second)
	step("n1", contract.StateDone, 100*time.Second)
	step("n2", contract.StateBooting, 0)
	step("n2", contract.StateFailed, 30*time.Second)
	// An update that changes no state is not a step.
	if err := st.Update("n1", func(s *inventory.Status) error { s.Bytes = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	// A refused update changes nothing.
	if err := st.Update("n1", func(s *inventory.Status) error { return errors.New("no") }); err == nil {
		t.Fatal("the error was lost")
	}
	if err := testutil.CollectAndCompare(m.install, strings.NewReader(`
# HELP herd_install_duration_seconds Time from a node's boot for an install to its report done.
# TYPE herd_install_duration_seconds histogram
herd_install_duration_seconds_bucket{le="30"} 0
herd_install_duration_seconds_bucket{le="60"} 0
herd_install_duration_seconds_bucket{le="120"} 0
herd_install_duration_seconds_bucket{le="240"} 1
herd_install_duration_seconds_bucket{le="480"} 1
herd_install_duration_seconds_bucket{le="960"} 1
herd_install_duration_seconds_bucket{le="1920"} 1
herd_install_duration_seconds_bucket{le="3840"} 1
herd_install_duration_seconds_bucket{le="7680"} 1
herd_install_duration_seconds_bucket{le="15360"} 1
herd_install_duration_seconds_bucket{le="+Inf"} 1
herd_install_duration_seconds_sum 125
herd_install_duration_seconds_count 1
`)); err != nil {
		t.Error(err)
	}
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "herd_step_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			steps[mt.GetLabel()[0].GetValue()] = mt.GetHistogram().GetSampleCount()
		}
	}
	// n1 left booting, registered and installing once each; n2 left
	// booting once.
	if want := map[string]uint64{"booting": 2, "registered": 1, "installing": 1}; !maps.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	m.Session("install", &sender.Report{Nodes: []sender.NodeReport{{Name: "n1", State: sender.StateDone, Verified: true, Received: 1000}, {Name: "n2", State: sender.StateFailed, Received: 10}}}, nil)
	m.Session("stage2", &sender.Report{Nodes: []sender.NodeReport{{Name: "n1", State: sender.StateDone, Verified: true, Received: 7}}}, nil)
	if got := testutil.ToFloat64(m.bytes); got != 1017 {
		t.Errorf("herd_bytes_total %v", got)
	}
	if got := testutil.ToFloat64(m.sessions.WithLabelValues("install", "failed")); got != 1 {
		t.Errorf("install failed sessions %v", got)
	}
	if got := testutil.ToFloat64(m.sessions.WithLabelValues("stage2", "ok")); got != 1 {
		t.Errorf("stage2 ok sessions %v", got)
	}
	if problems, err := testutil.GatherAndLint(m.reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
