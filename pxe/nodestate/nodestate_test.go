package nodestate

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

const testInventory = `subnet 10.0.0.0/24
node 52:54:00:00:00:01 n1 10.0.0.11 plan=a.ks
node 52:54:00:00:00:02 n2 10.0.0.12
node 52:54:00:00:00:03 n3 10.0.0.13
`

func parse(t testing.TB, text string) *inventory.Inventory {
	t.Helper()
	inv, err := inventory.Parse("inv", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, parse(t, testInventory))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// move applies transitions in order.
func move(t *testing.T, s *Store, name string, states ...contract.State) {
	t.Helper()
	for i, to := range states {
		err := s.Update(name, func(st *inventory.Status) error {
			return Transition(st, to, "", t0.Add(time.Duration(i)*time.Second))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "state")
	s := open(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	if s.Dir() != dir {
		t.Errorf("Dir %q", s.Dir())
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(file, parse(t, testInventory)); err == nil {
		t.Error("Open on a regular file succeeded")
	}
}

func TestGetNeverHeardOf(t *testing.T) {
	s := open(t, t.TempDir())
	got, err := s.Get("n2")
	if err != nil {
		t.Fatal(err)
	}
	want := inventory.Status{Name: "n2", MAC: "52:54:00:00:00:02", IP: "10.0.0.12", State: contract.StateUnknown}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestUnknownName(t *testing.T) {
	s := open(t, t.TempDir())
	_, getErr := s.Get("nope")
	updErr := s.Update("nope", func(*inventory.Status) error { return nil })
	reErr := s.Reinstall("n1", "nope")
	for _, err := range []error{getErr, updErr, reErr} {
		if !errors.Is(err, ErrUnknownNode) || err.Error() != `no node "nope" in inventory inv` {
			t.Errorf("got %v", err)
		}
	}
	// Reinstall checked every name before changing anything.
	if _, err := os.Stat(filepath.Join(s.Dir(), "n1.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("n1 was written: %v", err)
	}
}

// A restart (a new Open) sees what was written; the inventory wins over
// the stored identity.
func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	move(t, s, "n1", contract.StateBooting, contract.StateRegistered, contract.StateInstalling)
	if err := s.Update("n1", func(st *inventory.Status) error {
		st.Bytes, st.Rate, st.Message = 1<<30, 1e8, "writing /dev/vda"
		st.Name, st.MAC = "evil", "nonsense" // ignored
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	move(t, s, "n1", contract.StateDone)
	want := inventory.Status{
		Name: "n1", MAC: "52:54:00:00:00:01", IP: "10.0.0.11", State: contract.StateDone,
		Bytes: 1 << 30, Rate: 1e8, LocalBoot: true, LastReport: t0, Message: "writing /dev/vda",
		Step: contract.StepBootloader, StepSince: t0,
	}

	s2 := open(t, dir)
	got, err := s2.Get("n1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}

	// The node moved to another address and card.
	inv := parse(t, strings.Replace(testInventory, "52:54:00:00:00:01 n1 10.0.0.11", "52:54:00:00:00:99 n1 10.0.0.99", 1))
	s3, err := Open(dir, inv)
	if err != nil {
		t.Fatal(err)
	}
	got, err = s3.Get("n1")
	if err != nil {
		t.Fatal(err)
	}
	want.MAC, want.IP = "52:54:00:00:00:99", "10.0.0.99"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changed inventory (-want +got):\n%s", diff)
	}

	list, err := s3.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range list {
		names = append(names, st.Name+":"+string(st.State))
	}
	if diff := cmp.Diff([]string{"n1:done", "n2:unknown", "n3:unknown"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestUpdateFnError(t *testing.T) {
	s := open(t, t.TempDir())
	boom := errors.New("boom")
	if err := s.Update("n1", func(st *inventory.Status) error {
		st.Bytes = 5
		return boom
	}); err != boom {
		t.Errorf("got %v, want boom as it is", err)
	}
	err := s.Update("n1", func(st *inventory.Status) error {
		return Transition(st, contract.StateDone, "", t0)
	})
	if !errors.Is(err, ErrTransition) {
		t.Errorf("got %v", err)
	}
	if ents, _ := os.ReadDir(s.Dir()); len(ents) != 1 || ents[0].Name() != ".lock" {
		t.Errorf("directory holds %v, want only .lock", ents)
	}
}

func TestCorruptFile(t *testing.T) {
	s := open(t, t.TempDir())
	for _, data := range []string{"{", `{"state":"sleeping"}`} {
		if err := os.WriteFile(filepath.Join(s.Dir(), "n2.json"), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get("n2"); err == nil || !strings.Contains(err.Error(), "n2.json") || !strings.Contains(err.Error(), "remove it") {
			t.Errorf("%s: got %v", data, err)
		}
		if _, err := s.List(); err == nil {
			t.Errorf("%s: List succeeded", data)
		}
	}
}

// A crash between writing the temporary file and renaming it leaves the
// old file valid; Open removes the stray temporary file.
func TestCrashBeforeRename(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	move(t, s, "n1", contract.StateBooting)
	stray := []string{
		filepath.Join(dir, ".n1.json.tmp-123456"), // half-written new state
		filepath.Join(dir, ".n3.json.tmp-9"),      // a node never written
	}
	for _, p := range stray {
		if err := os.WriteFile(p, []byte(`{"state":"do`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := s.Get("n1"); err != nil || st.State != contract.StateBooting {
		t.Fatalf("before reopen: %v %v", st.State, err)
	}
	s2 := open(t, dir)
	for _, p := range stray {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	if st, err := s2.Get("n1"); err != nil || st.State != contract.StateBooting {
		t.Errorf("after reopen: %v %v", st.State, err)
	}
	if st, err := s2.Get("n3"); err != nil || st.State != contract.StateUnknown {
		t.Errorf("n3: %v %v", st.State, err)
	}
	// Files that only look alike are not touched.
	keep := filepath.Join(dir, "notes.json.tmp-1")
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	if _, err := os.Stat(keep); err != nil {
		t.Error(err)
	}
}

func TestReinstall(t *testing.T) {
	s := open(t, t.TempDir())
	move(t, s, "n1", contract.StateBooting, contract.StateRegistered, contract.StateInstalling)
	if err := s.Update("n1", func(st *inventory.Status) error { st.Bytes = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	move(t, s, "n1", contract.StateDone)
	if err := s.Update("n2", func(st *inventory.Status) error {
		return Transition(st, contract.StateFailed, "disk /dev/vda missing", t0)
	}); err != nil {
		t.Fatal(err)
	}

	if err := s.Reinstall(); err == nil {
		t.Error("Reinstall() succeeded")
	}
	if err := s.Reinstall("all", "n1"); err == nil {
		t.Error(`Reinstall("all", "n1") succeeded`)
	}
	if err := s.Reinstall("all"); err != nil {
		t.Fatal(err)
	}
	got, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.Status{
		{Name: "n1", MAC: "52:54:00:00:00:01", IP: "10.0.0.11", State: contract.StateUnknown, Bytes: 42, LastReport: t0},
		{Name: "n2", MAC: "52:54:00:00:00:02", IP: "10.0.0.12", State: contract.StateUnknown, LastReport: t0},
		{Name: "n3", MAC: "52:54:00:00:00:03", IP: "10.0.0.13", State: contract.StateUnknown},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The reset cycle starts again.
	move(t, s, "n1", contract.StateBooting)
}

func TestReinstallSome(t *testing.T) {
	s := open(t, t.TempDir())
	for _, n := range []string{"n1", "n2", "n3"} {
		move(t, s, n, contract.StateBooting, contract.StateRegistered, contract.StateInstalling, contract.StateDone)
	}
	if err := s.Reinstall("n3", "n1", "n3"); err != nil {
		t.Fatal(err)
	}
	for name, local := range map[string]bool{"n1": false, "n2": true, "n3": false} {
		if st, err := s.Get(name); err != nil || st.LocalBoot != local {
			t.Errorf("%s: LocalBoot %v, want %v (%v)", name, st.LocalBoot, local, err)
		}
	}
}

func TestTransition(t *testing.T) {
	const (
		unknown    = contract.StateUnknown
		booting    = contract.StateBooting
		registered = contract.StateRegistered
		installing = contract.StateInstalling
		done       = contract.StateDone
		failed     = contract.StateFailed
	)
	all := []contract.State{unknown, booting, registered, installing, done, failed}
	legal := map[[2]contract.State]bool{
		{unknown, booting}: true, {booting, registered}: true, {registered, installing}: true,
		{installing, done}: true, {installing, failed}: true,
		{booting, booting}: true, {registered, registered}: true, {installing, installing}: true,
		{done, done}: true, {failed, failed}: true,
	}
	for _, from := range all {
		legal[[2]contract.State{from, booting}] = true
		legal[[2]contract.State{from, failed}] = true
	}
	for _, from := range all {
		for _, to := range all {
			t.Run(fmt.Sprintf("%s-%s", from, to), func(t *testing.T) {
				before := inventory.Status{Name: "n1", State: from, LocalBoot: from == done, Bytes: 7, Rate: 3, Reason: "old", Message: "m"}
				st := before
				err := Transition(&st, to, "why", t0)
				if !legal[[2]contract.State{from, to}] {
					if !errors.Is(err, ErrTransition) || !strings.Contains(err.Error(), string(from)+" → "+string(to)) {
						t.Errorf("got %v, want an illegal transition naming both states", err)
					}
					if diff := cmp.Diff(before, st); diff != "" {
						t.Errorf("changed on error (-before +after):\n%s", diff)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want := before
				want.State, want.LastReport = to, t0
				want.Reason, want.Message = "", "why"
				switch to {
				case done:
					want.LocalBoot = true
				case failed:
					want.LocalBoot, want.Reason, want.Message = false, "why", "m"
				case installing:
					if from != installing {
						want.Bytes, want.Rate = 0, 0
					}
				}
				if from != to {
					// A new state starts its first step; failed keeps
					// the step the node failed in.
					want.Step = map[contract.State]contract.Step{booting: contract.StepLoading, registered: contract.StepRegistered,
						installing: contract.StepReceiving, done: contract.StepBootloader}[to]
					want.StepSince = t0
				}
				if diff := cmp.Diff(want, st); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
	st := inventory.Status{}
	if err := Transition(&st, booting, "", time.Time{}); err != nil || st.State != booting || !st.LastReport.IsZero() {
		t.Errorf("from the zero Status: %v %+v", err, st)
	}
	if err := Transition(&st, "sleeping", "", t0); !errors.Is(err, ErrTransition) {
		t.Errorf("to an unknown state: %v", err)
	}
	// A done node that is reset keeps booting from disk.
	st = inventory.Status{State: done, LocalBoot: true}
	if err := Transition(&st, booting, "", t0); err != nil || !st.LocalBoot {
		t.Errorf("done → booting: %v LocalBoot %v", err, st.LocalBoot)
	}
}

// incr adds 1 to the node's Bytes n times.
func incr(s *Store, name string, n int) error {
	for range n {
		if err := s.Update(name, func(st *inventory.Status) error {
			st.Bytes++
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// Two Stores on one directory, used from several goroutines, lose no
// update; readers never see a torn file.
func TestConcurrentUpdate(t *testing.T) {
	dir := t.TempDir()
	a, b := open(t, dir), open(t, dir)
	const per = 50
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for _, s := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- incr(s, "n1", per)
		}()
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() { // a reader without the lock
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := b.Get("n1"); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := a.Get("n1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != 4*per {
		t.Errorf("Bytes %d, want %d: updates were lost", st.Bytes, 4*per)
	}
}

const helperEnv = "HERD_NODESTATE_HELPER_DIR"

// TestHelperProcess is not a test: TestCrossProcess runs the test binary
// with helperEnv set to make it a second process updating the store.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper for TestCrossProcess")
	}
	n, _ := strconv.Atoi(os.Getenv(helperEnv + "_N"))
	if err := incr(open(t, dir), "n1", n); err != nil {
		t.Fatal(err)
	}
}

// Two processes updating one directory lose no update (the flock).
func TestCrossProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	const per = 100
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, helperEnv+"_N="+strconv.Itoa(per))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	if err := incr(open(t, dir), "n1", per); err != nil {
		t.Error(err)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper: %v", err)
		}
	}
	st, err := open(t, dir).Get("n1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Bytes != 3*per {
		t.Errorf("Bytes %d, want %d: updates were lost", st.Bytes, 3*per)
	}
}

func TestSetStep(t *testing.T) {
	t1 := t0.Add(time.Minute)
	st := inventory.Status{}
	SetStep(&st, contract.StepReceiving, t0)
	SetStep(&st, contract.StepReceiving, t1) // repeated: keeps its start
	if st.Step != contract.StepReceiving || !st.StepSince.Equal(t0) {
		t.Errorf("repeated step: %s since %v, want receiving since %v", st.Step, st.StepSince, t0)
	}
	SetStep(&st, "", t1)
	if st.Step != contract.StepReceiving {
		t.Errorf("empty step changed it to %q", st.Step)
	}
	SetStep(&st, contract.StepVerifying, t1)
	if st.Step != contract.StepVerifying || !st.StepSince.Equal(t1) {
		t.Errorf("new step: %s since %v, want verifying since %v", st.Step, st.StepSince, t1)
	}
	before := time.Now()
	SetStep(&st, contract.StepBootloader, time.Time{})
	if st.StepSince.Before(before) {
		t.Errorf("zero now: since %v, want the wall clock", st.StepSince)
	}
}

func TestSighted(t *testing.T) {
	const (
		dhcp    = contract.StepDHCP
		loading = contract.StepLoading
		agentUp = contract.StepAgentUp
	)
	for _, tc := range []struct {
		name     string
		st       inventory.Status
		firmware bool
		want     contract.Step
	}{
		{"never heard of, firmware", inventory.Status{}, true, dhcp},
		{"never heard of, plain DHCP", inventory.Status{}, false, agentUp},
		{"failed node reset", inventory.Status{State: contract.StateFailed, Step: contract.StepReceiving}, true, dhcp},
		{"installing node reset", inventory.Status{State: contract.StateInstalling, Step: contract.StepReceiving}, true, dhcp},
		{"loading the installer over TFTP", inventory.Status{State: contract.StateBooting, Step: loading}, true, loading},
		{"the agent's DHCP", inventory.Status{State: contract.StateBooting, Step: loading}, false, agentUp},
		{"the agent renews its lease", inventory.Status{State: contract.StateInstalling, Step: contract.StepReceiving}, false, contract.StepReceiving},
		{"failed agent renews", inventory.Status{State: contract.StateFailed, Step: contract.StepBootloader}, false, contract.StepBootloader},
		{"done node's firmware", inventory.Status{State: contract.StateDone, LocalBoot: true, Step: contract.StepRebooting}, true, contract.StepDiskBoot},
		{"done node's system", inventory.Status{State: contract.StateDone, LocalBoot: true, Step: contract.StepDiskBoot}, false, contract.StepBootedDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			Sighted(&st, "dhcp x", tc.firmware, t0)
			if st.Step != tc.want || st.SeenBy != "dhcp x" || !st.Seen.Equal(t0) {
				t.Errorf("step %q, seen %v by %q; want step %q", st.Step, st.Seen, st.SeenBy, tc.want)
			}
			if st.State != tc.st.State || st.LocalBoot != tc.st.LocalBoot {
				t.Errorf("state changed: %+v", st)
			}
		})
	}
}

func TestRackAndReinstallStep(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, parse(t, strings.Replace(testInventory, "n2 10.0.0.12", "n2 10.0.0.12 rack=r7", 1)))
	if err != nil {
		t.Fatal(err)
	}
	move(t, s, "n2", contract.StateBooting, contract.StateRegistered)
	st, err := s.Get("n2")
	if err != nil || st.Rack != "r7" || st.Step != contract.StepRegistered || st.StepSince.IsZero() {
		t.Fatalf("n2: %+v %v, want rack r7, step registered with a time", st, err)
	}
	if err := s.Reinstall("n2"); err != nil {
		t.Fatal(err)
	}
	if st, _ = s.Get("n2"); st.Step != "" || !st.StepSince.IsZero() {
		t.Errorf("after reinstall: step %q since %v, want none", st.Step, st.StepSince)
	}
}
