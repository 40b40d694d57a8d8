//go:build qemu

package qemutests

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
)

// Bounds of the clone scenario under TCG.
const (
	installTimeout = 6 * time.Minute // registered to "report done"
	bootTimeout    = 5 * time.Minute // the reboot to the installed system's line
)

// installAll starts every node's VM and waits until each has registered,
// then reported done and begun its reboot (install bounds the second
// wait per node); it logs when, counted from the start it returns.
func installAll(t *testing.T, c *Cluster, install time.Duration) ([]*VM, time.Time) {
	t.Helper()
	start := time.Now()
	vms := c.StartAll()
	for _, vm := range vms {
		vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout)
	}
	t.Logf("%.1fs: all %d nodes registered", time.Since(start).Seconds(), len(vms))
	for _, vm := range vms {
		vm.WaitFor(`== herd: report done done`, install)
		// The agent drains the console before it reboots: its last step
		// is on the console before the firmware starts again.
		vm.WaitFor(`== herd: reboot`, time.Minute)
	}
	t.Logf("%.1fs: all installed and reported done", time.Since(start).Seconds())
	return vms, start
}

// bmcRegisterTimeout is herd serve --register-timeout in the hands-off
// scenario: nodes register about 25s after their power-on under TCG.
const bmcRegisterTimeout = 75 * time.Second

// TestCloneWholeDisk is the mission end to end, hands off: a golden disk
// image (built without root by herd image golden, captured sparse and
// compressed by herd image capture) goes through the ring to three VMs
// with blank disks, and nobody presses a button. Each node has a real BMC
// (OpenIPMI's ipmi_sim, over RMCP+ on the boot network; its chassis is the
// node's QEMU) and starts powered off. herd serve --power sets each to
// boot from the network and powers it on. n2 hangs before its firmware
// runs (its CPU held): herd power-cycles it once --register-timeout has
// passed, and it installs with the others. Each PXE-boots herd's agent,
// installs, verifies, customizes and reports done; herd switches it to
// local boot and sets its BMC's boot device to the disk; it resets, boots
// its own disk and prints its own reservation's hostname and address and a
// machine-id of its own. ipmitool, a second IPMI implementation,
// cross-checks what herd set. The test never starts, stops or resets a VM.
func TestCloneWholeDisk(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 3, DiskSize: 256 << 20, BMC: true})
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	t.Logf("herd image golden:\n%s", c.RunHerd(5*time.Minute, "image", "golden", "-o", golden))
	zst := golden + ".zst"
	t.Logf("herd image capture:\n%s", c.RunHerd(5*time.Minute, "image", "capture", golden, "-o", zst))
	t.Logf("herd image info:\n%s", c.RunHerd(2*time.Minute, "image", "info", zst))

	const hung = "n2"
	c.HoldCPU(hung)
	start := time.Now()
	srv := c.Serve("--file", zst+" >> /dev/vda", "--power", "--bmc-password-file", c.BMCPasswordFile,
		"--register-timeout", bmcRegisterTimeout.String())
	vms := make([]*VM, len(c.Nodes))
	for i, n := range c.Nodes {
		vms[i] = c.WaitVM(n.Name, 1, time.Minute)
	}
	t.Logf("%.1fs: herd powered every node on through its BMC", time.Since(start).Seconds())
	line := srv.WaitErrors(hung+` has not registered within `+bmcRegisterTimeout.String()+`: power cycle 1 of 2`, bmcRegisterTimeout+time.Minute)
	t.Logf("%.1fs: %s", time.Since(start).Seconds(), line)
	for i, n := range c.Nodes {
		if n.Name == hung {
			vms[i] = c.WaitVM(hung, 2, time.Minute)
		}
	}
	for _, vm := range vms {
		vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout)
	}
	t.Logf("%.1fs: all %d nodes registered", time.Since(start).Seconds(), len(vms))
	for _, vm := range vms {
		vm.WaitFor(`== herd: report done done`, installTimeout)
		vm.WaitFor(`== herd: reboot`, time.Minute)
	}
	t.Logf("%.1fs: all installed and reported done", time.Since(start).Seconds())
	ids := map[string]string{}
	for _, vm := range vms {
		checkBooted(t, vm, ids)
	}
	t.Logf("%.1fs: all booted their own disks", time.Since(start).Seconds())

	out := srv.Output()
	for _, n := range c.Nodes {
		if !regexp.MustCompile(`(?m)^` + n.Name + `\s+done\s+\d+\s+\S+\s+\S+\s+yes`).MatchString(out) {
			t.Errorf("herd serve's summary does not show %s done and verified:\n%s", n.Name, out)
		}
		st := c.Show(n.Name)
		if st.State != contract.StateDone || !st.LocalBoot {
			t.Errorf("herd nodes show %s: state %s, local boot %v; want done, local", n.Name, st.State, st.LocalBoot)
		}
	}
	t.Logf("herd serve:\n%s", out)
	// Interrupted after a session where every node verified: exit 0.
	if code := srv.Stop(); code != 0 {
		t.Errorf("herd serve exit %d when stopped after a clean session:\n%s", code, srv.Errors())
	}

	// What each chassis did: herd set the network boot and powered it on
	// (n2: on with its CPU held, off and on again: the cycle), set the
	// disk once it verified; nobody reset it.
	for _, n := range c.Nodes {
		ev := strings.Join(c.BMCEvents(n.Name), ", ")
		t.Logf("%s: BMC: %s", n.Name, ev)
		want := `^boot pxe, power on, .*boot default$`
		if n.Name == hung {
			want = `^boot pxe, power on \(CPU held\), boot pxe, power off, power on, .*boot default$`
		}
		if !regexp.MustCompile(want).MatchString(ev) {
			t.Errorf("%s: its chassis did %q, want /%s/", n.Name, ev, want)
		}
		if strings.Contains(ev, "reset") {
			t.Errorf("%s: its chassis was reset (%s): herd powers nodes on, and the test presses nothing", n.Name, ev)
		}
		// ipmitool reads back what herd set: the disk. (ipmi_sim keeps
		// only the device of the boot flags, not their valid, persistent
		// or EFI bits: after ipmitool's own "bootdev disk
		// options=persistent" it reads back "only next boot" too.)
		bp, err := c.IPMItool(n.Name, "chassis", "bootparam", "get", "5")
		if err != nil {
			t.Errorf("%s: %v\n%s", n.Name, err, bp)
		} else if !strings.Contains(bp, "Boot Device Selector : Force Boot from default Hard-Drive") {
			t.Errorf("%s: ipmitool chassis bootparam get 5 does not show the disk:\n%s", n.Name, bp)
		}
	}
	// herd power reads the same through its own IPMI client: the
	// installed systems powered off at the end of their boot.
	st := c.RunHerdNS(time.Minute, "power", "status", "all", "--inventory", c.Inventory, "--bmc-password-file", c.BMCPasswordFile)
	for _, n := range c.Nodes {
		if !strings.Contains(st, n.Name+": off\n") {
			t.Errorf("herd power status: %s not off:\n%s", n.Name, st)
		}
	}
}
