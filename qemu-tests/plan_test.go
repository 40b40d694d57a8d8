//go:build qemu

package qemutests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
)

// TestPlanInstall is a file-level install, as ka-deploy did it: two VMs
// with blank disks PXE-boot herd's agent, which fetches the kickstart plan
// herd serve gives every node, partitions the disk, makes an ext4 root
// and mounts it; the ring carries the golden root as a cooked .tar.zst
// (only the used data) straight into the mounted filesystem; the agent
// writes fstab by UUID, customizes the system, installs extlinux with
// root=UUID= of the new filesystem, runs %post in a chroot with the
// node's identity, and reports done. Each VM then boots its own disk
// through extlinux and prints its own hostname.
func TestPlanInstall(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 2, DiskSize: 256 << 20, NodeAttrs: "plan=compute.ks"})
	dir := t.TempDir()
	tarball := filepath.Join(dir, "root.tar.zst")
	t.Logf("herd image golden --root-tar:\n%s", c.RunHerd(5*time.Minute, "image", "golden", "--root-tar", tarball))
	fi, err := os.Stat(tarball)
	if err != nil {
		t.Fatal(err)
	}
	// The plan lives beside the inventory (plan=compute.ks).
	plan := filepath.Join(filepath.Dir(c.Inventory), "compute.ks")
	err = os.WriteFile(plan, []byte(`# herd qemu-tests: a compute node from a blank disk
zerombr
clearpart --all --initlabel
part / --fstype=ext4 --size=96 --grow --label=root
part swap --size=16
bootloader --location=mbr --append="console=ttyS0,115200 panic=10" --timeout=1
image root.tar.zst --to /
%post
echo "herd-post host=$HOSTNAME ip=$IPADDR mac=$MAC root=$(cat /etc/hostname)"
%end
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("herd plan check:\n%s", c.RunHerd(time.Minute, "plan", "check", plan))

	srv := c.Serve("--file", tarball+" >> /")
	start := time.Now()
	vms := c.StartAll()
	for _, vm := range vms {
		vm.WaitFor(`install plan compute.ks: 2 partition\(s\), 1 image\(s\), 0 %pre, 1 %post`, agentTimeout+registerTimeout)
		vm.WaitFor(`== herd: prepare the disks \(plan compute.ks\) done`, installTimeout)
		vm.WaitFor(`registered as `+vm.Node.Name+` `, registerTimeout)
	}
	t.Logf("%.1fs: all %d nodes prepared their disks and registered; the root tarball is %.1f MiB", time.Since(start).Seconds(), len(vms), float64(fi.Size())/(1<<20))
	for _, vm := range vms {
		n := vm.Node
		line := vm.WaitFor(`UUID=\S+\t/\text4\t`, installTimeout)
		rootUUID := regexp.MustCompile(`UUID=(\S+)`).FindStringSubmatch(line)[1]
		vm.WaitFor(`extlinux: .*root=UUID=`+regexp.QuoteMeta(rootUUID), installTimeout)
		vm.WaitFor(`%post \(line 8\): herd-post host=`+n.Name+` ip=`+regexp.QuoteMeta(n.IP)+` mac=`+n.MAC+` root=`+n.Name+`\b`, installTimeout)
		vm.WaitFor(`== herd: report done done`, installTimeout)
	}
	t.Logf("%.1fs: all installed by the plan and reported done", time.Since(start).Seconds())

	ids := map[string]string{}
	for _, vm := range vms {
		// The installed system's kernel comes up from the disk through
		// extlinux (not the network: the node's boot entry is local now).
		vm.WaitFor(`Linux version `, bootTimeout)
		checkBooted(t, vm, ids)
	}
	t.Logf("%.1fs: all booted their own disks", time.Since(start).Seconds())

	out := srv.Output()
	for _, n := range c.Nodes {
		if state, _, verified, reason, ok := SummaryRow(out, n.Name); !ok || state != "done" || !verified {
			t.Errorf("summary row of %s: %s verified=%v %s (found %v):\n%s", n.Name, state, verified, reason, ok, out)
		}
		st := c.Show(n.Name)
		if st.State != contract.StateDone || !st.LocalBoot {
			t.Errorf("%s: state %s, local boot %v", n.Name, st.State, st.LocalBoot)
		}
		if want := fmt.Sprintf("herd-post host=%s", n.Name); !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(st.Message) {
			t.Errorf("%s: the report lacks the %%post output %q: %q", n.Name, want, st.Message)
		}
	}
	if code := srv.Stop(); code != 0 {
		t.Errorf("herd serve exit %d:\n%s", code, srv.Errors())
	}
}
