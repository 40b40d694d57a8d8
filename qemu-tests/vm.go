package qemutests

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Bounds on the VM helpers' own waits.
const (
	vmExitTimeout  = 30 * time.Second
	monitorTimeout = 10 * time.Second
	tailLines      = 40
)

// VM is one node's QEMU: TCG, its firmware (Node.Firmware: SeaBIOS and
// the iPXE ROM, or OVMF with or without iPXE's EFI ROM) on a virtio-net
// card on the node's tap, and its virtio disk; the network boots first,
// so every reset boots through the network (and herd decides: install, or
// exit to the disk).
// Its serial console is read as it comes; WaitFor looks for lines in it.
type VM struct {
	// Node is the inventory node the VM is.
	Node Node
	// Log is the console's log file: plain text, each line prefixed with
	// the seconds since the VM started.
	Log string
	// Started is when QEMU was started.
	Started time.Time

	t       T
	cmd     *exec.Cmd
	con     *console
	stdin   io.WriteCloser
	exited  chan struct{}
	monitor string // HMP socket
	cursor  int    // WaitFor looks after this offset of the console text
}

// StartVM starts node i's VM (0-based: Nodes[i]) inside the namespace.
// It is killed (by PID) at cleanup. A node started again (RestartVM) has
// a console log and a monitor of its own per start: <node>.console.log,
// then <node>-2.console.log, ...
func (c *Cluster) StartVM(i int) *VM {
	c.t.Helper()
	v, err := c.startVM(i, nil)
	if err != nil {
		c.t.Fatalf("qemutests: %v", err)
	}
	return v
}

// startVM is StartVM with extra QEMU arguments, returning its error: the
// node's BMC (bmc.go) starts VMs from a goroutine of its own.
func (c *Cluster) startVM(i int, extra []string) (*VM, error) {
	t := c.t
	if i < 0 || i >= len(c.Nodes) {
		return nil, fmt.Errorf("no node %d (the cluster has %d)", i, len(c.Nodes))
	}
	n := c.Nodes[i]
	c.vmMu.Lock()
	defer c.vmMu.Unlock()
	base, starts := n.Name, 1
	for _, o := range c.vms {
		if o.Node.Name == n.Name {
			starts++
		}
	}
	if starts > 1 {
		base = fmt.Sprintf("%s-%d", n.Name, starts)
	}
	v := &VM{Node: n, t: t, exited: make(chan struct{}),
		Log:     filepath.Join(c.LogDir, base+".console.log"),
		monitor: filepath.Join(c.sockDir, base+".mon")}
	args := []string{
		"-name", n.Name,
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(c.opts.MemoryMiB), "-smp", "1",
		"-nographic",
		"-netdev", "tap,id=n0,ifname=" + n.Tap + ",script=no,downscript=no",
		"-monitor", "unix:" + v.monitor + ",server=on,wait=off",
	}
	args = append(args, n.Firmware.vmArgs(n)...)
	if c.opts.NoReboot {
		args = append(args, "-no-reboot")
	}
	args = append(args, c.bmcArgs(i)...)
	args = append(args, extra...)
	logf, err := os.Create(v.Log)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	v.cmd = c.NS.Command("qemu-system-x86_64", args...)
	// QEMU's own messages go into the console log too, where they
	// happened.
	v.cmd.Stdout, v.cmd.Stderr = w, w
	// An open stdin that never sends anything: an EOF there is not wanted.
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		r.Close()
		w.Close()
		logf.Close()
		return nil, err
	}
	v.Started = time.Now()
	if err := v.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		logf.Close()
		return nil, fmt.Errorf("start QEMU for %s: %w", n.Name, err)
	}
	w.Close()
	v.con = newConsole(r, logf, v.Started)
	go func() {
		v.cmd.Wait()
		close(v.exited)
	}()
	c.vms = append(c.vms, v)
	t.Cleanup(func() {
		v.kill()
		v.stdin.Close()
		// The console ends when QEMU has exited; its log is complete then.
		v.con.waitDone(5 * time.Second)
		r.Close()
		logf.Close()
	})
	t.Logf("%s: QEMU pid %d (%s, MAC %s, %s, disk %s); console in %s", n.Name, v.cmd.Process.Pid, n.Firmware, n.MAC, n.Tap, n.Disk, v.Log)
	return v, nil
}

// RestartVM starts v's node again once its QEMU has exited (killed, or
// powered off): a new QEMU on the same tap, with the same MAC and the
// same disk file (and a UEFI node's same variable store), so whatever the
// node wrote before is still there. It boots through the network again,
// and herd decides: install, or exit to the disk. It fails the test when v's QEMU still runs.
func (c *Cluster) RestartVM(v *VM) *VM {
	c.t.Helper()
	if !v.Exited() {
		c.t.Fatalf("qemutests: restart %s: its QEMU (pid %d) still runs; Kill it first", v.Node.Name, v.PID())
	}
	i := c.nodeIndex(v.Node.Name)
	if i < 0 {
		c.t.Fatalf("qemutests: restart %s: not a node of this cluster", v.Node.Name)
	}
	return c.StartVM(i)
}

// PID is QEMU's process ID.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// WaitFor waits at most d for a console line matching the regular
// expression pattern after the last match (or Mark), and returns that
// line; the next WaitFor looks after this match. It fails the test when
// the time is up or QEMU exits, showing the console's last lines.
func (v *VM) WaitFor(pattern string, d time.Duration) string {
	v.t.Helper()
	line, err := v.Wait(pattern, d)
	if err != nil {
		v.t.Fatalf("%v", err)
	}
	return line
}

// Wait is WaitFor returning an error instead of failing the test.
func (v *VM) Wait(pattern string, d time.Duration) (string, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return "", fmt.Errorf("%s: pattern %q: %w", v.Node.Name, pattern, err)
	}
	start, end, ok, why := v.con.waitFor(re, v.cursor, time.Now().Add(d))
	if !ok {
		return "", fmt.Errorf("%s: waited %v for /%s/ on the console: %s (%.0fs after QEMU started); console log %s, last %d lines:\n%s",
			v.Node.Name, d, pattern, why, time.Since(v.Started).Seconds(), v.Log, tailLines, v.con.tail(tailLines))
	}
	v.cursor = end
	return v.con.lineAt(start, end), nil
}

// Mark makes the next WaitFor look only at output from now on.
func (v *VM) Mark() { v.cursor = v.con.size() }

// WaitReset waits at most d for the firmware to start again after the
// last match: the machine was reset, or rebooted. It looks for the
// firmware's first line of a start (Firmware.StartPattern): SeaBIOS's
// banner, OVMF's PXE starting, or the iPXE ROM opening the card.
func (v *VM) WaitReset(d time.Duration) {
	v.t.Helper()
	v.WaitFor(v.Node.Firmware.StartPattern(), d)
}

// Console returns the console's text so far.
func (v *VM) Console() string { return v.con.text() }

// Tail returns the console's last n lines.
func (v *VM) Tail(n int) string { return v.con.tail(n) }

// Exited reports whether QEMU has exited.
func (v *VM) Exited() bool {
	select {
	case <-v.exited:
		return true
	default:
		return false
	}
}

// WaitExit waits at most d for QEMU to exit (the machine powered off, or
// reset with Options.NoReboot) and returns its exit status; it fails the
// test on timeout.
func (v *VM) WaitExit(d time.Duration) int {
	v.t.Helper()
	select {
	case <-v.exited:
		return v.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		v.t.Fatalf("%s: QEMU still running after %v; console log %s, last %d lines:\n%s", v.Node.Name, d, v.Log, tailLines, v.con.tail(tailLines))
		return -1
	}
}

// Kill kills QEMU (SIGKILL by PID), as pulling the power cord, and waits
// for it to exit.
func (v *VM) Kill() {
	v.t.Helper()
	v.kill()
}

func (v *VM) kill() {
	if v.Exited() {
		return
	}
	_ = v.cmd.Process.Kill() // ip netns exec exec'd QEMU: this PID is QEMU's
	select {
	case <-v.exited:
	case <-time.After(vmExitTimeout):
		v.t.Errorf("%s: QEMU (pid %d) did not exit within %v of SIGKILL", v.Node.Name, v.cmd.Process.Pid, vmExitTimeout)
	}
}

// Reset presses the machine's reset button (system_reset on QEMU's
// monitor); with -boot n it boots through the network again.
func (v *VM) Reset() {
	v.t.Helper()
	if err := v.hmp("system_reset"); err != nil {
		v.t.Fatalf("%s: reset: %v", v.Node.Name, err)
	}
}

// hmp runs one human monitor command and waits for the next prompt.
func (v *VM) hmp(cmd string) error {
	conn, err := net.DialTimeout("unix", v.monitor, monitorTimeout)
	if err != nil {
		return fmt.Errorf("QEMU monitor: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(monitorTimeout)); err != nil {
		return err
	}
	readPrompt := func() (string, error) {
		var got strings.Builder
		buf := make([]byte, 512)
		for !strings.Contains(got.String(), "(qemu) ") {
			n, err := conn.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				return got.String(), fmt.Errorf("QEMU monitor: %w (read %q)", err, got.String())
			}
		}
		return got.String(), nil
	}
	if _, err := readPrompt(); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return fmt.Errorf("QEMU monitor: %w", err)
	}
	_, err = readPrompt()
	return err
}
