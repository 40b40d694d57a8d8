//go:build qemu

package golden

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Bounds of the QEMU boots (TCG on a 2-core machine).
const (
	bootTimeout = 4 * time.Minute  // power-on to the herd-booted line
	offTimeout  = 60 * time.Second // the line to QEMU's exit (power off)
)

var bootedRE = regexp.MustCompile(`herd-booted host=(\S+) ip=(\S+) machine-id=(\S+)\r?\n`)

// vm is a QEMU machine booting a disk image, its serial console in a
// file.
type vm struct {
	t      *testing.T
	log    string
	start  time.Time
	pid    int
	exited chan error // receives QEMU's exit, then holds it again
}

// boot starts QEMU on img from its own disk (TCG, virtio disk, virtio-net
// on a user network that reaches nothing but QEMU's DHCP server, with
// the given MAC, "" = QEMU's default). QEMU is killed by its PID on
// cleanup; the console is logged when the test failed.
func boot(t *testing.T, img, mac string) *vm {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64: apt-get install qemu-system-x86")
	}
	v := &vm{t: t, log: filepath.Join(t.TempDir(), "serial.log"), exited: make(chan error, 1)}
	nic := "virtio-net-pci,netdev=n0"
	if mac != "" {
		nic += ",mac=" + mac
	}
	cmd := exec.Command(qemu, "-accel", "tcg", "-cpu", "max", "-m", "512", "-nographic", "-no-reboot",
		"-drive", "file="+img+",format=raw,if=virtio",
		"-netdev", "user,id=n0,restrict=on", "-device", nic,
		"-serial", "file:"+v.log, "-monitor", "none")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	v.start = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	v.pid = cmd.Process.Pid
	go func() { v.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID; nothing when it already exited
		select {
		case err := <-v.exited:
			v.exited <- err
		case <-time.After(30 * time.Second):
			t.Errorf("QEMU (pid %d) did not exit after SIGKILL", v.pid)
		}
		if t.Failed() {
			t.Logf("serial console:\n%s\nQEMU:\n%s", v.console(), out.String())
		}
	})
	return v
}

func (v *vm) console() string {
	b, _ := os.ReadFile(v.log)
	return string(b)
}

// done reports whether QEMU has exited, and how.
func (v *vm) done() (bool, error) {
	select {
	case err := <-v.exited:
		v.exited <- err
		return true, err
	default:
		return false, nil
	}
}

// waitFor waits at most d for re on the console and returns its
// submatches and the time since QEMU started; it fails the test when
// QEMU exits first or the time is up.
func (v *vm) waitFor(re *regexp.Regexp, d time.Duration) ([]string, time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(d)
	for {
		// Whether QEMU has exited is asked before the console is
		// read: a line written just before the exit is still found.
		gone, err := v.done()
		if m := re.FindStringSubmatch(v.console()); m != nil {
			return m, time.Since(v.start)
		}
		switch {
		case gone:
			v.t.Fatalf("QEMU exited (%v) before %q", err, re)
		case time.Now().After(deadline):
			v.t.Fatalf("no %q after %v", re, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitExit waits at most d for QEMU to exit by itself (the guest powered
// off: -no-reboot).
func (v *vm) waitExit(d time.Duration) {
	v.t.Helper()
	select {
	case err := <-v.exited:
		v.exited <- err
		if err != nil {
			v.t.Errorf("QEMU: %v", err)
		}
	case <-time.After(d):
		v.t.Errorf("QEMU still running after %v: the guest did not power off", d)
	}
}

// booted boots img and returns the herd-booted line's fields and the
// time from QEMU's start to the line; the machine must power off after
// printing it once.
func booted(t *testing.T, img, mac string) (host, ip, id string, took time.Duration) {
	t.Helper()
	v := boot(t, img, mac)
	m, took := v.waitFor(bootedRE, bootTimeout)
	v.waitExit(offTimeout)
	if n := len(bootedRE.FindAllString(v.console(), -1)); n != 1 {
		t.Errorf("%d herd-booted lines, want exactly 1", n)
	}
	return m[1], m[2], m[3], took
}

// TestQEMUGoldenBoot boots a freshly built golden image from its disk:
// SeaBIOS, mbr.bin, syslinux, the kernel with herd's initrd, the root by
// UUID, herd as /sbin/init, DHCP from QEMU's user network.
func TestQEMUGoldenBoot(t *testing.T) {
	res := buildTestImage(t, Config{})
	host, ip, id, took := booted(t, res.Output, "")
	t.Logf("herd-booted host=%s ip=%s machine-id=%s after %v (image %d MiB, initrd %.1f MiB)", host, ip, id, took.Round(100*time.Millisecond), res.Size>>20, float64(res.InitrdSize)/(1<<20))
	if host != "golden" || ip != "10.0.2.15" || id != MachineID {
		t.Errorf("herd-booted host=%s ip=%s machine-id=%s; want host=golden ip=10.0.2.15 machine-id=%s", host, ip, id, MachineID)
	}
}

// TestQEMUCloneIdentity edits the root file system as herd's agent does
// for a clone (host name, machine-id, a 10-herd.network naming its NIC by
// MAC, here with a static address) and boots it: the root stage reports
// the clone's identity, not the golden one.
func TestQEMUCloneIdentity(t *testing.T) {
	res := buildTestImage(t, Config{})
	const mac = "52:54:00:12:34:99"
	const newID = "0123456789abcdef0123456789abcdef"
	dir := t.TempDir()
	files := map[string]string{
		"/etc/hostname":                        "node7\n",
		"/etc/machine-id":                      newID + "\n",
		"/etc/systemd/network/10-herd.network": "[Match]\nMACAddress=" + mac + "\n\n[Network]\nAddress=10.0.2.77/24\nGateway=10.0.2.2\n",
	}
	var cmds strings.Builder
	i := 0
	for path, content := range files {
		local := filepath.Join(dir, fmt.Sprint(i))
		i++
		if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cmds, "rm %s\nwrite %s %s\n", path, local, path)
	}
	script := filepath.Join(dir, "cmds")
	os.WriteFile(script, []byte(cmds.String()), 0o644)
	root := fmt.Sprintf("%s?offset=%d", res.Output, res.Table.Partitions[1].Offset())
	output(t, "debugfs", "-w", "-f", script, root)
	output(t, "e2fsck", "-f", "-n", root)

	host, ip, id, took := booted(t, res.Output, mac)
	t.Logf("herd-booted host=%s ip=%s machine-id=%s after %v", host, ip, id, took.Round(100*time.Millisecond))
	if host != "node7" || ip != "10.0.2.77" || id != newID {
		t.Errorf("herd-booted host=%s ip=%s machine-id=%s; want host=node7 ip=10.0.2.77 machine-id=%s", host, ip, id, newID)
	}
}

// TestQEMUNoRoot boots an image whose boot entry names a root file
// system that is not there: the initrd stage waits RootWait, says why,
// and powers the machine off instead of hanging.
func TestQEMUNoRoot(t *testing.T) {
	res := buildTestImage(t, Config{})
	at := fmt.Sprintf("%s@@%d", res.Output, res.Table.Partitions[0].Offset())
	cfg := strings.Replace(output(t, "mtype", "-i", at, "::"+SyslinuxCfg), res.RootUUID, "00000000-0000-4000-8000-000000000000", 1)
	local := filepath.Join(t.TempDir(), SyslinuxCfg)
	os.WriteFile(local, []byte(cfg), 0o644)
	output(t, "mcopy", "-o", "-i", at, local, "::"+SyslinuxCfg)

	v := boot(t, res.Output, "")
	_, took := v.waitFor(regexp.MustCompile(`herd-init: FAILED \(initrd stage\): no root device UUID=00000000-0000-4000-8000-000000000000 after 30s; block devices: .*vda2`), bootTimeout)
	v.waitExit(offTimeout)
	t.Logf("failed as expected after %v, then powered off", took.Round(100*time.Millisecond))
	if strings.Contains(v.console(), "herd-booted") {
		t.Error("herd-booted printed without a root")
	}
}
