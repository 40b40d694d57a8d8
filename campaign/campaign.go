// Package campaign is herd serve's install campaign: wait until the
// inventory's nodes booted the agent and registered, send the stage2 to
// their RAM and wait until they mounted it, send the install session,
// record each node's outcome in the node store, list the nodes that never
// came, wait for the agents' final reports, and give failed nodes that
// register again a session of their own.
//
// It is driven through interfaces: the node store (inventory.Store), the
// sender (Config.Send runs one ring session), the clock (Config.Clock) and
// the boot services' liveness (Config.Stopped), so that its logic is
// tested with fakes; herd serve maps its flags onto Config and runs it.
package campaign

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/sender"
)

// Session kinds; a session's state file is KIND.json in Config.SessionsDir.
const (
	KindStage2  = "stage2"
	KindInstall = "install"
)

// Session is one ring session the campaign asks Config.Send to run.
type Session struct {
	// Kind is KindStage2 or KindInstall.
	Kind string
	// Nodes are the session's nodes in ring (inventory) order; the ring
	// reaches them at their inventory addresses.
	Nodes []inventory.Node
	// Files, when set, replace the session's configured files (the
	// stage2 session sends Config.Stage2 only).
	Files []plan.File
	// StateFile is where the sender keeps what a restarted herd serve
	// needs to resume the session; "" = Send's own choice.
	StateFile string
	// Watch receives the session's report as it progresses, by node
	// name (inventory names); Send calls it from the sender's watch.
	Watch func(*sender.Report)
}

// Hosts are the session's ring addresses, as the sender's plan lists
// them.
func (s Session) Hosts() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.IP.String()
	}
	return out
}

// Clock is the campaign's time.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx ends (then ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep waits d or until ctx ends.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Config is a campaign. Zero durations take the defaults below.
type Config struct {
	Inventory *inventory.Inventory
	Store     inventory.Store
	// Want is how many nodes to wait for before the session (0: every
	// inventory node); WaitTimeout bounds that wait (default 30m).
	Want        int
	WaitTimeout time.Duration
	// Stage2, when set, is sent to every node's RAM first; the install
	// session goes to the nodes whose agents then report it mounted
	// within Stage2Wait (default 35m).
	Stage2     *plan.File
	Stage2Wait time.Duration
	// Once ends the campaign after the session and the agents' final
	// reports (at most ReportWait, default 2m); otherwise it serves on,
	// with second chances, until ctx ends.
	Once       bool
	ReportWait time.Duration
	// SessionsDir keeps the sessions' state files: a session in progress
	// when herd serve was killed is resumed with its nodes. "" keeps
	// none. Fresh drops such a session instead.
	SessionsDir string
	Fresh       bool
	// Unbootable, when not "", says why UEFI nodes without an install
	// plan cannot boot the session's images: they are failed before the
	// session, nothing written to them.
	Unbootable string
	// Send runs one ring session (required).
	Send func(context.Context, Session) (*sender.Report, error)
	// Stopped returns an error once the boot services have stopped, nil
	// while they run; nil = never.
	Stopped func() error
	// Out receives the campaign's result lines (STAGE2:, INSTALL:,
	// REFUSED:, NEVER CAME:, AGAIN:, REPORT:); nil discards.
	Out io.Writer
	// Log receives progress messages; nil discards.
	Log *slog.Logger
	// Clock is the campaign's time; nil is RealClock.
	Clock Clock
	// Power, when set, drives the nodes' BMCs (herd serve --power): at
	// the start every node with a BMC is set to boot from the network and
	// powered on (or cycled); one that has not registered within
	// RegisterTimeout (default 10m) is power-cycled, at most PowerCycles
	// times (default 2), then given up on and named; a node that verified
	// its data is set to boot from its disk. nil: people press reset.
	Power           Power
	RegisterTimeout time.Duration
	PowerCycles     int
}

// Power drives the nodes' BMCs for the campaign.
type Power interface {
	// Has reports whether node n has a BMC.
	Has(n inventory.Node) bool
	// Install makes n boot from the network next, and powers it on (a
	// power cycle when it is on).
	Install(ctx context.Context, n inventory.Node) error
	// Cycle power-cycles n.
	Cycle(ctx context.Context, n inventory.Node) error
	// Disk makes n boot from its disk.
	Disk(ctx context.Context, n inventory.Node) error
}

// Defaults of Config's durations.
const (
	DefaultWaitTimeout = 30 * time.Minute
	DefaultStage2Wait  = 35 * time.Minute
	DefaultReportWait  = 2 * time.Minute
	// AgainSettle is how long the campaign waits for more nodes after one
	// registered again, to send them one session.
	AgainSettle = 5 * time.Second
	// poll is how often the node store is read while waiting.
	poll = 500 * time.Millisecond
)

type campaign struct {
	Config
	want int
	// Power's bookkeeping: when each node was last powered for an
	// install, its power cycles, and the nodes given up on.
	powered map[string]time.Time
	cycles  map[string]int
	gaveUp  map[string]bool
}

// Defaults of the power settings.
const (
	DefaultRegisterTimeout = 10 * time.Minute
	DefaultPowerCycles     = 2
	// powerParallel bounds the BMCs driven at once.
	powerParallel = 32
)

// Run runs the campaign. It returns nil once every expected node
// installed and verified its data (with Once), or, interrupted, once every
// inventory node is done; otherwise an error saying how many never came
// or failed.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Inventory == nil || cfg.Store == nil || cfg.Send == nil {
		return errors.New("campaign: an inventory, a node store and a sender are required")
	}
	if len(cfg.Inventory.Nodes) == 0 {
		return errors.New("campaign: the inventory lists no node")
	}
	c := &campaign{Config: cfg, want: cfg.Want}
	if c.want <= 0 || c.want > len(cfg.Inventory.Nodes) {
		c.want = len(cfg.Inventory.Nodes)
	}
	if c.WaitTimeout == 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	if c.Stage2Wait == 0 {
		c.Stage2Wait = DefaultStage2Wait
	}
	if c.ReportWait == 0 {
		c.ReportWait = DefaultReportWait
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	// The report printer runs beside the second-chance loop: one line
	// per Write, never two at once.
	c.Out = &lockedWriter{w: c.Out}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Stopped == nil {
		c.Stopped = func() error { return nil }
	}
	if c.RegisterTimeout <= 0 {
		c.RegisterTimeout = DefaultRegisterTimeout
	}
	if c.PowerCycles <= 0 {
		c.PowerCycles = DefaultPowerCycles
	}
	c.powered, c.cycles, c.gaveUp = map[string]time.Time{}, map[string]int{}, map[string]bool{}
	return c.run(ctx)
}

func (c *campaign) run(ctx context.Context) error {
	// A session in progress when herd serve was killed is taken back
	// first: its nodes wait in it, not registered again.
	regd, from, err := c.pending()
	if err != nil {
		return err
	}
	if regd == nil {
		c.powerUp(ctx)
		if regd, err = c.waitRegistered(ctx); err != nil {
			return err
		}
	}
	nodes := c.refuseUnbootable(regd)
	sessionStart := c.Clock.Now()
	refused := len(regd) - len(nodes)
	rep, nodes, failed, serr := c.sessions(ctx, nodes, from)
	failed += refused
	missing := missingNodes(c.Inventory, regd)
	if len(missing) > 0 {
		fmt.Fprintf(c.Out, "NEVER CAME: %d node(s): %s\n", len(missing), strings.Join(missing, ","))
	}
	result := serr
	if result == nil && (len(missing) > 0 || failed > 0) {
		result = fmt.Errorf("%d node(s) never came, %d failed", len(missing), failed)
	}
	if ctx.Err() != nil {
		// Interrupted during the session: nothing more to wait for.
		return c.finalResult(result)
	}
	if c.Once {
		// The agents customize their systems after the ring's verdict and
		// report then: keep serving until they have (or the wait ends).
		if rep != nil {
			c.waitReports(ctx, nodes, sessionStart)
			if bad := c.printReports(nodes, sessionStart); bad > 0 && result == nil {
				result = fmt.Errorf("%d node(s) failed after the ring (see REPORT lines)", bad)
			}
		}
		return result
	}
	reported := make(chan struct{})
	if rep != nil {
		go func() {
			defer close(reported)
			c.waitReports(ctx, nodes, sessionStart)
			c.printReports(nodes, sessionStart)
		}()
	} else {
		close(reported)
	}
	defer func() { <-reported }()
	c.Log.Info("session over; still serving boot files (installed nodes boot from disk, failed ones install again when reset). Interrupt to stop.")
	// Second chances: a node that registers again (a failed node reset,
	// a late one) gets a session of its own.
	for {
		again, err := c.waitAgain(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return c.finalResult(result)
			}
			return err
		}
		if again = c.refuseUnbootable(again); len(again) == 0 {
			continue
		}
		names := nodeNames(again)
		fmt.Fprintf(c.Out, "AGAIN: %d node(s) registered: %s\n", len(again), strings.Join(names, ","))
		_, _, f2, err := c.sessions(ctx, again, "")
		if err == nil && f2 == 0 {
			fmt.Fprintf(c.Out, "AGAIN: %s installed and verified\n", strings.Join(names, ","))
		}
	}
}

// finalResult is the outcome when interrupted: success once every
// inventory node is done (second chances included), else the first
// session's error or the count of nodes not done.
func (c *campaign) finalResult(first error) error {
	var left []string
	for _, n := range c.Inventory.Nodes {
		if s, err := c.Store.Get(n.Name); err != nil || s.State != contract.StateDone {
			left = append(left, n.Name)
		}
	}
	switch {
	case len(left) == 0:
		return nil
	case first != nil:
		return first
	}
	return fmt.Errorf("%d node(s) not installed: %s", len(left), strings.Join(left, ","))
}

// stateFile is the state file of a session of kind.
func (c *campaign) stateFile(kind string) string {
	if c.SessionsDir == "" {
		return ""
	}
	return filepath.Join(c.SessionsDir, kind+".json")
}

// pending finds a session that was in progress when herd serve stopped:
// its nodes (in the session's order) and its kind, or nil. With Fresh
// there is none: the session that comes drops it.
func (c *campaign) pending() ([]inventory.Node, string, error) {
	if c.SessionsDir == "" || c.Fresh {
		return nil, "", nil
	}
	for _, kind := range []string{KindStage2, KindInstall} {
		if kind == KindStage2 && c.Stage2 == nil {
			continue
		}
		path := c.stateFile(kind)
		hosts, err := sender.StateHosts(path)
		if err != nil {
			return nil, "", fmt.Errorf("%w (or start with --fresh)", err)
		}
		if hosts == nil {
			continue
		}
		var nodes []inventory.Node
		for _, h := range hosts {
			n, ok := c.Inventory.ByIP(h)
			if !ok {
				return nil, "", fmt.Errorf("state file %s names node %s, which the inventory no longer has: start with --fresh", path, h)
			}
			nodes = append(nodes, n)
		}
		c.Log.Info(fmt.Sprintf("the %s session was in progress when herd serve stopped (state file %s): resuming it with its %d node(s)", kind, path, len(nodes)),
			"session", kind, "state_file", path, "nodes", len(nodes))
		return nodes, kind, nil
	}
	return nil, "", nil
}

// sessions sends the stage2 (when set) and then the install session to
// nodes, and returns the install session's report, the nodes it went to,
// and how many nodes failed on the way. from, when set, is the session
// to begin with (one being resumed).
func (c *campaign) sessions(ctx context.Context, nodes []inventory.Node, from string) (*sender.Report, []inventory.Node, int, error) {
	failed := 0
	if c.Stage2 != nil && from != KindInstall {
		// Stage 1 → 2: the stage2 goes to every node's RAM first; the
		// install session goes to those that mounted it.
		fmt.Fprintf(c.Out, "STAGE2: %s > %s, mounted at %s\n", c.Stage2.Input, c.Stage2.Output, c.Stage2.Mount)
		since := c.Clock.Now()
		rep, err := c.session(ctx, nodes, []plan.File{*c.Stage2}, KindStage2)
		if rep == nil {
			return nil, nil, len(nodes), err
		}
		var ok []inventory.Node
		for _, n := range nodes {
			if slices.ContainsFunc(rep.Nodes, func(r sender.NodeReport) bool { return r.Name == n.Name && r.State == sender.StateDone && r.Verified }) {
				ok = append(ok, n)
			} else {
				failed++
			}
		}
		ready := c.waitStage2(ctx, ok, since)
		failed += len(ok) - len(ready)
		nodes = ready
	}
	if len(nodes) == 0 {
		return nil, nil, failed, errors.New("no node left for the install session")
	}
	if c.Stage2 != nil {
		fmt.Fprintf(c.Out, "INSTALL: %d node(s)\n", len(nodes))
	}
	rep, serr := c.session(ctx, nodes, nil, KindInstall)
	if rep != nil {
		failed += len(rep.Failed())
	}
	return rep, nodes, failed, serr
}

// session runs one ring session of kind to nodes and records each node's
// outcome: failed, or -- for the install session -- done (which switches
// it to local boot); a verified node of a stage2 session stays
// installing. The report's nodes carry inventory names.
func (c *campaign) session(ctx context.Context, nodes []inventory.Node, files []plan.File, kind string) (*sender.Report, error) {
	for _, n := range nodes {
		// The campaign's own updates leave LastReport to the agents.
		c.transition(n.Name, contract.StateInstalling, "")
	}
	s := Session{Kind: kind, Nodes: nodes, Files: files, StateFile: c.stateFile(kind)}
	s.Watch = func(r *sender.Report) {
		for _, n := range r.Nodes {
			_ = c.Store.Update(n.Name, func(st *inventory.Status) error {
				st.Bytes, st.Rate = n.Received, n.Rate
				if r.Total > 0 {
					st.Total = r.Total // the dashboard's progress and ETA
				}
				switch n.State {
				case sender.StateReceiving:
					nodestate.SetStep(st, contract.StepReceiving, c.Clock.Now())
				case sender.StateVerifying:
					nodestate.SetStep(st, contract.StepVerifying, c.Clock.Now())
				}
				return nil
			})
		}
	}
	rep, err := c.Send(ctx, s)
	if rep != nil {
		for _, n := range rep.Nodes {
			to, reason := contract.StateDone, ""
			if n.State != sender.StateDone || !n.Verified {
				to, reason = contract.StateFailed, n.Reason
			} else if kind != KindInstall {
				continue
			}
			c.transition(n.Name, to, reason)
			if to == contract.StateDone {
				c.powerDisk(ctx, n.Name)
			}
		}
	}
	return rep, err
}

// transition moves a node's boot state (nodestate.Transition's rules).
// It is not the node's report: LastReport stays its agent's (waitReports
// waits for the agent's final report after the ring's verdict), so the
// time passed is zero, and a step it begins is dated on the campaign's
// clock.
func (c *campaign) transition(name string, to contract.State, reason string) {
	_ = c.Store.Update(name, func(s *inventory.Status) error {
		since := s.StepSince
		if err := nodestate.Transition(s, to, reason, time.Time{}); err != nil {
			return err
		}
		if !s.StepSince.Equal(since) {
			s.StepSince = c.Clock.Now()
		}
		return nil
	})
}

// pause sleeps d, failing when the boot services stopped or ctx ends.
func (c *campaign) pause(ctx context.Context, d time.Duration) error {
	if err := c.Stopped(); err != nil {
		return err
	}
	return c.Clock.Sleep(ctx, d)
}

// registered lists the registered inventory nodes in inventory order.
func (c *campaign) registered() ([]inventory.Node, error) {
	list, err := c.Store.List()
	if err != nil {
		return nil, err
	}
	var regd []inventory.Node
	for _, s := range list {
		if n, ok := c.Inventory.ByName(s.Name); ok && s.State == contract.StateRegistered {
			regd = append(regd, n)
		}
	}
	return regd, nil
}

// waitRegistered waits until want nodes registered (or WaitTimeout), and
// returns the registered ones in inventory order.
func (c *campaign) waitRegistered(ctx context.Context) ([]inventory.Node, error) {
	deadline := c.Clock.Now().Add(c.WaitTimeout)
	var lastSay time.Time
	lastCount := -1
	for {
		regd, err := c.registered()
		if err != nil {
			return nil, err
		}
		c.powerCycle(ctx, regd)
		switch {
		case len(regd) >= c.want:
			return regd, nil
		case c.allGivenUp(regd):
			missing := strings.Join(missingNodes(c.Inventory, regd), ",")
			if len(regd) == 0 {
				return nil, fmt.Errorf("no node registered; gave up on %s after %d power cycle(s) each", missing, c.PowerCycles)
			}
			c.Log.Warn(fmt.Sprintf("%d of %d node(s) registered; going on without %s (given up after %d power cycle(s))", len(regd), len(c.Inventory.Nodes), missing, c.PowerCycles))
			return regd, nil
		case !c.Clock.Now().Before(deadline):
			missing := strings.Join(missingNodes(c.Inventory, regd), ",")
			if len(regd) == 0 || len(regd) < c.want && c.want < len(c.Inventory.Nodes) {
				return nil, fmt.Errorf("only %d of %d node(s) registered within %v: never came: %s", len(regd), c.want, c.WaitTimeout, missing)
			}
			c.Log.Warn(fmt.Sprintf("%d of %d node(s) registered within %v; going on without %s", len(regd), len(c.Inventory.Nodes), c.WaitTimeout, missing),
				"registered", len(regd), "missing", missing)
			return regd, nil
		}
		// Said when the count changes, and once a minute meanwhile.
		if now := c.Clock.Now(); len(regd) != lastCount || now.Sub(lastSay) >= time.Minute {
			lastSay, lastCount = now, len(regd)
			missing := strings.Join(missingNodes(c.Inventory, regd), ",")
			c.Log.Info(fmt.Sprintf("%d of %d node(s) registered; waiting for %s", len(regd), c.want, missing), "registered", len(regd), "want", c.want)
		}
		if err := c.pause(ctx, poll); err != nil {
			return nil, err
		}
	}
}

// waitAgain waits until nodes registered again after a session (a failed
// node reset, a node that came late) and returns them in inventory order,
// once no other one came for AgainSettle.
func (c *campaign) waitAgain(ctx context.Context) ([]inventory.Node, error) {
	var first time.Time
	last := 0
	for {
		regd, err := c.registered()
		if err != nil {
			return nil, err
		}
		switch {
		case len(regd) == 0:
			first = time.Time{}
		case len(regd) != last:
			first = c.Clock.Now()
		case c.Clock.Now().Sub(first) >= AgainSettle || len(regd) == len(c.Inventory.Nodes):
			return regd, nil
		}
		last = len(regd)
		if err := c.pause(ctx, poll); err != nil {
			return nil, err
		}
	}
}

// waitStage2 waits until every node reported that it mounted the stage2
// (an "installing" report since the stage2 session began) and returns
// those that did; the others are marked failed.
func (c *campaign) waitStage2(ctx context.Context, nodes []inventory.Node, since time.Time) []inventory.Node {
	deadline := c.Clock.Now().Add(c.Stage2Wait)
	ready := func(n inventory.Node) (bool, bool) { // reported, ok
		s, err := c.Store.Get(n.Name)
		if err != nil || !s.LastReport.After(since) {
			return false, false
		}
		return true, s.State == contract.StateInstalling
	}
	for c.Clock.Now().Before(deadline) {
		all := true
		for _, n := range nodes {
			if rep, _ := ready(n); !rep {
				all = false
				break
			}
		}
		if all || c.Clock.Sleep(ctx, 200*time.Millisecond) != nil {
			break
		}
	}
	var out []inventory.Node
	for _, n := range nodes {
		switch rep, ok := ready(n); {
		case ok:
			out = append(out, n)
		case rep:
			c.Log.Warn(fmt.Sprintf("%s failed after the stage2 (see herd nodes show %s)", n.Name, n.Name), "node", n.Name)
		default:
			c.Log.Warn(fmt.Sprintf("%s did not report the stage2 mounted within %v", n.Name, c.Stage2Wait), "node", n.Name)
			c.transition(n.Name, contract.StateFailed, fmt.Sprintf("no report after the stage2 within %v", c.Stage2Wait))
		}
	}
	return out
}

// refuseUnbootable fails, before the session, the nodes that would
// receive an image they cannot boot (Config.Unbootable), and returns the
// others: a node whose agent registered as booted by UEFI, without an
// install plan. Nothing is written to those nodes; they keep their
// install boot entry.
func (c *campaign) refuseUnbootable(nodes []inventory.Node) []inventory.Node {
	if c.Unbootable == "" {
		return nodes
	}
	var keep []inventory.Node
	for _, n := range nodes {
		s, err := c.Store.Get(n.Name)
		if n.Plan != "" || err != nil || s.Firmware != contract.FirmwareUEFI {
			keep = append(keep, n)
			continue
		}
		reason := "this node booted by UEFI, and " + c.Unbootable + ": it could not boot it, so nothing was written to it; send an image with a GPT and an EFI System Partition (herd image build makes one), or switch the node's firmware to legacy BIOS boot"
		fmt.Fprintf(c.Out, "REFUSED: %s: %s\n", n.Name, reason)
		c.transition(n.Name, contract.StateFailed, reason)
	}
	return keep
}

// printReports prints a REPORT line per node with its agent's final
// report since the session started (the ring verified the data; the
// agent then customizes, installs the boot loader or boot entry, and may
// still fail), and returns how many reported failed.
func (c *campaign) printReports(nodes []inventory.Node, since time.Time) int {
	bad := 0
	for _, n := range nodes {
		s, err := c.Store.Get(n.Name)
		switch {
		case err != nil:
			fmt.Fprintf(c.Out, "REPORT: %s: %v\n", n.Name, err)
		case !s.LastReport.After(since):
			fmt.Fprintf(c.Out, "REPORT: %s: no report from its agent yet (state %s)\n", n.Name, s.State)
		case s.State == contract.StateFailed:
			bad++
			fmt.Fprintf(c.Out, "REPORT: %s: failed: %s\n", n.Name, s.Reason)
		default:
			fmt.Fprintf(c.Out, "REPORT: %s: %s\n", n.Name, s.State)
		}
	}
	return bad
}

// waitReports waits until every node has reported (its agent's final
// report) since the session started, for at most ReportWait.
func (c *campaign) waitReports(ctx context.Context, nodes []inventory.Node, since time.Time) {
	deadline := c.Clock.Now().Add(c.ReportWait)
	for c.Clock.Now().Before(deadline) {
		all := true
		for _, n := range nodes {
			s, err := c.Store.Get(n.Name)
			final := s.State == contract.StateDone || s.State == contract.StateFailed
			if err != nil || !final || !s.LastReport.After(since) {
				all = false
				break
			}
		}
		if all || c.Clock.Sleep(ctx, 200*time.Millisecond) != nil {
			return
		}
	}
}

func missingNodes(inv *inventory.Inventory, regd []inventory.Node) []string {
	var out []string
	for _, n := range inv.Nodes {
		if !slices.ContainsFunc(regd, func(r inventory.Node) bool { return r.Name == n.Name }) {
			out = append(out, n.Name)
		}
	}
	return out
}

func nodeNames(nodes []inventory.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

// powerUp sets every node with a BMC to boot from the network and powers
// it on (Config.Power), several at once; the nodes without one are named:
// their reset is the operator's.
func (c *campaign) powerUp(ctx context.Context) {
	if c.Power == nil {
		return
	}
	var none []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, powerParallel)
	for _, n := range c.Inventory.Nodes {
		if !c.Power.Has(n) {
			none = append(none, n.Name)
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := c.Power.Install(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			c.powered[n.Name] = c.Clock.Now()
			if err != nil {
				c.Log.Warn(fmt.Sprintf("%s: could not power it on through its BMC: %v; reset it yourself", n.Name, err), "node", n.Name)
			}
		})
	}
	wg.Wait()
	if len(none) > 0 {
		c.Log.Warn(fmt.Sprintf("no BMC in the inventory for %s: reset them yourself", strings.Join(none, ",")), "nodes", strings.Join(none, ","))
	}
	c.Log.Info(fmt.Sprintf("%d node(s) set to boot from the network and powered on through their BMCs", len(c.powered)))
}

// powerCycle power-cycles the nodes powered for an install that have not
// registered within RegisterTimeout, at most PowerCycles times each, then
// gives up on them.
func (c *campaign) powerCycle(ctx context.Context, regd []inventory.Node) {
	if c.Power == nil {
		return
	}
	now := c.Clock.Now()
	for _, n := range c.Inventory.Nodes {
		at, ok := c.powered[n.Name]
		if !ok || c.gaveUp[n.Name] || slices.ContainsFunc(regd, func(r inventory.Node) bool { return r.Name == n.Name }) || now.Sub(at) < c.RegisterTimeout {
			continue
		}
		if c.cycles[n.Name] >= c.PowerCycles {
			c.gaveUp[n.Name] = true
			c.Log.Warn(fmt.Sprintf("%s has not registered after %d power cycle(s): giving up on it (see its console)", n.Name, c.cycles[n.Name]), "node", n.Name)
			continue
		}
		c.cycles[n.Name]++
		c.powered[n.Name] = now
		c.Log.Warn(fmt.Sprintf("%s has not registered within %v: power cycle %d of %d", n.Name, c.RegisterTimeout, c.cycles[n.Name], c.PowerCycles), "node", n.Name)
		if err := c.Power.Cycle(ctx, n); err != nil {
			c.Log.Warn(fmt.Sprintf("%s: power cycle through its BMC: %v", n.Name, err), "node", n.Name)
		}
	}
}

// allGivenUp reports whether every node that has not registered was given
// up on (so there is nothing left to wait for).
func (c *campaign) allGivenUp(regd []inventory.Node) bool {
	if len(c.gaveUp) == 0 {
		return false
	}
	for _, name := range missingNodes(c.Inventory, regd) {
		if !c.gaveUp[name] {
			return false
		}
	}
	return true
}

// powerDisk makes a node that verified its data boot from its disk.
func (c *campaign) powerDisk(ctx context.Context, name string) {
	if c.Power == nil {
		return
	}
	n, ok := c.Inventory.ByName(name)
	if !ok || !c.Power.Has(n) {
		return
	}
	if err := c.Power.Disk(ctx, n); err != nil {
		c.Log.Warn(fmt.Sprintf("%s: set to boot from its disk through its BMC: %v (herd's boot entry sends it there anyway)", name, err), "node", name)
	}
}

// lockedWriter serializes writes to w, so that lines printed by
// concurrent goroutines of one campaign never interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
