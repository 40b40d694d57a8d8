// Package bmctest runs a real BMC for tests: OpenIPMI's ipmi_sim
// (Debian's openipmi) answering IPMI 2.0 over LAN (RMCP+) on 127.0.0.1,
// whose chassis control is a script that keeps the "hardware" state
// (power, boot device, resets) in a file the test reads.
package bmctest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/bmc"
)

// User and Password are the simulated BMC's administrator.
const (
	User     = "admin"
	Password = "s3cret-bmc"
)

// Sim is a running ipmi_sim.
type Sim struct {
	// Target is where it answers.
	Target bmc.Target
	dir    string
}

// Start starts a simulated BMC, stopped (by PID) when t ends. It skips
// the test when ipmi_sim is not installed (make deps installs it).
func Start(t testing.TB) *Sim {
	t.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		t.Skip("ipmi_sim (Debian package openipmi) is not installed: make deps installs it")
	}
	dir := t.TempDir()
	port := FreeUDPPort(t)
	script := filepath.Join(dir, "chassis")
	// ipmi_sim runs it as: MC get PARM... (answer PARM:VALUE lines) or
	// MC set PARM VALUE...
	if err := os.WriteFile(script, []byte(`#!/bin/sh
st="`+dir+`/state"
[ -f "$st" ] || echo power:0 > "$st"
echo "$*" >> "`+dir+`/calls"
shift
op=$1; shift
case $op in
get) for p in "$@"; do grep "^$p:" "$st" || echo "$p:0"; done;;
set) while [ $# -ge 2 ]; do grep -v "^$1:" "$st" > "$st.new"; echo "$1:$2" >> "$st.new"; mv "$st.new" "$st"; shift 2; done;;
esac
`), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "lan.conf")
	if err := os.WriteFile(conf, []byte(`name "herdtest"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 `+strconv.Itoa(port)+`
    priv_limit admin
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "`+script+` 0x20"
  user 2 true "`+User+`" "`+Password+`" admin 10 none md2 md5 straight
`), 0o644); err != nil {
		t.Fatal(err)
	}
	emu := filepath.Join(dir, "bmc.emu")
	if err := os.WriteFile(emu, []byte("mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "simstate")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf, "-f", emu, "-s", state, "-n")
	out, err := os.Create(filepath.Join(dir, "ipmi_sim.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID: the simulator this test started
		<-done
	})
	s := &Sim{Target: bmc.Target{Scheme: "ipmi", User: User, Host: "127.0.0.1", Port: port}, dir: dir}
	// Ready when it answers a session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := bmc.Dial(ctx, s.Target, Password, bmc.Options{Timeout: 500 * time.Millisecond, Retries: 1, CipherSuite: 3})
		cancel()
		if err == nil {
			c.Close(context.Background())
			return s
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.log"))
			t.Fatalf("ipmi_sim did not answer within 10s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// State is the simulated chassis's PARM → VALUE: "power" ("0", "1"),
// "boot" ("pxe", "default"...), "reset" ("1" after a reset).
func (s *Sim) State(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "state"))
	if os.IsNotExist(err) {
		return map[string]string{"power": "0"}
	}
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Calls are the chassis script's calls so far, one per line ("0x20 set
// power 1").
func (s *Sim) Calls() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "calls"))
	return string(b)
}

// IPMItool asks the simulator with Debian's ipmitool (a second, unrelated
// implementation of the protocol); "" when ipmitool is not installed.
func (s *Sim) IPMItool(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("ipmitool")
	if err != nil {
		t.Log("ipmitool is not installed: no cross-check")
		return ""
	}
	out, err := exec.Command(bin, append([]string{"-I", "lanplus", "-C", "3", "-H", s.Target.Host, "-p", strconv.Itoa(s.Target.Port), "-U", s.Target.User, "-P", Password}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// FreeUDPPort is a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
