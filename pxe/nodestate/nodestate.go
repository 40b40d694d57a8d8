// Package nodestate keeps each inventory node's boot state (an
// inventory.Status) on disk, one JSON file per node, so that it survives a
// restart of herd and can be changed by another process (`herd nodes
// reinstall`) while `herd serve` runs.
//
// Layout of the state directory:
//
//	<name>.json          the node's inventory.Status
//	.lock                flock(2)ed around every read-modify-write
//	.<name>.json.tmp-*   a write in progress (or left by a crash)
//
// Every write goes to a temporary file in the same directory, is fsynced,
// renamed over <name>.json and the directory is fsynced, so a reader sees
// the old or the new file, never a torn one, and a crash leaves the old
// file valid. Readers take no lock.
package nodestate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/internal/atomicfile"
	"github.com/herdproject/herd/pxe/inventory"
	"golang.org/x/sys/unix"
)

// Default paths of the herd commands.
const (
	DefaultInventory = "/etc/herd/inventory"
	DefaultStateDir  = "/var/lib/herd/state"
)

// ErrUnknownNode is wrapped by the error for a name that is not in the
// inventory.
var ErrUnknownNode = errors.New("no such node in the inventory")

// ErrTransition is wrapped by Transition's error for a move the install
// cycle does not allow.
var ErrTransition = errors.New("illegal state transition")

type unknownNodeError struct{ name, file string }

func (e *unknownNodeError) Error() string {
	return fmt.Sprintf("no node %q in inventory %s", e.name, e.file)
}

func (e *unknownNodeError) Is(target error) bool { return target == ErrUnknownNode }

// Store is the file-backed inventory.Store. Several Stores, in one process
// or in several, may share a directory.
type Store struct {
	dir string
	inv *inventory.Inventory
}

var _ inventory.Store = (*Store)(nil)

const (
	lockName  = ".lock"
	tmpInfix  = stateExt + atomicfile.TempInfix // atomicfile.Write's temporary files
	stateExt  = ".json"
	dirMode   = 0o700
	lockMode  = 0o600
	maxStatus = 1 << 20 // a state file larger than this is not ours
)

// Open returns the store for inv's nodes in dir, creating dir (mode 0700)
// when it is missing. It removes temporary files left by a crashed writer
// (under the lock, so never a live writer's); when dir is not writable it
// skips that, and the store can still be read.
func Open(dir string, inv *inventory.Inventory) (*Store, error) {
	if inv == nil {
		return nil, errors.New("nodestate: nil inventory")
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("state directory %s is not a directory", dir)
	}
	s := &Store{dir: dir, inv: inv}
	unlock, err := s.lock()
	switch {
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS):
		return s, nil // read-only use
	case err != nil:
		return nil, err
	}
	defer unlock()
	if err := s.removeTemps(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the state directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) removeTemps() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, tmpInfix) {
			if err := os.Remove(filepath.Join(s.dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove stale temporary file: %w", err)
			}
		}
	}
	return nil
}

// lock takes the directory's exclusive flock. Every call opens the lock
// file anew, so it excludes other Stores and goroutines of this process as
// well as other processes (flock locks belong to the open file).
func (s *Store) lock() (unlock func(), err error) {
	path := filepath.Join(s.dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, lockMode)
	if err != nil {
		return nil, fmt.Errorf("state lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("state lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// node returns the inventory node called name.
func (s *Store) node(name string) (inventory.Node, error) {
	n, ok := s.inv.ByName(name)
	if !ok {
		return inventory.Node{}, &unknownNodeError{name: name, file: s.inv.File}
	}
	// Parse only accepts host names; an Inventory built by hand must
	// not steer the file name out of the directory either.
	if n.Name == "" || strings.ContainsAny(n.Name, "/\\\x00") || strings.HasPrefix(n.Name, ".") {
		return inventory.Node{}, fmt.Errorf("node name %q cannot name a state file", n.Name)
	}
	return n, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name+stateExt) }

// read returns n's stored status with its identity from the inventory.
func (s *Store) read(n inventory.Node) (inventory.Status, error) {
	st := inventory.Status{State: contract.StateUnknown}
	path := s.path(n.Name)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return inventory.Status{}, fmt.Errorf("node %s: %w", n.Name, err)
	case len(data) > maxStatus:
		return inventory.Status{}, fmt.Errorf("node %s: state file %s is larger than %d bytes: remove it to forget the node's state", n.Name, path, maxStatus)
	default:
		if err := json.Unmarshal(data, &st); err != nil {
			return inventory.Status{}, fmt.Errorf("node %s: state file %s: %v (remove it to forget the node's state)", n.Name, path, err)
		}
		st.State = st.CurrentState()
		if !validState(st.State) {
			return inventory.Status{}, fmt.Errorf("node %s: state file %s: unknown state %q (remove it to forget the node's state)", n.Name, path, st.State)
		}
	}
	setIdentity(&st, n)
	return st, nil
}

// setIdentity copies what the inventory says of the node: a changed
// inventory wins over the stored copy.
func setIdentity(st *inventory.Status, n inventory.Node) {
	st.Name = n.Name
	st.MAC = n.MAC.String()
	st.IP = n.IP.String()
	st.Rack = n.Rack
}

// write stores st as n's file, atomically.
func (s *Store) write(n inventory.Node, st inventory.Status) error {
	data, err := json.MarshalIndent(st, "", "\t")
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(filepath.Join(s.dir, n.Name+stateExt), data, 0o600); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// Get returns the node's status; a node never heard of is StateUnknown
// with LocalBoot false. Name, MAC and IP always come from the inventory.
func (s *Store) Get(name string) (inventory.Status, error) {
	n, err := s.node(name)
	if err != nil {
		return inventory.Status{}, err
	}
	return s.read(n)
}

// List returns every inventory node's status in inventory order.
func (s *Store) List() ([]inventory.Status, error) {
	out := make([]inventory.Status, 0, len(s.inv.Nodes))
	for _, n := range s.inv.Nodes {
		st, err := s.Get(n.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Update reads the node's status, lets fn change it and writes it back,
// all under the directory's lock. When fn returns an error nothing is
// written and Update returns that error as it is. fn cannot change Name,
// MAC or IP. Callers that move the node through its install cycle do it
// with Transition inside fn.
func (s *Store) Update(name string, fn func(*inventory.Status) error) error {
	n, err := s.node(name)
	if err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := s.read(n)
	if err != nil {
		return err
	}
	if err := fn(&st); err != nil {
		return err
	}
	setIdentity(&st, n)
	return s.write(n, st)
}

// Reinstall switches nodes back to install boot: LocalBoot false, State
// unknown and no failure reason; the last transfer's Bytes and Rate,
// LastReport and Message stay as history. names are inventory names, or
// the single word "all" for every node. Every name is checked before
// anything changes.
func (s *Store) Reinstall(names ...string) error {
	if len(names) == 0 {
		return errors.New("reinstall: name the nodes, or all")
	}
	var nodes []inventory.Node
	if len(names) == 1 && names[0] == "all" {
		nodes = s.inv.Nodes
	} else {
		seen := map[string]bool{}
		for _, name := range names {
			if name == "all" {
				return errors.New(`reinstall: "all" cannot be combined with node names`)
			}
			n, err := s.node(name)
			if err != nil {
				return err
			}
			if !seen[n.Name] {
				seen[n.Name] = true
				nodes = append(nodes, n)
			}
		}
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range nodes {
		st, err := s.read(n)
		if err != nil {
			return err
		}
		st.State = contract.StateUnknown
		st.LocalBoot = false
		st.Reason = ""
		st.Step, st.StepSince = "", time.Time{}
		if err := s.write(n, st); err != nil {
			return err
		}
	}
	return nil
}

func validState(s contract.State) bool { return slices.Contains(contract.States, s) }

// allowed lists the states a node in state from may move to.
func allowed(from contract.State) []contract.State {
	var fwd []contract.State
	switch from {
	case contract.StateUnknown:
		fwd = []contract.State{contract.StateBooting}
	case contract.StateBooting:
		fwd = []contract.State{contract.StateRegistered}
	case contract.StateRegistered:
		fwd = []contract.State{contract.StateInstalling}
	case contract.StateInstalling:
		fwd = []contract.State{contract.StateDone}
	}
	if from != contract.StateUnknown {
		fwd = append(fwd, from)
	}
	for _, s := range []contract.State{contract.StateBooting, contract.StateFailed} {
		if !slices.Contains(fwd, s) {
			fwd = append(fwd, s)
		}
	}
	return fwd
}

// Transition moves st to state to, at time now, and applies what the move
// means:
//
//	unknown → booting → registered → installing → done | failed
//	any state → booting (the node was reset) and → failed
//
// Repeating the current state (a report sent twice) is allowed, except
// unknown, which only Reinstall sets. A change of state sets the step
// the new state begins with (SetStep, StepSince at now or, when now is
// zero, the wall clock): booting loading installer, registered
// registered, installing receiving, done bootloader (the agent customizes
// the system before it reports); failed keeps the step the node failed
// in, from now. done sets LocalBoot: the node's next
// reset boots its disk, so the boot services stop offering the installer
// (what the Mandriva guide asks the administrator to switch by hand).
// failed clears LocalBoot, so the next reset installs again, and records
// reason as st.Reason; every other state clears Reason and keeps a
// non-empty reason as st.Message. Entering installing zeroes Bytes and
// Rate (a new transfer). LastReport becomes now unless now is zero.
//
// A move the cycle does not allow changes nothing and returns an error
// wrapping ErrTransition that names both states.
func Transition(st *inventory.Status, to contract.State, reason string, now time.Time) error {
	from := st.CurrentState()
	if !validState(from) {
		return fmt.Errorf("node %s: %w: unknown current state %q", st.Name, ErrTransition, from)
	}
	if !validState(to) {
		return fmt.Errorf("node %s: %w: unknown state %q", st.Name, ErrTransition, to)
	}
	if ok := allowed(from); !slices.Contains(ok, to) {
		return fmt.Errorf("node %s: %w %s → %s (from %s: %s)", st.Name, ErrTransition, from, to, from, joinStates(ok))
	}
	switch to {
	case contract.StateDone:
		st.LocalBoot = true
	case contract.StateFailed:
		st.LocalBoot = false
	case contract.StateInstalling:
		if from != contract.StateInstalling {
			st.Bytes, st.Rate, st.Total = 0, 0, 0
		}
	}
	if from != to {
		if step := firstStep[to]; step != "" {
			SetStep(st, step, now)
		} else if to == contract.StateFailed {
			st.StepSince = stepClock(now)
		}
	}
	if to == contract.StateFailed {
		st.Reason = reason
	} else {
		st.Reason = ""
		if reason != "" {
			st.Message = reason
		}
	}
	st.State = to
	if !now.IsZero() {
		st.LastReport = now
	}
	return nil
}

// firstStep is the step each state begins with (Transition).
var firstStep = map[contract.State]contract.Step{
	contract.StateBooting:    contract.StepLoading,
	contract.StateRegistered: contract.StepRegistered,
	contract.StateInstalling: contract.StepReceiving,
	contract.StateDone:       contract.StepBootloader,
}

// SetStep records that the node does step now: StepSince becomes now
// when the step changes (or was never timed), and stays otherwise, so a
// step repeated by every report keeps its start. A zero now is the wall
// clock; an empty step changes nothing.
func SetStep(st *inventory.Status, step contract.Step, now time.Time) {
	if step == "" || (st.Step == step && !st.StepSince.IsZero()) {
		return
	}
	st.Step, st.StepSince = step, stepClock(now)
}

func stepClock(now time.Time) time.Time {
	if now.IsZero() {
		return time.Now()
	}
	return now
}

// Sighted records that the boot services saw the node at now (Seen,
// SeenBy: how) and moves its step on. firmware is true for a PXE
// firmware or boot loader (a PXE DHCP request, any TFTP read), false for
// a plain DHCP client: the agent, or the installed system.
//
//   - A node whose next boot is from disk (LocalBoot) is booting from
//     disk when its firmware asks, booted from disk when its system does.
//   - Otherwise its firmware asking means dhcp (it was reset), except
//     while it loads the installer its boot entry named; a plain DHCP
//     client before registration is the agent coming up.
//   - A plain DHCP client of a registered, installing or failed node (the
//     agent renewing its lease) changes no step.
func Sighted(st *inventory.Status, by string, firmware bool, now time.Time) {
	st.Seen, st.SeenBy = now, by
	var step contract.Step
	switch {
	case st.LocalBoot && firmware:
		step = contract.StepDiskBoot
	case st.LocalBoot:
		step = contract.StepBootedDisk
	case firmware && st.Step != contract.StepLoading:
		step = contract.StepDHCP
	case firmware:
	case st.CurrentState() == contract.StateUnknown, st.CurrentState() == contract.StateBooting:
		step = contract.StepAgentUp
	}
	SetStep(st, step, now)
}

func joinStates(ss []contract.State) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}
