// Package goldeninit is the init program of herd's golden image. The
// herd binary is the image's only program, and the kernel starts it as
// PID 1 twice, under the name init:
//
//  1. Initrd stage (/init in the boot partition's initrd.img, which holds
//     the marker file InitrdMarker): mount /proc, /sys and /dev; load the
//     kernel modules the present hardware asks for (by modalias, from the
//     initrd's /lib/modules) and ext4; find the root file system named by
//     root=UUID=... (or root=/dev/...) on the kernel command line, waiting
//     up to RootWait for it; mount it read-write on /newroot, move /dev,
//     /proc and /sys into it, make it the root (as switch_root does) and
//     execute its /sbin/init.
//
//  2. Root stage (/sbin/init on the root file system): read
//     /etc/hostname and /etc/machine-id, bring up the network interface
//     the systemd-networkd configuration in /etc/systemd/network matches
//     (else the first Ethernet interface) and ask DHCP for an address
//     (3 tries of 10 s) unless that configuration is static, print
//
//     herd-booted host=<hostname> ip=<address or none> machine-id=<id>
//
//     once on the console, sync, and power off.
//
// Any failure prints a message and powers the machine off after
// FailDelay: the golden system never hangs. The per-host files are the
// ones herd's agent rewrites when it installs a clone (package
// agent/customize), so a clone proves on its console that it was made
// its own.
package goldeninit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Paths the two stages agree on with the image builder.
const (
	// InitrdMarker exists only in the golden initrd: its presence makes
	// init run the initrd stage.
	InitrdMarker = "/herd-golden-initrd"
	// NewRoot is where the initrd stage mounts the root file system.
	NewRoot = "/newroot"
	// RootInit is the root file system's init (the herd binary).
	RootInit = "/sbin/init"
	// BootedPrefix starts the line the root stage prints.
	BootedPrefix = "herd-booted"
)

// Timings.
const (
	// RootWait bounds the wait for the root device to appear.
	RootWait = 30 * time.Second
	// DHCPTries and DHCPTimeout bound the DHCP exchange: each message is
	// sent up to DHCPTries times, DHCPTimeout apart.
	DHCPTries   = 3
	DHCPTimeout = 10 * time.Second
	// FailDelay is how long a failure stays on the console before the
	// machine powers off.
	FailDelay = 5 * time.Second
)

// Stage is which of the two stages runs.
type Stage int

// Stages.
const (
	StageInitrd Stage = iota + 1
	StageRoot
)

func (s Stage) String() string {
	switch s {
	case StageInitrd:
		return "initrd"
	case StageRoot:
		return "root"
	}
	return "unknown"
}

// Config is a run of init. Zero values are the machine's own.
type Config struct {
	// Console receives the messages and the herd-booted line; nil = the
	// process's standard output, and /dev/console when that is another
	// device.
	Console io.Writer
	// Stage forces a stage; 0 = StageInitrd when InitrdMarker exists,
	// else StageRoot.
	Stage Stage
}

// Run runs the stage of init this process is. On success the initrd
// stage does not return (it executes the root's init) and the root stage
// powers the machine off; on failure both print the error and power off
// after FailDelay. Run returns only when powering off fails, with the
// error.
func Run(ctx context.Context, cfg Config) error {
	c := newConsole(cfg.Console)
	st := cfg.Stage
	if st == 0 {
		st = StageRoot
		if _, err := os.Stat(InitrdMarker); err == nil {
			st = StageInitrd
		}
	}
	var err error
	switch st {
	case StageInitrd:
		err = initrdStage(ctx, c)
	case StageRoot:
		err = rootStage(ctx, c)
	default:
		err = fmt.Errorf("unknown stage %d", st)
	}
	if err != nil {
		c.printf("FAILED (%s stage): %v", st, err)
		c.printf("powering off in %v", FailDelay)
		time.Sleep(FailDelay)
	}
	return powerOff(c)
}

// powerOff syncs, remounts / read-only (best effort, so that the next
// capture of this disk is clean) and powers the machine off.
func powerOff(c *console) error {
	unix.Sync()
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	c.printf("power off: %v", err)
	return fmt.Errorf("power off: %w", err)
}

// mountPseudo mounts /proc, /sys and /dev (devtmpfs), and with all also
// tmpfs on /run and /tmp; a file system already there (EBUSY) is fine.
func mountPseudo(all bool) error {
	mounts := []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	}
	if all {
		mounts = append(mounts,
			struct{ src, dst, fstype string }{"tmpfs", "/run", "tmpfs"},
			struct{ src, dst, fstype string }{"tmpfs", "/tmp", "tmpfs"})
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

// readCmdline returns the kernel command line's words.
func readCmdline() ([]string, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("read the kernel command line: %w", err)
	}
	return strings.Fields(string(b)), nil
}

// console writes init's messages.
type console struct {
	ws []io.Writer
}

// newConsole writes to w, or to standard output and, when that is not
// the console device itself, to /dev/console.
func newConsole(w io.Writer) *console {
	if w != nil {
		return &console{ws: []io.Writer{w}}
	}
	c := &console{ws: []io.Writer{os.Stdout}}
	c.attach()
	return c
}

// attach adds /dev/console when it exists and standard output is another
// device (or none): once /dev is mounted, the kernel's console is
// reachable even when init was started without one.
func (c *console) attach() {
	if len(c.ws) != 1 || c.ws[0] != os.Stdout {
		return
	}
	var out, con unix.Stat_t
	if err := unix.Stat("/dev/console", &con); err != nil {
		return
	}
	if err := unix.Fstat(1, &out); err == nil && out.Mode&unix.S_IFMT == unix.S_IFCHR && out.Rdev == con.Rdev {
		return
	}
	f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	c.ws = append(c.ws, f)
}

// printf prints a message line, prefixed "herd-init: ".
func (c *console) printf(format string, args ...any) {
	c.line("herd-init: " + fmt.Sprintf(format, args...))
}

// line prints s and a newline on every console, in one write each.
func (c *console) line(s string) {
	b := []byte(s + "\n")
	for _, w := range c.ws {
		_, _ = w.Write(b)
	}
}
