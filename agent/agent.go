// Package agent is the program a node's herd initramfs runs (u-root's init
// starts it as uinit): it prepares the machine, gets the node's identity
// from DHCP, registers with the management host, receives the images as a
// ring node, customizes the installed system, reports, and reboots.
//
// Every step prints a header and its duration on the console. The same code
// runs as a plain process for tests (`herd agent --root-dir DIR
// --no-reboot`), where the machine-level steps (mounting /proc, loading
// modules, rebooting) are skipped.
package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/herdproject/herd/agent/cmdline"
)

// Config is an agent run. Settings come from the kernel command line;
// the rest is for running the agent as a process.
type Config struct {
	Settings cmdline.Settings
	// AsInit: the agent is the machine's init (u-root uinit): mount the
	// pseudo-filesystems, load modules, reboot or kexec at the end.
	AsInit bool
	// ModulesDir is /lib/modules/<version> (AsInit only).
	ModulesDir string
	// Interface overrides the boot interface choice.
	Interface string
	// NoReboot ends the run instead of rebooting (tests, herd.debug).
	NoReboot bool
	// Console receives the step headers and messages; nil = discard.
	Console io.Writer
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// Identity is what DHCP and registration told the node about itself.
type Identity struct {
	Interface string
	MAC       net.HardwareAddr
	Addr      netip.Prefix
	Gateway   netip.Addr
	DNS       []netip.Addr
	Hostname  string
	Domain    string
	// NextServer is the DHCP next-server (siaddr).
	NextServer netip.Addr
	// Server is the management host's base URL ("http://10.0.0.1:8080").
	Server string
	// Name is the node's inventory name (registration's answer).
	Name string
}

// console prints agent output with step headers.
type console struct {
	w   io.Writer
	now func() time.Time
}

func (c *console) printf(format string, args ...any) {
	fmt.Fprintf(c.w, format+"\n", args...)
}

// step runs fn under a header "== herd: NAME" and prints its duration.
func (c *console) step(name string, fn func() error) error {
	start := c.now()
	c.printf("== herd: %s", name)
	err := fn()
	d := c.now().Sub(start).Round(time.Millisecond)
	if err != nil {
		c.printf("== herd: %s FAILED after %v: %v", name, d, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	c.printf("== herd: %s done in %v", name, d)
	return nil
}

// Run is the agent: it returns when the node is installed (or failed) and
// reported, just before the reboot (which it performs when AsInit and not
// NoReboot).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Console == nil {
		cfg.Console = io.Discard
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &agent{cfg: cfg, con: &console{w: cfg.Console, now: cfg.Now}}
	return a.run(ctx)
}
