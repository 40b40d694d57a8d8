//go:build nettest

package pxetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/netnstest"
)

// debugfsCat reads a file from an ext4 filesystem without mounting it.
func debugfsCat(t *testing.T, dev, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, dev).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s on %s: %v", path, dev, err)
	}
	return string(out)
}

// goldenExt4 makes a golden system: an ext4 image of a tree with the
// identity of the machine it was captured from.
func goldenExt4(t *testing.T, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	for p, c := range map[string]string{
		"etc/hostname":                     "golden\n",
		"etc/hosts":                        "127.0.0.1 localhost\n127.0.1.1 golden\n",
		"etc/machine-id":                   "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key":     "secret\n",
		"etc/ssh/ssh_host_ed25519_key.pub": "public\n",
		"etc/systemd/network/.keep":        "",
		"usr/lib/systemd/systemd-networkd": "#!/bin/false\n", // the image uses networkd
		"etc/os-release":                   "ID=herdtest\n",
	} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte(c), 0o644)
	}
	golden := filepath.Join(dir, "golden.img")
	netnstest.Run(t, "mke2fs", "-q", "-t", "ext4", "-d", tree, "-L", "root", golden, "32M")
	return golden
}

// loopDevice attaches a fresh file of size bytes to a loop device, with
// more losetup flags ("-P": scan partitions, as a node's blank disk).
func loopDevice(t *testing.T, path string, size int64, flags ...string) string {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(path, size)
	out, err := exec.Command("losetup", append(append([]string{"-f", "--show"}, flags...), path)...).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	return loop
}

// installSetup is what an install test needs: a namespace whose node end
// has mac, a golden ext4 image, and a loop device a little larger than it
// as the node's disk.
func installSetup(t *testing.T, tag, hostIP, mac string) (ns *netns, dir, golden, loop string) {
	t.Helper()
	for _, tool := range []string{"mke2fs", "debugfs", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (e2fsprogs, util-linux)", tool)
		}
	}
	ns = newNetns(t, tag, hostIP, mac)
	dir = t.TempDir()
	golden = goldenExt4(t, dir)
	loop = loopDevice(t, filepath.Join(dir, "disk.raw"), 40<<20)
	return ns, dir, golden, loop
}

// TestAgentInstall: the agent, as a plain process in a namespace of the
// test's, gets its reservation from herd serve's DHCP, registers, receives
// a golden ext4 image through the ring onto a loop device, customizes it
// (hostname, hosts, machine-id, SSH host keys, networkd) and reports done;
// herd serve then switches the node to local boot. Once with dolly's ring
// ports, once with herd serve --data-port/--control-port/--report-port
// --window --chunks: the agent is told them at registration, listens where
// the sender dials and keeps the ring's window and chunks.
func TestAgentInstall(t *testing.T) {
	for _, tt := range []struct {
		name, tag, net, mac string
		httpPort, tftpPort  string
		ports               []string // herd serve's ring port flags
		control             string   // the control port the agent must listen on
	}{
		{"default ports", "agt", "10.251.2", "52:54:00:25:12:31", "18082", "16971", nil, "9997"},
		{"other ports", "agp", "10.251.12", "52:54:00:25:12:32", "18092", "16981",
			[]string{"--data-port", "19998", "--control-port", "19997", "--report-port", "19996", "--window", "32M", "--chunks", "4"}, "19997"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			agentInstall(t, tt.tag, tt.net, tt.mac, tt.httpPort, tt.tftpPort, tt.ports, tt.control)
		})
	}
}

func agentInstall(t *testing.T, tag, net, mac, httpPort, tftpPort string, ports []string, control string) {
	ns, dir, golden, loop := installSetup(t, tag, net+".1", mac)

	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet "+net+".0/24\nrouter "+net+".1\ndomain rack.test\nnode "+mac+" a1 "+net+".21\n"), 0o644)
	args := []string{herdBin, "serve", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", filepath.Join(dir, "state"),
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", httpPort, "--tftp-port", tftpPort, "--no-ra",
		"--wait-timeout", "90s", "--once", "-q", "-I", golden, "-O", loop}
	srv := start(t, dir, append(args, ports...)...)
	waitTCP(t, net+".1:"+httpPort, 10*time.Second)

	agentDir := filepath.Join(dir, "agent")
	ag := ns.start(t, dir, herdBin, "agent", "--root-dir", agentDir, "--no-reboot",
		"--cmdline", "console=ttyS0 herd.url=http://"+net+".1:"+httpPort+" herd.if="+ns.nodeIf+" herd.timeout=60 herd.retries=2")
	if code := ag.wait(t, 120*time.Second); code != 0 {
		t.Fatalf("agent exit %d:\n%s", code, ag.errb.String())
	}
	if code := srv.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("herd serve exit %d:\n%s\n%s", code, srv.out.String(), srv.errb.String())
	}
	ring := "ring: sender " + net + ".1, ports data 9998, control 9997, report 9996; window 64 MiB, 8 chunks"
	if ports != nil {
		ring = "ring: sender " + net + ".1, ports data 19998, control 19997, report 19996; window 32 MiB, 4 chunks"
	}
	for _, want := range []string{"== herd: network (DHCP)", "== herd: customize the installed system done", "registered as a1", ring,
		"waiting for a sender on control " + net + ".21:" + control + ","} {
		if !strings.Contains(ag.errb.String(), want) {
			t.Errorf("agent console lacks %q:\n%s", want, ag.errb.String())
		}
	}
	// Verified by the ring, then customized: the identity changed.
	if got := debugfsCat(t, loop, "/etc/hostname"); got != "a1\n" {
		t.Errorf("hostname %q, want a1", got)
	}
	if got := debugfsCat(t, loop, "/etc/hosts"); !strings.Contains(got, "a1") || !strings.Contains(got, "127.0.0.1 localhost") {
		t.Errorf("hosts:\n%s", got)
	}
	if got := debugfsCat(t, loop, "/etc/machine-id"); len(strings.TrimSpace(got)) != 32 || strings.HasPrefix(got, "0123456789abcdef") {
		t.Errorf("machine-id %q: want a fresh one", got)
	}
	if out, _ := exec.Command("debugfs", "-R", "ls /etc/ssh", loop).Output(); bytes.Contains(out, []byte("ssh_host_ed25519_key")) {
		t.Errorf("SSH host keys were not removed:\n%s", out)
	}
	if got := debugfsCat(t, loop, "/etc/systemd/network/10-herd.network"); !strings.Contains(got, mac) {
		t.Errorf("networkd file lacks the MAC %s:\n%s", mac, got)
	}
	out, _ := exec.Command(herdBin, "nodes", "--inventory", inv, "--state-dir", filepath.Join(dir, "state")).CombinedOutput()
	if !strings.Contains(string(out), "done") || !strings.Contains(string(out), "local") {
		t.Errorf("herd nodes after the install:\n%s", out)
	}
}

// TestAgentDiskTooSmall: a node whose disk is smaller than the image
// refuses the session at set-up, writes nothing, and reports failed with
// the reason; herd serve counts it failed and keeps its install entry.
func TestAgentDiskTooSmall(t *testing.T) {
	const mac = "52:54:00:25:12:41"
	ns := newNetns(t, "ags", "10.251.3.1", mac)
	dir := t.TempDir()
	golden := filepath.Join(dir, "golden.img")
	if err := os.WriteFile(golden, bytes.Repeat([]byte("herd"), 8<<20/4), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.raw")
	os.WriteFile(disk, bytes.Repeat([]byte{0xAB}, 4<<20), 0o644) // 4 MiB < 8 MiB
	out, err := exec.Command("losetup", "-f", "--show", disk).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.3.0/24\nnode "+mac+" s1 10.251.3.21\n"), 0o644)
	state := filepath.Join(dir, "state")
	srv := start(t, dir, herdBin, "serve", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", state,
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18083", "--tftp-port", "16972", "--no-ra",
		"--wait-timeout", "90s", "--once", "-q", "-I", golden, "-O", loop)
	waitTCP(t, "10.251.3.1:18083", 10*time.Second)
	ag := ns.start(t, dir, herdBin, "agent", "--root-dir", filepath.Join(dir, "agent"), "--no-reboot",
		"--cmdline", "herd.url=http://10.251.3.1:18083 herd.if="+ns.nodeIf+" herd.timeout=60 herd.retries=1")
	if code := ag.wait(t, 120*time.Second); code == 0 {
		t.Fatalf("agent exit 0 for a disk smaller than the image:\n%s", ag.errb.String())
	}
	if code := srv.wait(t, 30*time.Second); code != 1 {
		t.Errorf("herd serve exit %d, want 1", code)
	}
	if !strings.Contains(srv.out.String(), "s1") || !strings.Contains(srv.out.String(), "failed") {
		t.Errorf("summary does not show s1 failed:\n%s", srv.out.String())
	}
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got, bytes.Repeat([]byte{0xAB}, 4<<20)) {
		t.Error("the too-small disk was written to")
	}
	st, _ := exec.Command(herdBin, "nodes", "show", "s1", "--inventory", inv, "--state-dir", state).CombinedOutput()
	if !strings.Contains(string(st), `"state": "failed"`) || !strings.Contains(string(st), "next boot install") {
		t.Errorf("herd nodes show s1:\n%s", st)
	}
}

// TestAgentStage2: herd serve --stage2 sends a tools filesystem into the
// node's RAM first (a file on the agent's root, as on a tmpfs); the agent
// mounts it once the sender verified it, puts its bin directory first in
// PATH and runs its hook, tells herd serve, and then takes the install
// session as usual.
func TestAgentStage2(t *testing.T) {
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices")
	}
	const mac = "52:54:00:25:12:51"
	ns, dir, golden, loop := installSetup(t, "st2", "10.251.4.1", mac)

	// The stage2: a tool (found through PATH) and the hook that runs it.
	tools := filepath.Join(dir, "stage2")
	os.MkdirAll(filepath.Join(tools, "bin"), 0o755)
	os.MkdirAll(filepath.Join(tools, "herd"), 0o755)
	os.WriteFile(filepath.Join(tools, "bin", "herd-stage2-hello"), []byte("#!/bin/sh\necho \"hello from the stage2 on $1\"\n"), 0o755)
	os.WriteFile(filepath.Join(tools, "herd", "run"), []byte("#!/bin/sh\nset -e\nherd-stage2-hello \"$HERD_NAME $HERD_IP in $HERD_STAGE2\"\n"), 0o755)
	stage2 := filepath.Join(dir, "stage2.img")
	netnstest.Run(t, "mke2fs", "-q", "-t", "ext4", "-d", tools, stage2, "4M")
	want, _ := os.ReadFile(stage2)

	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.4.0/24\nnode "+mac+" b1 10.251.4.21\n"), 0o644)
	srv := start(t, dir, herdBin, "serve", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", filepath.Join(dir, "state"),
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18084", "--tftp-port", "16973", "--no-ra",
		"--wait-timeout", "90s", "--once", "-q", "--stage2", stage2, "--stage2-output", "run/herd/stage2.img",
		"-I", golden, "-O", loop)
	waitTCP(t, "10.251.4.1:18084", 10*time.Second)
	agentDir := filepath.Join(dir, "agent")
	ag := ns.start(t, dir, herdBin, "agent", "--root-dir", agentDir, "--no-reboot",
		"--cmdline", "herd.url=http://10.251.4.1:18084 herd.if="+ns.nodeIf+" herd.timeout=60 herd.retries=2")
	if code := ag.wait(t, 120*time.Second); code != 0 {
		t.Fatalf("agent exit %d:\n%s", code, ag.errb.String())
	}
	if code := srv.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("herd serve exit %d:\n%s\n%s", code, srv.out.String(), srv.errb.String())
	}
	log := ag.errb.String()
	t.Logf("agent console:\n%s\nherd serve:\n%s", log, srv.out.String())
	mnt := filepath.Join(agentDir, "stage2")
	for _, w := range []string{
		"== herd: mount the stage2 done",
		"stage2 run/herd/stage2.img mounted read-only at " + mnt,
		"hello from the stage2 on b1 10.251.4.21/24 in " + mnt,
		"== herd: wait for the install session (try 1 of 2",
		"== herd: customize the installed system done",
	} {
		if !strings.Contains(log, w) {
			t.Errorf("agent console lacks %q:\n%s", w, log)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(agentDir, "run/herd/stage2.img")); !bytes.Equal(got, want) {
		t.Errorf("the stage2 in the node's RAM differs from the image (%d bytes, want %d)", len(got), len(want))
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), mnt) {
		t.Errorf("the stage2 is still mounted at %s after the agent ended", mnt)
	}
	if got := debugfsCat(t, loop, "/etc/hostname"); got != "b1\n" {
		t.Errorf("hostname %q, want b1", got)
	}
	// herd serve printed two summaries: the stage2's, then the install's.
	if n := strings.Count(srv.out.String(), "b1"); n < 2 {
		t.Errorf("herd serve output names b1 %d times, want a summary per session:\n%s", n, srv.out.String())
	}
}
