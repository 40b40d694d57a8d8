//go:build qemu

package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/internal/netnstest"
)

// Bounds on the smoke test's waits (QEMU under TCG, on a busy host).
const (
	bootTimeout  = 4 * time.Minute // power-on to u-root's init
	agentTimeout = 2 * time.Minute // init to the agent's first line
	modTimeout   = 3 * time.Minute // agent to virtio_net loaded
)

// console collects QEMU's serial output as it arrives.
type console struct {
	mu   sync.Mutex
	buf  strings.Builder
	done bool // QEMU's output ended (it exited)
	cond *sync.Cond
}

func newConsole(r io.Reader, log io.Writer) *console {
	c := &console{}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		br := bufio.NewReader(r)
		chunk := make([]byte, 4096)
		for {
			n, err := br.Read(chunk)
			if n > 0 {
				log.Write(chunk[:n])
				c.mu.Lock()
				c.buf.Write(chunk[:n])
				c.mu.Unlock()
				c.cond.Broadcast()
			}
			if err != nil {
				c.mu.Lock()
				c.done = true
				c.mu.Unlock()
				c.cond.Broadcast()
				return
			}
		}
	}()
	return c
}

// waitFor waits at most d for re to match the output after offset from;
// it returns the end of the match, or -1 (timeout, or QEMU ended).
func (c *console) waitFor(re *regexp.Regexp, from int, d time.Duration) int {
	timer := time.AfterFunc(d, c.cond.Broadcast)
	defer timer.Stop()
	deadline := time.Now().Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		s := c.buf.String()
		if from > len(s) {
			from = len(s)
		}
		if loc := re.FindStringIndex(s[from:]); loc != nil {
			return from + loc[1]
		}
		if c.done || !time.Now().Before(deadline) {
			return -1
		}
		c.cond.Wait()
	}
}

func (c *console) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return tail(c.buf.String(), n)
}

// netTimeout bounds DHCP and registration under TCG.
const netTimeout = 3 * time.Minute

// startQEMU starts cmd (QEMU with the serial console on its standard
// output), logs the console to dir/console.log and kills QEMU when the
// test ends.
func startQEMU(t *testing.T, cmd *exec.Cmd, dir string) *console {
	t.Helper()
	// Keep stdin open (an EOF on the serial mux is not wanted) and read
	// stdout and stderr together.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	logFile, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		pw.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // by PID; a no-op when it already exited
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("qemu (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		stdin.Close()
		logFile.Close()
	})
	return newConsole(pr, logFile)
}

// TestQEMUBoot boots the installed kernel with the built initramfs in
// QEMU (TCG, virtio-net on a user network that lets nothing out,
// virtio-blk) and reads the serial console: u-root's init runs, starts
// /bin/uinit (herd agent), and virtio_net gets loaded from the
// initramfs's modules.
//
// With the kernel's initcall_debug (and ignore_loglevel, since init
// lowers the console log level), loading a module prints "initcall
// virtio_net_driver_init ... returned 0": that proves the load
// independently of the agent's wording.
//
// When the embedded herd has no agent command yet, the test checks the
// boot half without it: /bin/uinit ran herd (which says "unknown
// command"), and u-root's init loaded virtio_net itself (modules_load=)
// through kmodule, from the depmod-generated modules.dep.
func TestQEMUBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64: apt-get install qemu-system-x86 ipxe-qemu")
	}
	k, initrd, herd, res := build(t)
	agent := exec.Command(herd, "agent", "--help").Run() == nil
	t.Logf("kernel %s, initramfs %.1f MiB, herd has an agent command: %v", k, float64(res.Size)/(1<<20), agent)

	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	// The boot network: a namespace of the test's with a tap device for
	// the VM and herd pxe on it (DHCP with the VM's reservation, HTTP for
	// the registration). Nothing leaves the namespace.
	ns := netnstest.New(t, "qemu")
	ns.AddTap("tap0", "")
	ns.AddAddr("tap0", "10.251.5.1/24")
	const vmMAC = "52:54:00:25:13:51"
	inv := filepath.Join(dir, "inventory")
	if err := os.WriteFile(inv, []byte("subnet 10.251.5.0/24\nrouter 10.251.5.1\nnode "+vmMAC+" q1 10.251.5.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	var pxeOut bytes.Buffer
	pxe := ns.Command(herd, "pxe", "--interface", "tap0", "--inventory", inv,
		"--state-dir", state, "--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18085", "--tftp-port", "16973", "-v")
	pxe.Stdout, pxe.Stderr = &pxeOut, &pxeOut
	if agent {
		if err := pxe.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			pxe.Process.Kill() // ip netns exec execs herd: this is herd's PID
			waited := make(chan struct{})
			go func() { pxe.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(30 * time.Second):
				t.Errorf("herd pxe (pid %d) did not exit after SIGKILL", pxe.Process.Pid)
				return
			}
			if t.Failed() {
				t.Logf("herd pxe:\n%s", pxeOut.String())
			}
		})
	}

	// panic=-1: if init ever exits, the kernel reboots at once, and
	// -no-reboot turns that into QEMU exiting.
	cmdline := "console=ttyS0 herd.debug panic=-1 initcall_debug ignore_loglevel herd.url=http://10.251.5.1:18085 herd.timeout=20 herd.retries=1"
	if !agent {
		cmdline += " modules_load=virtio_net"
	}
	cmd := ns.Command(qemu,
		"-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot",
		"-kernel", k, "-initrd", initrd, "-append", cmdline,
		"-device", "virtio-net-pci,netdev=n0,mac="+vmMAC, "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-drive", "if=virtio,file="+disk+",format=raw",
	)
	con := startQEMU(t, cmd, dir)
	start := time.Now()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\nlast console lines:\n%s", append(args, con.tail(60))...)
	}

	at := con.waitFor(regexp.MustCompile(`Welcome to u-root!`), 0, bootTimeout)
	if at < 0 {
		fail("u-root's init did not start within %v", bootTimeout)
	}
	t.Logf("%5.1fs u-root init runs", time.Since(start).Seconds())

	if agent {
		at = con.waitFor(regexp.MustCompile(`== herd: `), at, agentTimeout)
		if at < 0 {
			fail("the herd agent printed no step header within %v of init", agentTimeout)
		}
		t.Logf("%5.1fs herd agent started (/bin/uinit)", time.Since(start).Seconds())
	} else {
		at = con.waitFor(regexp.MustCompile(`herd: unknown command "agent"`), at, agentTimeout)
		if at < 0 {
			fail("/bin/uinit did not run herd within %v of init", agentTimeout)
		}
		t.Logf("%5.1fs /bin/uinit ran herd (this herd has no agent command yet)", time.Since(start).Seconds())
	}

	mod := con.waitFor(regexp.MustCompile(`initcall virtio_net_driver_init\S* \[virtio_net\] returned 0`), 0, modTimeout)
	if mod < 0 {
		fail("virtio_net was not loaded within %v", modTimeout)
	}
	t.Logf("%5.1fs kernel: virtio_net loaded", time.Since(start).Seconds())
	if agent {
		// The agent loads it (nothing else does, without modules_load=),
		// after it started, and says so.
		if mod < at {
			fail("virtio_net was loaded before the agent started")
		}
		if con.waitFor(regexp.MustCompile(`(?m)^[^\[\n]*\bvirtio_net\b`), at, modTimeout) < 0 {
			fail("the agent's console lines never name virtio_net")
		}
		t.Logf("%5.1fs the agent reports virtio_net", time.Since(start).Seconds())
	}
	if agent {
		// DHCP from herd's server: the reservation; then registration.
		if con.waitFor(regexp.MustCompile(`address 10\.251\.5\.21/24, hostname "q1"`), at, netTimeout) < 0 {
			fail("the agent did not get its reservation (10.251.5.21, q1) from herd's DHCP within %v", netTimeout)
		}
		t.Logf("%5.1fs the agent has its reservation from herd pxe", time.Since(start).Seconds())
		if con.waitFor(regexp.MustCompile(`registered as q1`), at, netTimeout) < 0 {
			fail("the agent did not register within %v", netTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, herd, "nodes", "show", "q1", "--inventory", inv, "--state-dir", state).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), `"state": "registered"`) {
			fail("herd nodes show q1 after registration: %v\n%s", err, out)
		}
		t.Logf("%5.1fs registered with herd pxe", time.Since(start).Seconds())
	}
	t.Logf("console after init, without the kernel's lines:\n%s", userLines(con.tail(400)))
}

// userLines drops the kernel's "[    1.234567] ..." lines.
func userLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, "\r")
		if l != "" && !strings.HasPrefix(l, "[") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestQEMUStandaloneBoot boots the standalone boot tree (see
// TestStandaloneBootTree: built by a copy of a make-build herd, without
// Go) in QEMU, without a network: u-root's init (the built-in busybox)
// starts, and runs the agent, the herd that built the tree.
func TestQEMUStandaloneBoot(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no qemu-system-x86_64: apt-get install qemu-system-x86 ipxe-qemu")
	}
	buildStandalone(t)
	s := &standalone
	dir := t.TempDir()
	cmd := exec.Command(qemu,
		"-accel", "tcg", "-cpu", "max", "-m", "1024", "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", filepath.Join(s.tree, "vmlinuz"), "-initrd", filepath.Join(s.tree, "initramfs.cpio.gz"),
		"-append", "console=ttyS0 panic=-1 herd.timeout=5 herd.retries=1",
	)
	con := startQEMU(t, cmd, dir)
	start := time.Now()
	at := con.waitFor(regexp.MustCompile(`Welcome to u-root!`), 0, bootTimeout)
	if at < 0 {
		t.Fatalf("u-root's init did not start within %v\nlast console lines:\n%s", bootTimeout, con.tail(60))
	}
	t.Logf("%5.1fs u-root init runs", time.Since(start).Seconds())
	if con.waitFor(regexp.MustCompile(`== herd: \w`), at, agentTimeout) < 0 {
		t.Fatalf("the herd agent printed no step header within %v of init\nlast console lines:\n%s", agentTimeout, con.tail(60))
	}
	t.Logf("%5.1fs herd agent started (/bin/uinit)", time.Since(start).Seconds())
	t.Logf("console after init, without the kernel's lines:\n%s", userLines(con.tail(100)))
}
