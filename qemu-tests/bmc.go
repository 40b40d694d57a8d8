package qemutests

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herdproject/herd/bmc"
)

// The nodes' BMCs (Options.BMC): one OpenIPMI ipmi_sim per node inside
// the cluster's namespace, answering IPMI 2.0 over LAN (RMCP+) on the
// boot network at ServerIP:BMCPort(k), and a serial interface with
// OpenIPMI's VM codec on the namespace's loopback that the node's QEMU
// connects to (ipmi-bmc-extern behind an isa-ipmi-kcs: the guest sees a
// KCS BMC). ipmi_sim's chassis control is a script that asks the harness
// over a unix socket, and the harness is the chassis: "power 1" starts
// the node's QEMU, "power 0" kills it, "reset 1" resets it through QEMU's
// monitor, "boot" keeps the boot device. A power cycle is ipmi_sim's
// "power 0" then, a second later, "power 1".
const (
	// BMCUser is every simulated BMC's administrator.
	BMCUser = "admin"
	// bmcPassword is in Cluster.BMCPasswordFile.
	bmcPassword = "herd-qemu-bmc"
	// bmcLANPort + k is node k's (1-based) IPMI LAN port; bmcVMPort + k
	// its VM serial port on the namespace's loopback.
	bmcLANPort = 6230
	bmcVMPort  = 9100
	// bmcReady bounds the wait for a started ipmi_sim to answer.
	bmcReady = 15 * time.Second
)

// bmcTarget is node k's (1-based) BMC as herd is told.
func bmcTarget(k int) bmc.Target {
	return bmc.Target{Scheme: "ipmi", User: BMCUser, Host: ServerIP, Port: bmcLANPort + k}
}

// bmcs is the cluster's chassis side: the unix-socket server the
// chassis scripts ask, and what each node's chassis did.
type bmcs struct {
	mu     sync.Mutex
	closed bool
	hold   map[string]int      // node → power-ons left that start with the CPU held
	boot   map[string]string   // node → boot device ipmi_sim set ("pxe", "default")
	events map[string][]string // node → what its chassis did
	sims   []*exec.Cmd
}

// startBMCs starts every node's ipmi_sim and the chassis server; all are
// stopped (by PID) at cleanup.
func (c *Cluster) startBMCs() {
	t := c.t
	t.Helper()
	for _, bin := range []string{"ipmi_sim", "ipmitool", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skip(bin + " is not installed (Debian packages openipmi, ipmitool, curl): make deps installs them")
		}
	}
	b := &bmcs{hold: map[string]int{}, boot: map[string]string{}, events: map[string][]string{}}
	c.bmc = b
	c.BMCPasswordFile = filepath.Join(c.LogDir, "bmc-password")
	if err := os.WriteFile(c.BMCPasswordFile, []byte(bmcPassword+"\n"), 0o600); err != nil {
		t.Fatalf("qemutests: %v", err)
	}
	sock := filepath.Join(c.sockDir, "chassis.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("qemutests: chassis socket: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(c.serveChassis), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		for _, cmd := range b.sims {
			_ = cmd.Process.Kill() // by PID: the simulators this cluster started
			_ = cmd.Wait()
		}
		srv.Close()
	})
	for i, n := range c.Nodes {
		k := i + 1
		dir := filepath.Join(c.LogDir, "bmc-"+n.Name)
		if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
			t.Fatalf("qemutests: %v", err)
		}
		script := filepath.Join(dir, "chassis")
		// ipmi_sim runs "SCRIPT 0x20 get PARM..." (answer PARM:VALUE
		// lines) and "SCRIPT 0x20 set PARM VALUE...".
		files := map[string]string{
			script: "#!/bin/sh\n# ipmi_sim's chassis control of " + n.Name + ": the qemu-tests harness is its chassis.\nshift\nIFS=/\nexec curl -sS --fail-with-body --max-time 60 --unix-socket " + sock + " \"http://chassis/" + n.Name + "/$*\"\n",
			filepath.Join(dir, "lan.conf"): fmt.Sprintf(`name "%s"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_admin none md2 md5 straight
    guid a1234567%024x
  endlan
  serial kcs 127.0.0.1 %d codec VM
  chassis_control "%s 0x20"
  user 2 true "%s" "%s" admin 10 none md2 md5 straight
`, n.Name, ServerIP, bmcLANPort+k, k, bmcVMPort+k, script, BMCUser, bmcPassword),
			filepath.Join(dir, "bmc.emu"): "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n",
		}
		for p, text := range files {
			if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
				t.Fatalf("qemutests: %v", err)
			}
		}
		logf, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
		if err != nil {
			t.Fatalf("qemutests: %v", err)
		}
		cmd := c.NS.Command("ipmi_sim", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "bmc.emu"), "-s", filepath.Join(dir, "state"), "-n")
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close()
		if err != nil {
			t.Fatalf("qemutests: start ipmi_sim for %s: %v", n.Name, err)
		}
		b.sims = append(b.sims, cmd)
	}
	deadline := time.Now().Add(bmcReady)
	for _, n := range c.Nodes {
		for {
			out, err := c.IPMItool(n.Name, "chassis", "power", "status")
			if err == nil && strings.Contains(out, "Chassis Power is off") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("qemutests: %s's BMC (ipmi_sim, log in %s) did not answer within %v: %v\n%s", n.Name, filepath.Join(c.LogDir, "bmc-"+n.Name), bmcReady, err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	t.Logf("BMCs: ipmi_sim for %d node(s) on %s:%d-%d (user %s, password in %s)", len(c.Nodes), ServerIP, bmcLANPort+1, bmcLANPort+len(c.Nodes), BMCUser, c.BMCPasswordFile)
}

// bmcArgs are node i's QEMU arguments for its BMC: none without one.
func (c *Cluster) bmcArgs(i int) []string {
	if c.bmc == nil {
		return nil
	}
	return []string{
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=127.0.0.1,port=%d,reconnect=2", bmcVMPort+i+1),
		"-device", "ipmi-bmc-extern,chardev=ipmi0,id=bmc0",
		"-device", "isa-ipmi-kcs,bmc=bmc0",
	}
}

// serveChassis answers a chassis script: /NODE/get/PARM... or
// /NODE/set/PARM/VALUE...
func (c *Cluster) serveChassis(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 3 {
		http.Error(w, "want /NODE/get/PARM... or /NODE/set/PARM/VALUE...", http.StatusBadRequest)
		return
	}
	name, op, args := parts[0], parts[1], parts[2:]
	i := c.nodeIndex(name)
	if i < 0 {
		http.Error(w, "no node "+name, http.StatusNotFound)
		return
	}
	b := c.bmc
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		http.Error(w, "the cluster is being torn down", http.StatusServiceUnavailable)
		return
	}
	switch op {
	case "get":
		for _, p := range args {
			fmt.Fprintf(w, "%s:%s\n", p, c.chassisGet(name, p))
		}
	case "set":
		if len(args)%2 != 0 {
			http.Error(w, "set wants PARM VALUE pairs", http.StatusBadRequest)
			return
		}
		for j := 0; j < len(args); j += 2 {
			if err := c.chassisSet(i, args[j], args[j+1]); err != nil {
				c.t.Logf("%s: chassis: set %s %s: %v", name, args[j], args[j+1], err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
	default:
		http.Error(w, "unknown operation "+op, http.StatusBadRequest)
	}
}

// chassisGet is a chassis parameter of node name (b.mu held).
func (c *Cluster) chassisGet(name, p string) string {
	switch p {
	case "power":
		if v := c.lastVM(name); v != nil && !v.Exited() {
			return "1"
		}
		return "0"
	case "boot":
		if d := c.bmc.boot[name]; d != "" {
			return d
		}
		return "default"
	}
	return "0"
}

// chassisSet carries out a chassis action on node i (b.mu held).
func (c *Cluster) chassisSet(i int, p, val string) error {
	b := c.bmc
	name := c.Nodes[i].Name
	v := c.lastVM(name)
	on := v != nil && !v.Exited()
	event := ""
	switch {
	case p == "power" && val == "1" && !on:
		var extra []string
		if b.hold[name] > 0 {
			b.hold[name]--
			extra = []string{"-S"}
			event = "power on (CPU held)"
		} else {
			event = "power on"
		}
		if _, err := c.startVM(i, extra); err != nil {
			return err
		}
	case p == "power" && val == "0" && on:
		v.kill()
		event = "power off"
	case p == "power":
		event = "power " + val + " (no change)"
	case p == "reset" && val == "1" && on:
		if err := v.hmp("system_reset"); err != nil {
			return err
		}
		event = "reset"
	case p == "reset":
		event = "reset (powered off: nothing to do)"
	case p == "boot":
		b.boot[name] = val
		event = "boot " + val
	default:
		return fmt.Errorf("unknown chassis parameter %s", p)
	}
	b.events[name] = append(b.events[name], event)
	c.t.Logf("%s: BMC: %s", name, event)
	return nil
}

// HoldCPU makes node name's next power-on through its BMC start its VM
// with the CPU held (QEMU -S): a machine that hangs before its firmware
// runs, never asks DHCP, and waits for a power cycle.
func (c *Cluster) HoldCPU(name string) {
	c.t.Helper()
	if c.bmc == nil {
		c.t.Fatalf("qemutests: HoldCPU %s: the cluster has no BMCs (Options.BMC)", name)
	}
	c.bmc.mu.Lock()
	defer c.bmc.mu.Unlock()
	c.bmc.hold[name]++
}

// BMCEvents is what node name's chassis did so far, in order: "power
// on", "power on (CPU held)", "power off", "reset", "boot pxe"...
func (c *Cluster) BMCEvents(name string) []string {
	if c.bmc == nil {
		return nil
	}
	c.bmc.mu.Lock()
	defer c.bmc.mu.Unlock()
	return append([]string(nil), c.bmc.events[name]...)
}

// IPMItool runs Debian's ipmitool against node name's BMC inside the
// namespace (a second implementation of the protocol, to cross-check
// herd), bounded by a minute.
func (c *Cluster) IPMItool(name string, args ...string) (string, error) {
	i := c.nodeIndex(name)
	if i < 0 || c.bmc == nil {
		return "", fmt.Errorf("no BMC for node %q", name)
	}
	t := bmcTarget(i + 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"-I", "lanplus", "-C", "3", "-H", t.Host, "-p", strconv.Itoa(t.Port), "-U", t.User, "-f", c.BMCPasswordFile}, args...)
	cmd := c.NS.CommandContext(ctx, "ipmitool", full...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("ipmitool %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// RunHerdNS runs herd with args inside the cluster's namespace (where
// the BMCs and the boot network are), bounded by d, and fails the test
// when it fails.
func (c *Cluster) RunHerdNS(d time.Duration, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := c.NS.CommandContext(ctx, c.Herd, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("herd %s (in namespace %s): %v\n%s", strings.Join(args, " "), c.NS.Name, errors.Join(err, ctx.Err()), out)
	}
	return string(out)
}

// WaitVM waits at most d for node name's start-th VM (1: its first
// power-on) and returns it; it fails the test when the time is up.
func (c *Cluster) WaitVM(name string, start int, d time.Duration) *VM {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := 0
		for _, v := range c.allVMs() {
			if v.Node.Name == name {
				if n++; n == start {
					return v
				}
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("qemutests: %s: %d start(s) of its VM within %v, want %d; its BMC did: %s", name, n, d, start, strings.Join(c.BMCEvents(name), ", "))
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lastVM is node name's latest VM, nil before its first start.
func (c *Cluster) lastVM(name string) *VM {
	var last *VM
	for _, v := range c.allVMs() {
		if v.Node.Name == name {
			last = v
		}
	}
	return last
}

// allVMs is every VM started so far, in order.
func (c *Cluster) allVMs() []*VM {
	c.vmMu.Lock()
	defer c.vmMu.Unlock()
	return append([]*VM(nil), c.vms...)
}

// nodeIndex is node name's index in Nodes, -1 when none.
func (c *Cluster) nodeIndex(name string) int {
	for i, n := range c.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}
