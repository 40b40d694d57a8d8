//go:build qemu

package qemutests

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/imagebuilder/diskimage"
)

// Bounds of the Debian scenarios under TCG (four VMs on two cores).
const (
	debianBuildTimeout   = 20 * time.Minute // herd image build, when not cached
	debianInstallTimeout = 12 * time.Minute // registered to "report done"
	debianBootTimeout    = 10 * time.Minute // firmware to the report's last line
)

// reportScript runs in the installed Debian as herd-report.service
// (Type=simple, so that boot finishes while it waits for it): once the
// system has started, it prints what the node says about itself on the
// console, one "herd-report KEY=VALUE..." line per topic, then
// "herd-report end".
const reportScript = `#!/bin/sh
# herd qemu-tests: the installed node's own view of itself.
state=$(systemctl is-system-running --wait 2>/dev/null)
say() { echo "herd-report $*" >/dev/console; }
say host=$(hostname) ip=$(ip -4 -o addr show scope global | awk '{print $4}' | paste -sd, -)
say machine-id=$(cat /etc/machine-id) dbus-id=$(cat /var/lib/dbus/machine-id 2>/dev/null)
say state=$state failed=$(systemctl list-units --failed --plain --no-legend | awk '{print $1}' | paste -sd, -)
say root-uuid=$(findmnt -n -o UUID /) fstab-root=$(awk '$2=="/"{print $1}' /etc/fstab) cmdline-root=$(sed -n 's/.*root=\([^ ]*\).*/\1/p' /proc/cmdline)
say sshd=$(systemctl is-active ssh) ed25519=$(awk '{print $2}' /etc/ssh/ssh_host_ed25519_key.pub)
say firmware=$(test -d /sys/firmware/efi && echo uefi || echo bios) bootcurrent=$(efibootmgr 2>/dev/null | sed -n 's/^BootCurrent: //p')
say end
`

// reportUnit starts reportScript after boot.
const reportUnit = `[Unit]
Description=herd qemu-tests: report this node's identity on the console
After=multi-user.target ssh.service systemd-networkd-wait-online.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/herd-report

[Install]
WantedBy=multi-user.target
`

// reportHook is the --hook of the test's image build: it installs the
// report script and unit into the image's root ("$1") and enables the
// unit. The files travel inside the hook, base64-encoded, so that the
// build's cache key changes when they do.
func reportHook() string {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return fmt.Sprintf(`mkdir -p "$1/usr/local/sbin" "$1/etc/systemd/system/multi-user.target.wants" && `+
		`echo %s | base64 -d > "$1/usr/local/sbin/herd-report" && chmod 0755 "$1/usr/local/sbin/herd-report" && `+
		`echo %s | base64 -d > "$1/etc/systemd/system/herd-report.service" && `+
		`ln -sf /etc/systemd/system/herd-report.service "$1/etc/systemd/system/multi-user.target.wants/herd-report.service"`,
		enc(reportScript), enc(reportUnit))
}

// debianImage builds (or takes from the cache) the Debian 12 golden image
// with the report unit: herd image build, as an administrator runs it.
// The cache is $HERD_IMAGE_CACHE, else herd's default, so that the demo,
// the tests and later runs share one build.
func debianImage(t *testing.T, c *Cluster) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "debian.img")
	start := time.Now()
	out := c.RunHerd(debianBuildTimeout, append([]string{"image", "build", "-o", img}, debianBuildArgs()...)...)
	t.Logf("herd image build (%.0fs):\n%s", time.Since(start).Seconds(), lastLines(out, 15))
	return img
}

// report is what a node's herd-report lines say.
type report map[string]string

var reportRE = regexp.MustCompile(`herd-report (.*)`)

// waitReport reads the node's next herd-report block, up to "end".
func waitReport(t *testing.T, vm *VM, d time.Duration) report {
	t.Helper()
	r := report{}
	deadline := time.Now().Add(d)
	for {
		line := vm.WaitFor(`herd-report `, time.Until(deadline))
		m := reportRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if strings.TrimSpace(m[1]) == "end" {
			return r
		}
		for _, kv := range strings.Fields(m[1]) {
			k, v, _ := strings.Cut(kv, "=")
			r[k] = v
		}
	}
}

// goldenKey reads /etc/ssh/ssh_host_ed25519_key.pub from the image's root
// filesystem (its GPT's Linux filesystem partition) with debugfs on a
// read-only loop device: nothing is mounted.
func goldenKey(t *testing.T, img string) string {
	t.Helper()
	info, err := diskimage.InspectHead(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	root, ok := info.GPT.Find(diskimage.GUIDLinuxFilesystem)
	if !ok {
		t.Fatalf("%s has no GPT with a Linux filesystem partition (%s)", img, info.NoGPT)
	}
	loop, err := exec.Command("losetup", "--find", "--show", "--read-only", "--offset", fmt.Sprint(root.Offset()), "--sizelimit", fmt.Sprint(root.Size()), img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(loop))
	defer exec.Command("losetup", "-d", dev).Run()
	pub, err := exec.Command("debugfs", "-R", "cat /etc/ssh/ssh_host_ed25519_key.pub", dev).Output()
	if err != nil {
		t.Fatalf("debugfs %s: %v", dev, err)
	}
	f := strings.Fields(string(pub))
	if len(f) < 2 {
		t.Fatalf("the golden image's ed25519 host key: %q", pub)
	}
	return f[1]
}

// keyscan asks the node's sshd for its ed25519 host key, from the test's
// namespace.
func keyscan(t *testing.T, c *Cluster, ip string) string {
	t.Helper()
	// -T bounds ssh-keyscan's wait for the node.
	out, err := c.NS.Command("ssh-keyscan", "-T", "20", "-t", "ed25519", ip).Output()
	if err != nil {
		t.Errorf("ssh-keyscan %s: %v", ip, err)
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == "ssh-ed25519" {
			return f[2]
		}
	}
	t.Errorf("ssh-keyscan %s: no ed25519 key in %q", ip, out)
	return ""
}

// checkReport asserts what a booted node says about itself.
func checkReport(t *testing.T, n Node, r report, golden string) {
	t.Helper()
	if r["host"] != n.Name {
		t.Errorf("%s: hostname %q, want its reservation's %s", n.Name, r["host"], n.Name)
	}
	if !strings.HasPrefix(r["ip"], n.IP+"/") {
		t.Errorf("%s: address %q, want its reservation's %s", n.Name, r["ip"], n.IP)
	}
	if r["state"] != "running" {
		t.Errorf("%s: systemctl is-system-running says %q; failed units: %s", n.Name, r["state"], r["failed"])
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(r["machine-id"]) {
		t.Errorf("%s: machine-id %q", n.Name, r["machine-id"])
	}
	if u := r["root-uuid"]; u == "" || r["fstab-root"] != "UUID="+u || r["cmdline-root"] != "UUID="+u {
		t.Errorf("%s: root filesystem UUID %q, fstab's / %q, kernel root= %q: want all the same UUID", n.Name, u, r["fstab-root"], r["cmdline-root"])
	}
	if r["sshd"] != "active" {
		t.Errorf("%s: ssh.service is %q", n.Name, r["sshd"])
	}
	if r["ed25519"] == "" || r["ed25519"] == golden {
		t.Errorf("%s: ed25519 host key %q is the golden image's", n.Name, r["ed25519"])
	}
	want := "bios"
	if n.Firmware.UEFI() {
		want = "uefi"
	}
	if r["firmware"] != want {
		t.Errorf("%s: booted by %q, want %s", n.Name, r["firmware"], want)
	}
}

// TestDebianMixedRack: a BIOS node and two UEFI nodes (one through OVMF's
// own PXE, one through iPXE's EFI ROM) clone a Debian 12 image made by
// herd image build (GPT: BIOS boot partition, ESP, root; GRUB for both)
// through the ring, and boot it from their own disks to a running system.
// Every check reads the node itself: its console (a unit of the test's
// image) and its sshd (ssh-keyscan from the namespace). Then every node
// is reset: herd's script exits to the disk, and the node boots Debian
// again with the same identity.
func TestDebianMixedRack(t *testing.T) {
	// One node per way to boot (a second BIOS node cost a quarter of the
	// scenario's time under TCG and showed nothing the first does not:
	// TestCloneWholeDisk rings BIOS nodes together).
	fw := []Firmware{BIOS, UEFIPXE, UEFIiPXE}
	c := NewCluster(t, Options{Nodes: len(fw), DiskSize: 3 << 30, MemoryMiB: 1024,
		Firmware: func(i int) Firmware { return fw[i] }})
	img := debianImage(t, c)
	golden := goldenKey(t, img)
	// As an administrator sends it: captured sparse and compressed, each
	// node decoding it as it writes (only the data crosses the ring).
	zst := img + ".zst"
	t.Logf("herd image capture:\n%s", c.RunHerd(5*time.Minute, "image", "capture", img, "-o", zst))
	t.Logf("herd image info:\n%s", c.RunHerd(2*time.Minute, "image", "info", zst))

	srv := c.Serve("--file", zst+" >> /dev/vda")
	vms, start := installAll(t, c, debianInstallTimeout)
	first := map[string]report{}
	ids := map[string]string{}
	keys := map[string]string{}
	for _, vm := range vms {
		r := waitReport(t, vm, debianBootTimeout)
		t.Logf("%.1fs: %s (%s) booted Debian: %v", time.Since(start).Seconds(), vm.Node.Name, vm.Node.Firmware, r)
		checkReport(t, vm.Node, r, golden)
		if other, dup := ids[r["machine-id"]]; dup {
			t.Errorf("%s and %s share machine-id %s", other, vm.Node.Name, r["machine-id"])
		}
		ids[r["machine-id"]] = vm.Node.Name
		k := keyscan(t, c, vm.Node.IP)
		if k != r["ed25519"] {
			t.Errorf("%s: sshd offers ed25519 key %q, the node's file says %q", vm.Node.Name, k, r["ed25519"])
		}
		if other, dup := keys[k]; dup {
			t.Errorf("%s and %s share the ed25519 host key", other, vm.Node.Name)
		}
		keys[k] = vm.Node.Name
		first[vm.Node.Name] = r
	}
	t.Logf("%.1fs: every node runs its own Debian", time.Since(start).Seconds())
	out := srv.Output()
	for _, n := range c.Nodes {
		if st := c.Show(n.Name); st.State != contract.StateDone || !st.LocalBoot {
			t.Errorf("herd nodes show %s: state %s, local boot %v; want done, local", n.Name, st.State, st.LocalBoot)
		}
	}
	t.Logf("herd serve:\n%s", lastLines(out, 12))

	// Reset the UEFI nodes (BIOS's exit to the disk is TestLocalBootFromDisk's):
	// network first, herd's script exits, and the firmware goes on to the
	// agent's Boot#### entry; the node is the same machine as before.
	var uefi []*VM
	for _, vm := range vms {
		if vm.Node.Firmware.UEFI() {
			vm.Mark()
			vm.Reset()
			uefi = append(uefi, vm)
		}
	}
	for _, vm := range uefi {
		vm.WaitFor(`boots from its disk`, debianBootTimeout)
		vm.WaitFor(`BdsDxe: loading Boot[0-9A-F]{4} "herd `+vm.Node.Name+`" from HD\(2,GPT,.*\\EFI\\debian\\grubx64\.efi`, debianBootTimeout)
		r := waitReport(t, vm, debianBootTimeout)
		if r["machine-id"] != first[vm.Node.Name]["machine-id"] || r["ed25519"] != first[vm.Node.Name]["ed25519"] || r["host"] != vm.Node.Name {
			t.Errorf("%s after a reset: %v, before %v: want the same machine", vm.Node.Name, r, first[vm.Node.Name])
		}
		if r["state"] != "running" {
			t.Errorf("%s after a reset: %s; failed units %s", vm.Node.Name, r["state"], r["failed"])
		}
	}
	t.Logf("%.1fs: the UEFI nodes booted their disks again after a reset, through herd's exit and their Boot#### entries", time.Since(start).Seconds())

	// herd nodes reinstall: at its next reset the node is back in the
	// installer, though its disk and its Boot#### entry boot Debian.
	vm := uefi[0]
	t.Logf("herd nodes reinstall %s:\n%s", vm.Node.Name, c.HerdNodes("reinstall", vm.Node.Name))
	vm.Mark()
	vm.Reset()
	vm.WaitFor(`herd: installing `+vm.Node.Name+` \(`, debianBootTimeout)
	vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout)
	t.Logf("%.1fs: %s is back in the installer after herd nodes reinstall and a reset", time.Since(start).Seconds(), vm.Node.Name)
}

// TestDebianPlanUEFI: the kickstart path on a UEFI node and a BIOS node
// with one plan. Each partitions its blank disk (GPT with an ESP on UEFI,
// dos on BIOS), makes the filesystems, receives the Debian root as a
// cooked tarball from the same herd image build, writes fstab, installs
// the image's own GRUB (x86_64-efi to the ESP with a Boot#### entry read
// back; i386-pc to the MBR) and boots Debian from its disk.
func TestDebianPlanUEFI(t *testing.T) {
	fw := []Firmware{UEFIPXE, BIOS}
	c := NewCluster(t, Options{Nodes: len(fw), DiskSize: 3 << 30, NodeAttrs: "plan=debian.ks",
		Firmware: func(i int) Firmware { return fw[i] }})
	tarball := debianRootTar(t, c)
	plan := filepath.Join(filepath.Dir(c.Inventory), "debian.ks")
	err := os.WriteFile(plan, []byte(`# herd qemu-tests: Debian from a blank disk, on UEFI and BIOS
zerombr
clearpart --all --initlabel
part /boot/efi --fstype=efi --size=100
part / --fstype=ext4 --size=1800 --grow --label=root
bootloader --location=mbr --append="console=ttyS0,115200" --timeout=1
image root.tar.zst --to /
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("herd plan check:\n%s", c.RunHerd(time.Minute, "plan", "check", plan))
	srv := c.Serve("--file", tarball+" >> /")
	start := time.Now()
	vms := c.StartAll()
	for _, vm := range vms {
		vm.WaitFor(`registered as `+vm.Node.Name+` `, agentTimeout+registerTimeout+installTimeout)
	}
	t.Logf("%.1fs: both nodes prepared their disks and registered", time.Since(start).Seconds())
	for _, vm := range vms {
		if vm.Node.Firmware.UEFI() {
			vm.WaitFor(`Boot[0-9A-F]{4} "herd `+vm.Node.Name+`" → \\EFI\\BOOT\\BOOTX64\.EFI on /dev/vda partition 1; BootOrder .*\(read back\)`, debianInstallTimeout)
		}
		vm.WaitFor(`== herd: report done done`, debianInstallTimeout)
	}
	t.Logf("%.1fs: both installed by the plan", time.Since(start).Seconds())
	for _, vm := range vms {
		r := waitReport(t, vm, debianBootTimeout)
		t.Logf("%.1fs: %s (%s) booted Debian: %v", time.Since(start).Seconds(), vm.Node.Name, vm.Node.Firmware, r)
		checkReport(t, vm.Node, r, "")
		if vm.Node.Firmware.UEFI() && r["bootcurrent"] == "" {
			t.Errorf("%s: efibootmgr shows no BootCurrent", vm.Node.Name)
		}
	}
	for _, n := range c.Nodes {
		if st := c.Show(n.Name); st.State != contract.StateDone || !st.LocalBoot {
			t.Errorf("%s: state %s, local boot %v", n.Name, st.State, st.LocalBoot)
		}
	}
	if code := srv.Stop(); code != 0 {
		t.Errorf("herd serve exit %d:\n%s", code, srv.Errors())
	}
}

// TestUEFINoESP: the demo's golden image (MBR, syslinux, no ESP) sent to
// a UEFI node. herd serve sees from the agent's registration that the
// node booted by UEFI and from the image's partition table that it could
// never boot it: the node is failed with the reason and what to do,
// nothing is written to its disk, and it keeps its install boot entry.
func TestUEFINoESP(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 1, DiskSize: 256 << 20, Firmware: func(int) Firmware { return UEFIPXE }})
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	c.RunHerd(5*time.Minute, "image", "golden", "-o", golden)
	srv := c.Serve("--file", golden+" > /dev/vda")
	vm := c.StartVM(0)
	vm.WaitFor(`registered as n1 `, agentTimeout+registerTimeout)
	line := srv.WaitOutput(`^REFUSED: n1: `, registerTimeout)
	if !strings.Contains(line, "this node booted by UEFI, and the image "+golden+" (dos partition table) has no EFI System Partition") ||
		!strings.Contains(line, "nothing was written") || !strings.Contains(line, "herd image build") {
		t.Errorf("refusal %q: want the node, the image, what is missing and what to do", line)
	}
	st := c.WaitState("n1", contract.StateFailed, time.Minute)
	if !strings.Contains(st.Reason, "EFI System Partition") || st.Firmware != "uefi" {
		t.Errorf("herd nodes show n1: reason %q, firmware %q", st.Reason, st.Firmware)
	}
	if st.LocalBoot {
		t.Errorf("n1 failed but was switched to local boot")
	}
	vm.Kill()
	if off, err := c.Nodes[0].FirstNonZero(); err != nil || off != -1 {
		t.Errorf("n1's disk: first non-zero byte at %d (%v): want it untouched", off, err)
	}
}

// debianRootTar is the Debian root tarball of the same build as
// debianImage (the same flags, so one build serves both).
func debianRootTar(t *testing.T, c *Cluster) string {
	t.Helper()
	tar := filepath.Join(t.TempDir(), "root.tar.zst")
	start := time.Now()
	out := c.RunHerd(debianBuildTimeout, append([]string{"image", "build", "--root-tar", tar}, debianBuildArgs()...)...)
	t.Logf("herd image build --root-tar (%.0fs):\n%s", time.Since(start).Seconds(), lastLines(out, 15))
	return tar
}

// debianBuildArgs are the flags of the tests' herd image build: the
// report unit.
func debianBuildArgs() []string {
	return []string{"--hook", reportHook()}
}
