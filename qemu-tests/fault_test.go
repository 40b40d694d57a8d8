//go:build qemu

package qemutests

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
)

// Bounds of the fault scenarios under TCG (with those of the boot and
// clone scenarios).
const (
	// sessionOverTimeout: a kill to herd serve's "session over" (the
	// bypass, the survivors' writes and verdicts).
	sessionOverTimeout = 8 * time.Minute
	// refuseTimeout: registered to the agent's refusal of the sender.
	refuseTimeout = 3 * time.Minute
	// onceExitTimeout: herd serve --once ending after a session that
	// failed at set-up (its --report-wait is 10 s).
	onceExitTimeout = 3 * time.Minute
)

// goldenZst builds the golden disk image and captures it sparse and
// zstd-compressed, as TestCloneWholeDisk does, and returns the .zst and
// its size: the bytes the ring carries.
func goldenZst(t *testing.T, c *Cluster) (string, int64) {
	t.Helper()
	golden := filepath.Join(t.TempDir(), "golden.img")
	t.Logf("herd image golden:\n%s", c.RunHerd(5*time.Minute, "image", "golden", "-o", golden))
	zst := golden + ".zst"
	t.Logf("herd image capture:\n%s", c.RunHerd(5*time.Minute, "image", "capture", golden, "-o", zst))
	fi, err := os.Stat(zst)
	if err != nil {
		t.Fatal(err)
	}
	return zst, fi.Size()
}

// checkBooted waits for vm's installed system's line and checks that it
// is the node's own reservation and a machine-id no other node has (ids
// maps machine-ids to node names); then for the system's power-off.
func checkBooted(t *testing.T, vm *VM, ids map[string]string) {
	t.Helper()
	n := vm.Node
	line := vm.WaitFor(BootedRE.String(), bootTimeout)
	m := BootedRE.FindStringSubmatch(line)
	host, ip, id := m[1], m[2], m[3]
	if host != n.Name || ip != n.IP {
		t.Errorf("%s booted as host=%s ip=%s, want its reservation %s %s", n.Name, host, ip, n.Name, n.IP)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("%s: machine-id %q is not 32 hex digits", n.Name, id)
	}
	if other, dup := ids[id]; dup {
		t.Errorf("%s and %s share machine-id %s", other, n.Name, id)
	}
	ids[id] = n.Name
	if code := vm.WaitExit(time.Minute); code != 0 {
		t.Errorf("%s: QEMU exit %d after the installed system powered off", n.Name, code)
	}
}

// TestKilledNodeSecondChance is issue 6 on real machines: four VMs PXE-boot
// herd's agent and receive a whole-disk image through the ring; while they
// receive, the second node's QEMU is killed (the power cord pulled). Its
// upstream neighbour bypasses it, the other three install, report done and
// boot their own disks as themselves; herd serve names the killed node
// failed with a reason and keeps its install boot entry. Once the session
// is over, the killed machine is started again with the same (half
// written) disk: it PXE-boots the installer again, herd serve (without
// --once) gives it a session of its own, and it installs, boots its disk
// as itself, and herd serve ends with every node done (exit 0).
func TestKilledNodeSecondChance(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 4, DiskSize: 256 << 20})
	zst, total := goldenZst(t, c)
	t.Logf("the ring carries %d bytes (%.1f MiB)", total, float64(total)/(1<<20))

	srv := c.Serve("-v", "--file", zst+" >> /dev/vda")
	start := time.Now()
	phase := start
	logPhase := func(format string, args ...any) {
		t.Helper()
		now := time.Now()
		t.Logf("%6.1fs (+%5.1fs): "+format, append([]any{now.Sub(start).Seconds(), now.Sub(phase).Seconds()}, args...)...)
		phase = now
	}
	vms := c.StartAll()
	for _, vm := range vms {
		vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout)
	}
	logPhase("all %d nodes registered", len(vms))

	// The victim is in the middle of the chain: n1 must bypass it to feed
	// n3 and n4.
	victim := vms[1]
	line := victim.WaitFor(`Transfered MB: [1-9][0-9]*,`, installTimeout)
	if regexp.MustCompile(`session \S+ done`).MatchString(victim.Console()) {
		t.Fatalf("%s finished its transfer before the kill (%q): the kill must land mid-transfer", victim.Node.Name, line)
	}
	victim.Kill()
	logPhase("killed %s (QEMU pid %d) while it received: %q", victim.Node.Name, victim.PID(), line)

	survivors := []*VM{vms[0], vms[2], vms[3]}
	for _, vm := range survivors {
		vm.WaitFor(`== herd: report done done`, installTimeout)
	}
	logPhase("n1, n3, n4 installed and reported done")
	srv.WaitErrors(`herd serve: session over`, sessionOverTimeout)
	logPhase("herd serve's session is over")
	out := srv.Output()
	t.Logf("herd serve's summary:\n%s", out)
	for _, l := range regexp.MustCompile(`(?m)^node \S+: bypassed: .*$`).FindAllString(srv.Errors(), -1) {
		t.Logf("herd serve: %s", l)
	}
	for _, vm := range survivors {
		n := vm.Node
		if st, b, ok, _, found := SummaryRow(out, n.Name); !found || st != "done" || !ok || b != total {
			t.Errorf("herd serve's summary: %s is %q, %d bytes, verified %v; want done, %d bytes, verified", n.Name, st, b, ok, total)
		}
		if st := c.Show(n.Name); st.State != contract.StateDone || !st.LocalBoot {
			t.Errorf("herd nodes show %s: state %s, local boot %v; want done, local", n.Name, st.State, st.LocalBoot)
		}
	}
	failRE := regexp.MustCompile(`^(reset|timeout)\b|lost contact`)
	vn := victim.Node.Name
	st, b, ok, reason, found := SummaryRow(out, vn)
	switch {
	case !found:
		t.Errorf("herd serve's summary has no line for the killed %s", vn)
	case st != "failed" || ok || !failRE.MatchString(reason):
		t.Errorf("herd serve's summary: killed %s is %q, verified %v, reason %q; want failed, not verified, a reset/timeout/lost-contact reason", vn, st, ok, reason)
	case b <= 0 || b >= total:
		t.Errorf("herd serve's summary: killed %s received %d of %d bytes; want some but not all (killed mid-transfer)", vn, b, total)
	}
	if !regexp.MustCompile(`(?m)^FAILED: 1 of 4 node\(s\): ` + vn + `$`).MatchString(out) {
		t.Errorf("herd serve's summary does not end with FAILED: 1 of 4 node(s): %s", vn)
	}
	if s := c.Show(vn); s.State != contract.StateFailed || s.LocalBoot || !failRE.MatchString(s.Reason) {
		t.Errorf("herd nodes show %s after the session: state %s, local boot %v, reason %q; want failed, install boot, a reset/timeout reason", vn, s.State, s.LocalBoot, s.Reason)
	} else {
		t.Logf("herd nodes show %s: %s, install boot, reason %q", vn, s.State, s.Reason)
	}

	ids := map[string]string{}
	for _, vm := range survivors {
		checkBooted(t, vm, ids)
	}
	logPhase("n1, n3, n4 booted their own disks")
	if t.Failed() {
		t.FailNow()
	}

	// Second chance: the same machine, the same disk, reset.
	again := c.RestartVM(victim)
	mac := regexp.QuoteMeta(again.Node.MAC)
	again.WaitFor(`herd: installing `+vn+` \(`+mac+`\)`, firmwareTimeout)
	again.WaitFor(`registered as `+vn+` `, agentTimeout+registerTimeout)
	logPhase("%s PXE-booted the installer again and registered", vn)
	srv.WaitOutput(`^AGAIN: 1 node\(s\) registered: `+vn+`$`, registerTimeout)
	again.WaitFor(`== herd: report done done`, installTimeout)
	srv.WaitOutput(`^AGAIN: `+vn+` installed and verified$`, time.Minute)
	logPhase("herd serve's AGAIN session installed %s; it reported done", vn)
	out = srv.Output()
	second := out[max(strings.Index(out, "AGAIN: 1 node(s) registered"), 0):]
	if st, b, ok, _, found := SummaryRow(second, vn); !found || st != "done" || !ok || b != total {
		t.Errorf("the AGAIN session's summary: %s is %q, %d bytes, verified %v; want done, %d bytes, verified:\n%s", vn, st, b, ok, total, second)
	}
	checkBooted(t, again, ids)
	logPhase("%s booted its own disk", vn)

	for _, n := range c.Nodes {
		if s := c.Show(n.Name); s.State != contract.StateDone || !s.LocalBoot {
			t.Errorf("herd nodes show %s at the end: state %s, local boot %v; want done, local", n.Name, s.State, s.LocalBoot)
		}
	}
	t.Logf("herd serve:\n%s", srv.Output())
	// Interrupted once every node is done (its second chance included):
	// exit 0.
	if code := srv.Stop(); code != 0 {
		t.Errorf("herd serve exit %d when stopped with every node done, want 0:\n%s", code, lastLines(srv.Errors(), 20))
	}
	logPhase("herd serve stopped")
}

// TestWrongKeyWritesNothing: the nodes boot with a ring key on their kernel
// command line (herd.key=) but herd serve has none. Each node refuses the
// sender at the handshake, herd serve names every node failed with an
// authentication reason and exits 1, no node is done, and no disk has a
// single byte written: each is still all zeros.
func TestWrongKeyWritesNothing(t *testing.T) {
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	key := base64.RawURLEncoding.EncodeToString(raw) // 24 printable characters, no spaces
	c := NewCluster(t, Options{Nodes: 2, KernelArgs: "herd.key=" + key})
	// What would be written if a node accepted the sender: no zeros in it.
	payload := filepath.Join(t.TempDir(), "payload.bin")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i%251) + 1
	}
	if err := os.WriteFile(payload, data, 0o644); err != nil {
		t.Fatal(err)
	}

	srv := c.Serve("-v", "--file", payload+" > /dev/vda", "--once", "--report-wait", "10s")
	start := time.Now()
	vms := c.StartAll()
	for _, vm := range vms {
		vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout)
	}
	t.Logf("%.1fs: both nodes registered", time.Since(start).Seconds())
	for _, vm := range vms {
		line := vm.WaitFor(`ignored: .*auth failed: the peer has no key.*; still waiting for a sender`, refuseTimeout)
		t.Logf("%s refused the sender: %s", vm.Node.Name, line)
	}
	code := srv.Wait(onceExitTimeout)
	t.Logf("%.1fs: herd serve --once exited %d", time.Since(start).Seconds(), code)
	out := srv.Output()
	t.Logf("herd serve:\n%s", out)
	if code != 1 {
		t.Errorf("herd serve exit %d after every node refused it, want 1", code)
	}
	for _, n := range c.Nodes {
		st, b, ok, reason, found := SummaryRow(out, n.Name)
		if !found || st != "failed" || ok || b != 0 || !strings.HasPrefix(reason, "auth failed") {
			t.Errorf("herd serve's summary: %s is %q, %d bytes, verified %v, reason %q; want failed, 0 bytes, not verified, \"auth failed: ...\"", n.Name, st, b, ok, reason)
		}
		s := c.Show(n.Name)
		if s.State != contract.StateFailed || s.LocalBoot || !strings.Contains(s.Reason, "auth failed") {
			t.Errorf("herd nodes show %s: state %s, local boot %v, reason %q; want failed, install boot, an auth failed reason", n.Name, s.State, s.LocalBoot, s.Reason)
		}
	}
	if !regexp.MustCompile(`(?m)^FAILED: 2 of 2 node\(s\): n1,n2$`).MatchString(out) {
		t.Errorf("herd serve's summary does not say FAILED: 2 of 2 node(s): n1,n2")
	}

	for _, vm := range vms {
		vm.Kill()
		con := vm.Console()
		for _, bad := range []string{`session \S+ from `, `Transfered MB`, `== herd: report done`} {
			if l := regexp.MustCompile(`(?m)^.*` + bad + `.*$`).FindString(con); l != "" {
				t.Errorf("%s took the session from a sender without the key: %q", vm.Node.Name, l)
			}
		}
		off, err := vm.Node.FirstNonZero()
		switch {
		case err != nil:
			t.Errorf("%s: read its disk: %v", vm.Node.Name, err)
		case off >= 0:
			t.Errorf("%s: its disk %s has a byte written at offset %d; want every byte zero", vm.Node.Name, vm.Node.Disk, off)
		default:
			t.Logf("%s: disk %s: every byte is zero", vm.Node.Name, vm.Node.Disk)
		}
	}
}
