package campaign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/internal/logging"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sender"
)

// fakeClock advances by itself: Sleep adds d to Now and returns at once,
// so that minutes of waiting take microseconds. It cancels the campaign's
// context once Now passes its limit (the operator's interrupt).
type fakeClock struct {
	mu     sync.Mutex
	start  time.Time
	now    time.Time
	limit  time.Duration
	cancel context.CancelFunc
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	over := c.limit > 0 && c.now.Sub(c.start) >= c.limit
	c.mu.Unlock()
	if over {
		c.cancel()
		return ctx.Err()
	}
	return nil
}

// since is the virtual time elapsed.
func (c *fakeClock) since() time.Duration { return c.Now().Sub(c.start) }

// event is something a node's agent does at a virtual time.
type event struct {
	at   time.Duration
	node string
	// to is the state it reports (registered: it registered).
	to     contract.State
	reason string
}

// fakeStore is an in-memory inventory.Store whose nodes act on their
// own: due events are applied whenever the campaign looks.
type fakeStore struct {
	mu     sync.Mutex
	clock  *fakeClock
	inv    *inventory.Inventory
	st     map[string]*inventory.Status
	events []event
}

func newFakeStore(clock *fakeClock, inv *inventory.Inventory, events ...event) *fakeStore {
	s := &fakeStore{clock: clock, inv: inv, st: map[string]*inventory.Status{}}
	for _, n := range inv.Nodes {
		s.st[n.Name] = &inventory.Status{Name: n.Name, IP: n.IP.String(), State: contract.StateUnknown}
	}
	s.events = events
	return s
}

// schedule adds events d after now.
func (s *fakeStore) schedule(d time.Duration, evs ...event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		e.at += s.clock.since() + d
		s.events = append(s.events, e)
	}
}

// apply runs the due events, as the agents' requests would (through
// nodestate.Transition, with LastReport set for reports).
func (s *fakeStore) apply() {
	now := s.clock.since()
	var later []event
	for _, e := range s.events {
		if e.at > now {
			later = append(later, e)
			continue
		}
		st := s.st[e.node]
		if e.to == contract.StateRegistered {
			// It fetched its boot entry first (DHCP, TFTP, HTTP).
			_ = nodestate.Transition(st, contract.StateBooting, "", time.Time{})
		}
		if err := nodestate.Transition(st, e.to, e.reason, time.Time{}); err != nil {
			panic(fmt.Sprintf("the fake agent of %s at %v: %v", e.node, e.at, err))
		}
		if e.to != contract.StateRegistered {
			st.LastReport = s.clock.Now()
		}
	}
	s.events = later
}

func (s *fakeStore) Get(name string) (inventory.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply()
	st, ok := s.st[name]
	if !ok {
		return inventory.Status{}, fmt.Errorf("no node %s", name)
	}
	return *st, nil
}

func (s *fakeStore) List() ([]inventory.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apply()
	var out []inventory.Status
	for _, n := range s.inv.Nodes {
		out = append(out, *s.st[n.Name])
	}
	return out, nil
}

func (s *fakeStore) Update(name string, fn func(*inventory.Status) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.st[name]
	if !ok {
		return fmt.Errorf("no node %s", name)
	}
	c := *st
	if err := fn(&c); err != nil {
		return err
	}
	*st = c
	return nil
}

// outcome is what the fake sender makes of a node in a session, and
// what its agent does next.
type outcome struct {
	failed string // the ring's reason; "" = done and verified
	// then are the node's next events, after the session.
	then []event
}

// sent is a session the campaign asked for.
type sent struct {
	Kind  string
	Nodes []string
	Files []string
}

func rack(names ...string) *inventory.Inventory {
	inv := &inventory.Inventory{}
	for i, n := range names {
		inv.Nodes = append(inv.Nodes, inventory.Node{Name: n, IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(11 + i)})})
	}
	return inv
}

func reg(at time.Duration, node string) event {
	return event{at: at, node: node, to: contract.StateRegistered}
}

func report(at time.Duration, node string, to contract.State) event {
	return event{at: at, node: node, to: to}
}

// TestCampaign runs whole campaigns against the fakes: the nodes'
// agents act at virtual times, the sender's outcome is scripted per
// session and node.
func TestCampaign(t *testing.T) {
	stage2 := &plan.File{Input: "stage2.squashfs", Output: "/dev/ram0", Mount: "/stage2"}
	tests := []struct {
		name   string
		inv    *inventory.Inventory
		events []event
		cfg    func(*Config)
		// script[i][node] is session i's outcome for node.
		script []map[string]outcome
		// limit interrupts the campaign at this virtual time (0: none);
		// interrupt, during the session with that number (1-based).
		limit      time.Duration
		interrupt  int
		wantErr    string // "" = nil
		wantOut    []string
		wantNotOut []string
		wantLog    []string // whole lines of the log, in order
		wantNotLog []string

		wantSessions []sent
		wantStates   map[string]contract.State
	}{
		{
			name:   "a node that never comes",
			inv:    rack("n1", "n2", "n3"),
			events: []event{reg(2*time.Second, "n1"), reg(40*time.Second, "n2")},
			cfg:    func(c *Config) { c.Once, c.WaitTimeout = true, 2*time.Minute },
			script: []map[string]outcome{{
				"n1": {then: []event{report(3*time.Second, "n1", contract.StateDone)}},
				"n2": {then: []event{report(5*time.Second, "n2", contract.StateDone)}},
			}},
			wantErr: "1 node(s) never came, 0 failed",
			wantOut: []string{"NEVER CAME: 1 node(s): n3\n", "REPORT: n1: done\n", "REPORT: n2: done\n"},
			// Said when the count changes and once a minute, not at
			// every poll; then the timeout.
			wantLog: []string{"herd serve: 0 of 3 node(s) registered; waiting for n1,n2,n3\n" +
				"herd serve: 1 of 3 node(s) registered; waiting for n2,n3\n" +
				"herd serve: 2 of 3 node(s) registered; waiting for n3\n" +
				"herd serve: 2 of 3 node(s) registered; waiting for n3\n" +
				"herd serve: warning: 2 of 3 node(s) registered within 2m0s; going on without n3\n"},
			wantSessions: []sent{{KindInstall, []string{"n1", "n2"}, nil}},
			wantStates:   map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateDone, "n3": contract.StateUnknown},
		},
		{
			name:   "--min 2 starts without waiting for the third",
			inv:    rack("n1", "n2", "n3"),
			events: []event{reg(time.Second, "n1"), reg(time.Second, "n3"), reg(10*time.Minute, "n2")},
			cfg:    func(c *Config) { c.Once, c.Want = true, 2 },
			script: []map[string]outcome{{
				"n1": {then: []event{report(time.Second, "n1", contract.StateDone)}},
				"n3": {then: []event{report(time.Second, "n3", contract.StateDone)}},
			}},
			wantErr:      "1 node(s) never came, 0 failed",
			wantSessions: []sent{{KindInstall, []string{"n1", "n3"}, nil}},
			wantStates:   map[string]contract.State{"n1": contract.StateDone, "n3": contract.StateDone},
		},
		{
			name:   "a node that fails and comes back",
			inv:    rack("n1", "n2"),
			events: []event{reg(time.Second, "n1"), reg(time.Second, "n2")},
			script: []map[string]outcome{
				{
					"n1": {then: []event{report(2*time.Second, "n1", contract.StateDone)}},
					// n2 stops mid-session; reset, it boots the agent again.
					"n2": {failed: "timeout: no data for 30s", then: []event{reg(90*time.Second, "n2")}},
				},
				{"n2": {then: []event{report(2*time.Second, "n2", contract.StateDone)}}},
			},
			limit:   time.Hour,
			wantErr: "",
			wantOut: []string{"AGAIN: 1 node(s) registered: n2\n", "AGAIN: n2 installed and verified\n"},
			wantSessions: []sent{
				{KindInstall, []string{"n1", "n2"}, nil},
				{KindInstall, []string{"n2"}, nil},
			},
			wantStates: map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateDone},
		},
		{
			name:   "a node that fails and stays away",
			inv:    rack("n1", "n2"),
			events: []event{reg(time.Second, "n1"), reg(time.Second, "n2")},
			script: []map[string]outcome{{
				"n1": {then: []event{report(2*time.Second, "n1", contract.StateDone)}},
				"n2": {failed: "disk /dev/vda (8 MiB) is smaller than the image"},
			}},
			limit:        time.Hour,
			wantErr:      "0 node(s) never came, 1 failed",
			wantNotOut:   []string{"AGAIN"},
			wantSessions: []sent{{KindInstall, []string{"n1", "n2"}, nil}},
			wantStates:   map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateFailed},
		},
		{
			name:   "stage2 then install",
			inv:    rack("n1", "n2"),
			events: []event{reg(time.Second, "n1"), reg(3*time.Second, "n2")},
			cfg:    func(c *Config) { c.Once, c.Stage2 = true, stage2 },
			script: []map[string]outcome{
				{ // the agents mount the stage2 and say so
					"n1": {then: []event{report(20*time.Second, "n1", contract.StateInstalling)}},
					"n2": {then: []event{report(30*time.Second, "n2", contract.StateInstalling)}},
				},
				{
					"n1": {then: []event{report(time.Second, "n1", contract.StateDone)}},
					"n2": {then: []event{report(time.Second, "n2", contract.StateDone)}},
				},
			},
			wantOut: []string{"STAGE2: stage2.squashfs > /dev/ram0, mounted at /stage2\n", "INSTALL: 2 node(s)\n", "REPORT: n2: done\n"},
			wantSessions: []sent{
				{KindStage2, []string{"n1", "n2"}, []string{"stage2.squashfs"}},
				{KindInstall, []string{"n1", "n2"}, nil},
			},
			wantStates: map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateDone},
		},
		{
			name:   "stage2 never mounted on one node",
			inv:    rack("n1", "n2"),
			events: []event{reg(time.Second, "n1"), reg(time.Second, "n2")},
			cfg:    func(c *Config) { c.Once, c.Stage2, c.Stage2Wait = true, stage2, 5*time.Minute },
			script: []map[string]outcome{
				{"n1": {then: []event{report(20*time.Second, "n1", contract.StateInstalling)}}, "n2": {}},
				{"n1": {then: []event{report(time.Second, "n1", contract.StateDone)}}},
			},
			wantErr: "0 node(s) never came, 1 failed",
			wantSessions: []sent{
				{KindStage2, []string{"n1", "n2"}, []string{"stage2.squashfs"}},
				{KindInstall, []string{"n1"}, nil},
			},
			wantStates: map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateFailed},
		},
		{
			name:       "an interrupt while waiting for the nodes",
			inv:        rack("n1", "n2"),
			events:     []event{reg(time.Second, "n1")},
			limit:      10 * time.Second,
			wantErr:    context.Canceled.Error(),
			wantNotOut: []string{"NEVER CAME"},
			wantStates: map[string]contract.State{"n1": contract.StateRegistered, "n2": contract.StateUnknown},
		},
		{
			name:         "an interrupt during the session",
			inv:          rack("n1", "n2"),
			events:       []event{reg(time.Second, "n1"), reg(time.Second, "n2")},
			script:       []map[string]outcome{{}},
			interrupt:    1,
			wantErr:      "terminated signal received",
			wantNotOut:   []string{"AGAIN", "REPORT"},
			wantNotLog:   []string{"session over"},
			wantSessions: []sent{{KindInstall, []string{"n1", "n2"}, nil}},
			wantStates:   map[string]contract.State{"n1": contract.StateFailed, "n2": contract.StateFailed},
		},
		{
			name:       "no node at all within the wait",
			inv:        rack("n1", "n2"),
			cfg:        func(c *Config) { c.WaitTimeout = time.Minute },
			wantErr:    "only 0 of 2 node(s) registered within 1m0s: never came: n1,n2",
			wantStates: map[string]contract.State{"n1": contract.StateUnknown},
		},
		{
			name: "a UEFI node without a plan is refused an image it cannot boot",
			inv:  rack("n1", "n2"),
			events: []event{reg(time.Second, "n1"), reg(time.Second, "n2"),
				// n2's agent said it booted by UEFI.
				{at: time.Second, node: "n2", to: contract.StateRegistered, reason: "uefi"}},
			cfg: func(c *Config) {
				c.Once, c.Unbootable = true, "the image golden.img (dos partition table) has no EFI System Partition"
			},
			script: []map[string]outcome{{
				"n1": {then: []event{report(time.Second, "n1", contract.StateDone)}},
			}},
			wantErr:      "0 node(s) never came, 1 failed",
			wantOut:      []string{"REFUSED: n2: this node booted by UEFI, and the image golden.img (dos partition table) has no EFI System Partition"},
			wantSessions: []sent{{KindInstall, []string{"n1"}, nil}},
			wantStates:   map[string]contract.State{"n1": contract.StateDone, "n2": contract.StateFailed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a real bound
			defer cancel()
			start := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
			clock := &fakeClock{start: start, now: start, limit: tt.limit, cancel: cancel}
			var evs []event
			for _, e := range tt.events {
				if e.reason == "uefi" {
					continue
				}
				evs = append(evs, e)
			}
			store := newFakeStore(clock, tt.inv, evs...)
			for _, e := range tt.events {
				if e.reason == "uefi" {
					store.st[e.node].Firmware = contract.FirmwareUEFI
				}
			}
			var sessions []sent
			var mu sync.Mutex
			send := func(ctx context.Context, s Session) (*sender.Report, error) {
				mu.Lock()
				i := len(sessions)
				got := sent{Kind: s.Kind}
				for _, n := range s.Nodes {
					got.Nodes = append(got.Nodes, n.Name)
				}
				for _, f := range s.Files {
					got.Files = append(got.Files, f.Input)
				}
				sessions = append(sessions, got)
				mu.Unlock()
				if i >= len(tt.script) {
					return nil, fmt.Errorf("session %d was not expected", i+1)
				}
				rep := &sender.Report{Done: true}
				if i+1 == tt.interrupt {
					cancel() // the operator's SIGTERM, mid-session
					for _, n := range s.Nodes {
						rep.Nodes = append(rep.Nodes, sender.NodeReport{Name: n.Name, State: sender.StateFailed, Reason: "terminated signal received"})
					}
					return rep, errors.New("terminated signal received")
				}
				for _, n := range s.Nodes {
					o := tt.script[i][n.Name]
					nr := sender.NodeReport{Name: n.Name, State: sender.StateDone, Verified: true, Received: 1 << 20}
					if o.failed != "" {
						nr.State, nr.Verified, nr.Reason = sender.StateFailed, false, o.failed
					}
					rep.Nodes = append(rep.Nodes, nr)
					store.schedule(0, o.then...)
				}
				if s.Watch != nil {
					s.Watch(rep)
				}
				return rep, nil
			}
			var out, log bytes.Buffer
			cfg := Config{Inventory: tt.inv, Store: store, Send: send, Out: &out, Clock: clock,
				Log: logging.New(&log, "herd serve", slog.LevelInfo, logging.Plain)}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			err := Run(ctx, cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Run: %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Run: %v, want an error with %q", err, tt.wantErr)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(log.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, log.String())
				}
			}
			for _, w := range tt.wantNotLog {
				if strings.Contains(log.String(), w) {
					t.Errorf("log has %q:\n%s", w, log.String())
				}
			}
			for _, w := range tt.wantNotOut {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
			if diff := cmp.Diff(tt.wantSessions, sessions); diff != "" {
				t.Errorf("sessions (-want +got):\n%s", diff)
			}
			for name, want := range tt.wantStates {
				if s, _ := store.Get(name); s.State != want {
					t.Errorf("%s is %s (%s), want %s", name, s.State, s.Reason, want)
				}
			}
		})
	}
}

// TestServicesStop: when the boot services stop while the campaign
// waits, it ends with their error.
func TestServicesStop(t *testing.T) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := &fakeClock{start: start, now: start, cancel: cancel}
	inv := rack("n1")
	boom := errors.New("tftp: listen udp 10.0.0.1:69: address already in use")
	err := Run(ctx, Config{
		Inventory: inv, Store: newFakeStore(clock, inv), Clock: clock,
		Send: func(context.Context, Session) (*sender.Report, error) { t.Error("a session was sent"); return nil, nil },
		Stopped: func() error {
			if clock.since() > 3*time.Second {
				return boom
			}
			return nil
		},
	})
	if !errors.Is(err, boom) {
		t.Errorf("Run: %v, want %v", err, boom)
	}
}

// TestResume: a session in progress when herd serve was killed (its
// state file in SessionsDir) is taken back first, with its nodes in its
// order, without waiting for registrations; with Fresh it is not; a
// state file naming a node the inventory no longer has is refused.
func TestResume(t *testing.T) {
	for _, tt := range []struct {
		name, hosts string
		fresh       bool
		wantErr     string
		want        []sent
	}{
		{name: "resumed", hosts: `"10.0.0.12","10.0.0.11"`, want: []sent{{KindInstall, []string{"n2", "n1"}, nil}}},
		{name: "fresh", hosts: `"10.0.0.12","10.0.0.11"`, fresh: true, wantErr: "only 0 of 2 node(s) registered"},
		{name: "unknown node", hosts: `"10.0.0.99"`, wantErr: "names node 10.0.0.99, which the inventory no longer has: start with --fresh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "install.json"), []byte(`{"version":1,"hosts":[`+tt.hosts+`]}`), 0o644); err != nil {
				t.Fatal(err)
			}
			inv := rack("n1", "n2")
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			clock := &fakeClock{start: start, now: start, cancel: cancel}
			var got []sent
			err := Run(ctx, Config{Inventory: inv, Store: newFakeStore(clock, inv), Clock: clock, SessionsDir: dir, Fresh: tt.fresh,
				Once: true, WaitTimeout: time.Minute, ReportWait: time.Second,
				Send: func(_ context.Context, s Session) (*sender.Report, error) {
					if s.StateFile != filepath.Join(dir, "install.json") {
						t.Errorf("state file %q", s.StateFile)
					}
					got = append(got, sent{Kind: s.Kind, Nodes: nodeNames(s.Nodes)})
					return &sender.Report{Done: true}, nil
				}})
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) || tt.wantErr == "" && err != nil {
				t.Errorf("Run: %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sessions (-want +got):\n%s", diff)
			}
		})
	}
}

// fakePower records what the campaign asked of the nodes' BMCs; a node
// whose BMC is powered on (or cycled) registers after its delay, when it
// has one (nil: it hangs before registering, whatever is done).
type fakePower struct {
	mu     sync.Mutex
	store  *fakeStore
	bmcs   map[string]bool
	boots  map[string][]time.Duration // node → delay before registering, per power-on
	calls  []string
	cycles map[string]int
}

func (p *fakePower) Has(n inventory.Node) bool { return p.bmcs[n.Name] }

func (p *fakePower) on(n inventory.Node, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, what+" "+n.Name)
	if d := p.boots[n.Name]; len(d) > 0 {
		if d[0] >= 0 {
			p.store.schedule(d[0], reg(0, n.Name))
		}
		p.boots[n.Name] = d[1:]
	}
}

func (p *fakePower) Install(_ context.Context, n inventory.Node) error {
	p.on(n, "install")
	return nil
}
func (p *fakePower) Cycle(_ context.Context, n inventory.Node) error { p.on(n, "cycle"); return nil }
func (p *fakePower) Disk(_ context.Context, n inventory.Node) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "disk "+n.Name)
	return nil
}

// TestPower: herd serve --power. Every node with a BMC is powered on for
// an install at the start (one without is named); n2 hangs before it
// registers and is power-cycled after RegisterTimeout, then installs;
// the verified nodes are set to boot from their disks. A node that never
// registers is cycled PowerCycles times, then given up on and named,
// and the campaign goes on without waiting out WaitTimeout.
func TestPower(t *testing.T) {
	for _, tt := range []struct {
		name      string
		boots     map[string][]time.Duration
		wantCalls []string
		wantErr   string
		wantLog   []string
		maxTime   time.Duration
	}{
		{
			name:  "a hung node is power-cycled and installs",
			boots: map[string][]time.Duration{"n1": {30 * time.Second}, "n2": {-1, 40 * time.Second}},
			// n3 has no BMC: its operator resets it.
			wantCalls: []string{"install n1", "install n2", "cycle n2", "disk n1", "disk n2", "disk n3?"},
			wantLog: []string{"herd serve: warning: no BMC in the inventory for n3: reset them yourself",
				"herd serve: warning: n2 has not registered within 5m0s: power cycle 1 of 2"},
			maxTime: 10 * time.Minute,
		},
		{
			name:      "a node that never registers is given up on",
			boots:     map[string][]time.Duration{"n1": {30 * time.Second}, "n2": {-1, -1, -1}},
			wantCalls: []string{"install n1", "install n2", "cycle n2", "cycle n2", "disk n1"},
			wantErr:   "1 node(s) never came",
			wantLog:   []string{"herd serve: warning: n2 has not registered after 2 power cycle(s): giving up on it"},
			maxTime:   20 * time.Minute,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			clock := &fakeClock{start: start, now: start, cancel: cancel}
			inv := rack("n1", "n2", "n3")
			store := newFakeStore(clock, inv, reg(time.Minute, "n3"))
			power := &fakePower{store: store, bmcs: map[string]bool{"n1": true, "n2": true}, boots: tt.boots}
			var log bytes.Buffer
			err := Run(ctx, Config{
				Inventory: inv, Store: store, Clock: clock, Once: true, ReportWait: time.Second,
				WaitTimeout: time.Hour, RegisterTimeout: 5 * time.Minute, Power: power,
				Log: logging.New(&log, "herd serve", slog.LevelInfo, logging.Plain),
				Send: func(_ context.Context, s Session) (*sender.Report, error) {
					rep := &sender.Report{Done: true}
					for _, n := range s.Nodes {
						rep.Nodes = append(rep.Nodes, sender.NodeReport{Name: n.Name, State: sender.StateDone, Verified: true})
						store.schedule(time.Second, report(0, n.Name, contract.StateDone))
					}
					return rep, nil
				},
			})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Run: %v, want %q", err, tt.wantErr)
			}
			want := slices.DeleteFunc(slices.Clone(tt.wantCalls), func(c string) bool { return strings.HasSuffix(c, "?") })
			got := slices.Clone(power.calls)
			slices.Sort(got[:min(2, len(got))]) // the first power-ons run at once
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("BMC calls (-want +got):\n%s", diff)
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(log.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, log.String())
				}
			}
			if d := clock.since(); d > tt.maxTime {
				t.Errorf("the campaign took %v of virtual time, want at most %v (it waited for a node given up on?)", d, tt.maxTime)
			}
		})
	}
}

// TestWatchSteps: the session's progress reaches the node store as the
// dashboard reads it: bytes, rate, the stream's total, and the step
// (receiving, then verifying) with the campaign's clock.
func TestWatchSteps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	clock := &fakeClock{start: start, now: start, cancel: cancel}
	inv := rack("n1", "n2")
	store := newFakeStore(clock, inv, reg(time.Second, "n1"), reg(2*time.Second, "n2"))
	type seen struct {
		step         contract.Step
		bytes, total int64
		since        time.Duration
	}
	var got []seen
	var t0 time.Duration // the session's start on the fake clock
	look := func() {
		for _, n := range []string{"n1", "n2"} {
			s, _ := store.Get(n)
			got = append(got, seen{s.Step, s.Bytes, s.Total, s.StepSince.Sub(start)})
		}
	}
	err := Run(ctx, Config{
		Inventory: inv, Store: store, Clock: clock, Once: true, ReportWait: time.Second,
		Send: func(ctx context.Context, s Session) (*sender.Report, error) {
			t0 = clock.since()
			s.Watch(&sender.Report{Total: 1000, Nodes: []sender.NodeReport{
				{Name: "n1", State: sender.StateReceiving, Received: 400, Rate: 100},
				{Name: "n2", State: sender.StateReceiving, Received: 300, Rate: 90},
			}})
			look()
			_ = clock.Sleep(ctx, 10*time.Second)
			s.Watch(&sender.Report{Total: 1000, Nodes: []sender.NodeReport{
				{Name: "n1", State: sender.StateVerifying, Received: 1000},
				{Name: "n2", State: sender.StateReceiving, Received: 800},
			}})
			look()
			rep := &sender.Report{Done: true}
			for _, n := range s.Nodes {
				rep.Nodes = append(rep.Nodes, sender.NodeReport{Name: n.Name, State: sender.StateDone, Verified: true})
				store.schedule(time.Second, report(0, n.Name, contract.StateDone))
			}
			return rep, nil
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []seen{
		{contract.StepReceiving, 400, 1000, t0}, {contract.StepReceiving, 300, 1000, t0},
		// n1 verifies from 10s on; n2 still receives since the start.
		{contract.StepVerifying, 1000, 1000, t0 + 10*time.Second}, {contract.StepReceiving, 800, 1000, t0},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(seen{})); diff != "" {
		t.Errorf("the store during the session (-want +got):\n%s", diff)
	}
	// The ring's verdict is not the agents' report: the campaign waited
	// for their reports, a second after it.
	if d := clock.since(); d < t0+11*time.Second {
		t.Errorf("the campaign ended at %v, before the agents' reports at %v: its own transition counted as their report", d, t0+11*time.Second)
	}
}
