//go:build nettest

package pxetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/netnstest"
)

// withLibs copies an executable and the shared libraries ldd names into
// tree, at the same paths.
func withLibs(t *testing.T, tree, exe string) {
	t.Helper()
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		t.Skipf("ldd %s: %v", exe, err)
	}
	files := []string{exe}
	for _, l := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(tree, f)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// rootTarball makes the cooked root of a plan install: a small system
// tree with a kernel and initrd under /boot and busybox as /bin/sh (for
// %post), as root.tar.zst.
func rootTarball(t *testing.T, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "rootfs")
	for p, c := range map[string]string{
		"etc/hostname":                    "golden\n",
		"etc/hosts":                       "127.0.0.1 localhost\n127.0.1.1 golden\n",
		"etc/machine-id":                  "0123456789abcdef0123456789abcdef\n",
		"etc/fstab":                       "LABEL=golden / ext4 defaults 0 1\n",
		"etc/shadow":                      "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
		"etc/systemd/network/.keep":       "",
		"boot/vmlinuz-6.1.0-7-amd64":      "not really a kernel\n",
		"boot/initrd.img-6.1.0-7-amd64":   "not really an initrd\n",
		"usr/share/zoneinfo/Europe/Paris": "TZif2 pretend\n",
	} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte(c), 0o644)
	}
	withLibs(t, tree, "/usr/bin/busybox")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	for _, l := range []string{"sh", "cat", "echo"} {
		os.Symlink("/usr/bin/busybox", filepath.Join(tree, "bin", l))
	}
	os.MkdirAll(filepath.Join(tree, "tmp"), 0o1777)
	tarball := filepath.Join(dir, "root.tar.zst")
	netnstest.Run(t, "tar", "--zstd", "-cf", tarball, "-C", tree, ".")
	return tarball
}

// sfdiskTable is the part of sfdisk --json the tests read.
type sfdiskTable struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Partitions []struct {
			Node     string `json:"node"`
			Start    int64  `json:"start"`
			Size     int64  `json:"size"`
			Type     string `json:"type"`
			Bootable bool   `json:"bootable"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func blkid(t *testing.T, dev, tag string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", tag, dev).Output()
	return strings.TrimSpace(string(out))
}

// mountRO mounts dev read-only on a fresh directory until the test ends.
func mountRO(t *testing.T, dev string) string {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v\n%s", dev, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

func readIn(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Errorf("%s: %v", p, err)
	}
	return string(b)
}

// TestAgentPlanInstall: the agent, as a plain process in a namespace of
// the test's, fetches its kickstart plan from herd serve, partitions a
// blank loop device (/boot, swap, a growing /), makes the filesystems,
// mounts them, receives a .tar.zst root cooked straight into them
// through the ring, writes fstab by UUID, customizes the system, sets
// root's password, installs extlinux, runs %post in a chroot and
// --nochroot, and reports done with the %post output. Then the disk is
// inspected: table, filesystems, fstab UUIDs, extlinux files and MBR.
func TestAgentPlanInstall(t *testing.T) {
	for _, tool := range []string{"sfdisk", "mke2fs", "mkswap", "extlinux", "blkid", "zstd", "busybox", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	const mac = "52:54:00:25:12:61"
	ns := newNetns(t, "pln", "10.251.6.1", mac)
	dir := t.TempDir()
	tarball := rootTarball(t, dir)
	loop := loopDevice(t, filepath.Join(dir, "disk.raw"), 400<<20, "-P")
	plan := filepath.Join(dir, "compute.ks")
	os.WriteFile(plan, []byte(fmt.Sprintf(`# a compute node on a blank disk
ignoredisk --only-use=%s
zerombr
clearpart --all --initlabel
part /boot --fstype=ext4 --size=64 --label=boot
part swap --size=32
part / --fstype=ext4 --size=128 --grow --label=root
bootloader --location=mbr --append="console=ttyS0,115200" --timeout=3
rootpw --plaintext s3cret
timezone Europe/Paris
image root.tar.zst --to /
%%pre
echo "pre on $HOSTNAME"
%%end
%%post
echo "post on $HOSTNAME $IPADDR $MAC" > /etc/herd-post
echo "in the chroot: $(cat /etc/hostname)"
%%end
%%post --nochroot
echo "nochroot: $HERD_TARGET"
%%end
`, filepath.Base(loop))), 0o644)

	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.6.0/24\nrouter 10.251.6.1\nnode "+mac+" c1 10.251.6.21 plan=compute.ks\n"), 0o644)
	state := filepath.Join(dir, "state")
	srv := start(t, dir, herdBin, "serve", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", state,
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18086", "--tftp-port", "16975", "--no-ra",
		"--wait-timeout", "90s", "--once", "-q", "--file", tarball+" >> /")
	waitTCP(t, "10.251.6.1:18086", 10*time.Second)

	agentDir := filepath.Join(dir, "agent")
	ag := ns.start(t, dir, herdBin, "agent", "--root-dir", agentDir, "--no-reboot",
		"--cmdline", "herd.url=http://10.251.6.1:18086 herd.if="+ns.nodeIf+" herd.timeout=60 herd.retries=2")
	code := ag.wait(t, 180*time.Second)
	log := ag.errb.String()
	if code != 0 {
		t.Fatalf("agent exit %d:\n%s", code, log)
	}
	if code := srv.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("herd serve exit %d:\n%s\n%s", code, srv.out.String(), srv.errb.String())
	}
	t.Logf("agent console:\n%s", log)
	for _, w := range []string{
		"install plan compute.ks: 3 partition(s), 1 image(s), 1 %pre, 2 %post",
		"%pre (line 12): pre on c1",
		"== herd: prepare the disks (plan compute.ks) done",
		"== herd: install the bootloader done",
		"%post (line 15): in the chroot: c1",
		"%post --nochroot (line 19): nochroot: " + filepath.Join(agentDir, "mnt/sysimage"),
		"== herd: unmount the new system done",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("agent console lacks %q", w)
		}
	}

	// The partition table: /boot bootable, swap, / taking the rest.
	out, err := exec.Command("sfdisk", "--json", loop).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", loop, err)
	}
	var tab sfdiskTable
	if err := json.Unmarshal(out, &tab); err != nil {
		t.Fatal(err)
	}
	parts := tab.PartitionTable.Partitions
	if tab.PartitionTable.Label != "dos" || len(parts) != 3 {
		t.Fatalf("partition table:\n%s", out)
	}
	mib := int64(2048) // sectors
	if parts[0].Start != mib || parts[0].Size != 64*mib || !parts[0].Bootable || parts[0].Type != "83" {
		t.Errorf("partition 1 (/boot): %+v", parts[0])
	}
	if parts[1].Size != 32*mib || parts[1].Type != "82" || parts[1].Bootable {
		t.Errorf("partition 2 (swap): %+v", parts[1])
	}
	if end := parts[2].Start + parts[2].Size; parts[2].Size < 128*mib || 400*mib-end > mib {
		t.Errorf("partition 3 (/) does not grow to the end of the 400 MiB disk: %+v", parts[2])
	}
	boot, swap, root := loop+"p1", loop+"p2", loop+"p3"
	bootUUID, swapUUID, rootUUID := blkid(t, boot, "UUID"), blkid(t, swap, "UUID"), blkid(t, root, "UUID")
	if blkid(t, boot, "TYPE") != "ext4" || blkid(t, swap, "TYPE") != "swap" || blkid(t, root, "TYPE") != "ext4" || blkid(t, root, "LABEL") != "root" {
		t.Errorf("filesystems: %s %s %s, root label %q", blkid(t, boot, "TYPE"), blkid(t, swap, "TYPE"), blkid(t, root, "TYPE"), blkid(t, root, "LABEL"))
	}

	// The root: unpacked, customized, fstab by UUID, %post's trace.
	r := mountRO(t, root)
	fstab := readIn(t, r, "etc/fstab")
	for _, w := range []string{
		"UUID=" + rootUUID + "\t/\text4\t",
		"UUID=" + bootUUID + "\t/boot\text4\t",
		"UUID=" + swapUUID + "\tnone\tswap\t",
	} {
		if !strings.Contains(fstab, w) {
			t.Errorf("fstab lacks %q:\n%s", w, fstab)
		}
	}
	if strings.Contains(fstab, "LABEL=golden") {
		t.Errorf("fstab kept the image's line:\n%s", fstab)
	}
	if got := readIn(t, r, "etc/hostname"); got != "c1\n" {
		t.Errorf("hostname %q, want c1", got)
	}
	if got := readIn(t, r, "etc/herd-post"); got != "post on c1 10.251.6.21 "+mac+"\n" {
		t.Errorf("%%post wrote %q", got)
	}
	if got := readIn(t, r, "etc/shadow"); !strings.HasPrefix(got, "root:$6$") || !strings.Contains(got, "\ndaemon:*:") {
		t.Errorf("shadow:\n%s", got)
	}
	if l, _ := os.Readlink(filepath.Join(r, "etc/localtime")); l != "/usr/share/zoneinfo/Europe/Paris" {
		t.Errorf("localtime → %q", l)
	}
	if _, err := os.Stat(filepath.Join(r, "boot/vmlinuz-6.1.0-7-amd64")); err == nil {
		t.Error("the kernel landed on the root filesystem, not on /boot")
	}

	// /boot: the kernel, extlinux and its configuration.
	b := mountRO(t, boot)
	if _, err := os.Stat(filepath.Join(b, "vmlinuz-6.1.0-7-amd64")); err != nil {
		t.Errorf("/boot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, "extlinux/ldlinux.sys")); err != nil {
		t.Errorf("extlinux not installed: %v", err)
	}
	conf := readIn(t, b, "extlinux/extlinux.conf")
	for _, w := range []string{"/vmlinuz-6.1.0-7-amd64", "/initrd.img-6.1.0-7-amd64", "root=UUID=" + rootUUID, "console=ttyS0,115200"} {
		if !strings.Contains(conf, w) {
			t.Errorf("extlinux.conf lacks %q:\n%s", w, conf)
		}
	}
	mbr, _ := os.ReadFile("/usr/lib/syslinux/mbr/mbr.bin")
	disk, _ := os.ReadFile(filepath.Join(dir, "disk.raw"))
	if len(mbr) < 440 || !bytes.Equal(disk[:440], mbr[:440]) || disk[510] != 0x55 || disk[511] != 0xAA {
		t.Error("the MBR does not carry syslinux's boot code and a valid table")
	}

	st, _ := exec.Command(herdBin, "nodes", "show", "c1", "--inventory", inv, "--state-dir", state).CombinedOutput()
	for _, w := range []string{`"state": "done"`, "installed by plan compute.ks and verified", "in the chroot: c1", "plan file " + plan, "partition  /boot"} {
		if !strings.Contains(string(st), w) {
			t.Errorf("herd nodes show c1 lacks %q:\n%s", w, st)
		}
	}
}

// TestAgentPlanRefusals: plans the node cannot carry out fail before a
// byte is written, with the reason on the console and in herd serve's
// state: a disk too small for the plan, and a disk holding a partition
// table the plan does not clear.
func TestAgentPlanRefusals(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk not installed")
	}
	for i, tc := range []struct {
		name, plan string
		table      bool
		want       string
	}{
		{"too small", "zerombr\npart / --fstype=ext4 --size=512\n", false, "part / needs"},
		{"not cleared", "part / --fstype=ext4 --size=16\n", true, "has a partition table and the plan does not clear it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac := fmt.Sprintf("52:54:00:25:12:7%d", i)
			hostIP := fmt.Sprintf("10.251.%d.1", 7+i)
			ns := newNetns(t, fmt.Sprintf("plr%d", i), hostIP, mac)
			dir := t.TempDir()
			raw := filepath.Join(dir, "disk.raw")
			loop := loopDevice(t, raw, 64<<20, "-P")
			if tc.table {
				cmd := exec.Command("sfdisk", "-q", loop)
				cmd.Stdin = strings.NewReader("label: dos\nstart=2048, size=8192, type=83\n")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("sfdisk: %v\n%s", err, out)
				}
			}
			before, _ := os.ReadFile(raw)
			os.WriteFile(filepath.Join(dir, "p.ks"), []byte("ignoredisk --only-use="+filepath.Base(loop)+"\n"+tc.plan), 0o644)
			img := filepath.Join(dir, "root.tar")
			netnstest.Run(t, "tar", "-cf", img, "-C", dir, "p.ks")
			inv := filepath.Join(dir, "inventory")
			subnet := strings.TrimSuffix(hostIP, ".1")
			os.WriteFile(inv, []byte("subnet "+subnet+".0/24\nnode "+mac+" r1 "+subnet+".21 plan=p.ks\n"), 0o644)
			state := filepath.Join(dir, "state")
			port := fmt.Sprint(18087 + i)
			srv := start(t, dir, herdBin, "serve", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", state,
				"--boot-dir", filepath.Join(dir, "boot"), "--http-port", port, "--tftp-port", fmt.Sprint(16976+i), "--no-ra",
				"--wait-timeout", "10s", "--once", "-q", "--file", img+" >> /")
			waitTCP(t, hostIP+":"+port, 10*time.Second)
			ag := ns.start(t, dir, herdBin, "agent", "--root-dir", filepath.Join(dir, "agent"), "--no-reboot",
				"--cmdline", "herd.url=http://"+hostIP+":"+port+" herd.if="+ns.nodeIf+" herd.timeout=10 herd.retries=1")
			if code := ag.wait(t, 60*time.Second); code == 0 {
				t.Fatalf("agent exit 0:\n%s", ag.errb.String())
			}
			if !strings.Contains(ag.errb.String(), tc.want) {
				t.Errorf("agent console lacks %q:\n%s", tc.want, ag.errb.String())
			}
			srv.wait(t, 40*time.Second)
			if after, _ := os.ReadFile(raw); !bytes.Equal(before, after) {
				t.Error("the disk was written to")
			}
			st, _ := exec.Command(herdBin, "nodes", "show", "r1", "--inventory", inv, "--state-dir", state).CombinedOutput()
			if !strings.Contains(string(st), `"state": "failed"`) || !strings.Contains(string(st), tc.want) {
				t.Errorf("herd nodes show r1:\n%s", st)
			}
		})
	}
}
