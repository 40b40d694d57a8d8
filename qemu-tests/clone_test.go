//go:build qemu

package qemutests

import (
	"path/filepath"
	"regexp"
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

// TestCloneWholeDisk is the mission end to end: a golden disk image (built
// without root by herd image golden, captured sparse and compressed by
// herd image capture) goes through the ring to three VMs with blank disks.
// Each PXE-boots herd's agent, installs, verifies, customizes and reports
// done; herd switches it to local boot; it resets, boots its own disk and
// prints its own reservation's hostname and address and a machine-id of
// its own.
func TestCloneWholeDisk(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 3, DiskSize: 256 << 20})
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	t.Logf("herd image golden:\n%s", c.RunHerd(5*time.Minute, "image", "golden", "-o", golden))
	zst := golden + ".zst"
	t.Logf("herd image capture:\n%s", c.RunHerd(5*time.Minute, "image", "capture", golden, "-o", zst))
	t.Logf("herd image info:\n%s", c.RunHerd(2*time.Minute, "image", "info", zst))

	srv := c.Serve("--file", zst+" >> /dev/vda")
	vms, start := installAll(t, c, installTimeout)

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
}
