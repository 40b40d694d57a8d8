package bmc

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
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  string
	}{
		{in: "ipmi://admin@10.0.0.101", want: Target{"ipmi", "admin", "10.0.0.101", 623}},
		{in: "ipmi://admin@bmc-n1.rack:6230", want: Target{"ipmi", "admin", "bmc-n1.rack", 6230}},
		{in: "redfish://root@[fd00::1]", want: Target{"redfish", "root", "fd00::1", 443}},
		{in: "ipmi://admin:secret@10.0.0.101", err: "the password does not go in the BMC URL"},
		{in: "ipmi://10.0.0.101", err: "no user"},
		{in: "ssh://admin@10.0.0.101", err: "want ipmi://USER@HOST or redfish://USER@HOST"},
		{in: "ipmi://admin@10.0.0.101:0", err: "port"},
		{in: "ipmi://admin@10.0.0.101:99999", err: "port"},
		{in: "redfish://admin@10.0.0.101/redfish/v1", err: "want only redfish://USER@HOST[:PORT]"},
		{in: "ipmi://admin@", err: "no host"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("Parse(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if tt.err != "" && err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Parse(%q): the error shows the password: %v", tt.in, err)
		}
		if tt.err == "" {
			if back, err := Parse(got.String()); err != nil || back != got {
				t.Errorf("%q: String %q parses as %+v, %v", tt.in, got.String(), back, err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"ipmi://admin@10.0.0.101", "redfish://root@[fd00::1]:8443", "ipmi://a:b@c", "ipmi://@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			return
		}
		if tg.User == "" || tg.Host == "" || tg.Port < 1 || tg.Port > 65535 {
			t.Fatalf("Parse(%q) = %+v", s, tg)
		}
		if back, err := Parse(tg.String()); err != nil || back != tg {
			t.Fatalf("%q: String %q parses as %+v, %v", s, tg.String(), back, err)
		}
	})
}

// sim is an OpenIPMI ipmi_sim BMC on 127.0.0.1: RMCP+ on a free UDP
// port, user admin, its chassis control a script that keeps the
// "hardware" state (power, boot device, resets) in a file.
type sim struct {
	target Target
	dir    string
}

const simPassword = "s3cret-bmc"

func startSim(t *testing.T) *sim {
	t.Helper()
	bin, err := exec.LookPath("ipmi_sim")
	if err != nil {
		t.Skip("ipmi_sim (Debian package openipmi) is not installed: make deps installs it")
	}
	dir := t.TempDir()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
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
  user 2 true "admin" "`+simPassword+`" admin 10 none md2 md5 straight
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
	s := &sim{target: Target{Scheme: "ipmi", User: "admin", Host: "127.0.0.1", Port: port}, dir: dir}
	// Ready when it answers a session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := Dial(ctx, s.target, simPassword, Options{Timeout: 500 * time.Millisecond, Retries: 1, CipherSuite: 3})
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

// state is the simulated chassis's PARM → VALUE.
func (s *sim) state(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "state"))
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

// ipmitool asks the simulator with Debian's ipmitool (a second, unrelated
// implementation of the protocol), when it is installed.
func (s *sim) ipmitool(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("ipmitool")
	if err != nil {
		t.Log("ipmitool is not installed: no cross-check")
		return ""
	}
	out, err := exec.Command(bin, append([]string{"-I", "lanplus", "-C", "3", "-H", s.target.Host, "-p", strconv.Itoa(s.target.Port), "-U", s.target.User, "-P", simPassword}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ipmitool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestIPMI drives a real BMC (OpenIPMI's ipmi_sim over RMCP+) through
// every action, and checks what the chassis saw and what ipmitool reads.
func TestIPMI(t *testing.T) {
	s := startSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, s.target, simPassword, Options{CipherSuite: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session in %v", time.Since(start))
	defer c.Close(ctx)
	if on, err := c.PowerOn(ctx); err != nil || on {
		t.Fatalf("power at start: %v, %v; want off", on, err)
	}
	if err := c.BootDevice(ctx, PXE, false, false); err != nil {
		t.Fatal(err)
	}
	if got := s.state(t)["boot"]; got != "pxe" {
		t.Errorf("boot device %q after BootDevice(PXE), want pxe", got)
	}
	if err := c.Power(ctx, On); err != nil {
		t.Fatal(err)
	}
	if on, err := c.PowerOn(ctx); err != nil || !on {
		t.Errorf("power after On: %v, %v", on, err)
	}
	if out := s.ipmitool(t, "chassis", "power", "status"); out != "" && !strings.Contains(out, "Chassis Power is on") {
		t.Errorf("ipmitool after On: %s", out)
	}
	if err := c.Power(ctx, Reset); err != nil {
		t.Fatal(err)
	}
	if got := s.state(t)["reset"]; got != "1" {
		t.Errorf("reset %q after Reset", got)
	}
	if err := c.BootDevice(ctx, Disk, false, false); err != nil {
		t.Fatal(err)
	}
	if got := s.state(t)["boot"]; got != "default" && got != "disk" {
		t.Errorf("boot device %q after BootDevice(Disk), want the disk", got)
	}
	if err := c.Power(ctx, Off); err != nil {
		t.Fatal(err)
	}
	if on, err := c.PowerOn(ctx); err != nil || on {
		t.Errorf("power after Off: %v, %v", on, err)
	}
	if out := s.ipmitool(t, "chassis", "power", "status"); out != "" && !strings.Contains(out, "Chassis Power is off") {
		t.Errorf("ipmitool after Off: %s", out)
	}
	if err := c.Power(ctx, Cycle); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(s.dir, "calls"))
	for _, want := range []string{"set boot pxe", "set power 1", "set reset 1", "set power 0"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("the chassis was never told %q:\n%s", want, calls)
		}
	}
}

// TestIPMIRefusals: a wrong password and a BMC that does not answer are
// errors naming the BMC, within a bounded time, never the password.
func TestIPMIRefusals(t *testing.T) {
	s := startSim(t)
	// A BMC that never answers: a socket that reads nothing.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentPort := silent.LocalAddr().(*net.UDPAddr).Port
	for _, tt := range []struct {
		name     string
		target   Target
		password string
		want     string
	}{
		{"wrong password", s.target, "not-the-password", s.target.String() + ": refused the user or password"},
		{"nothing there", Target{Scheme: "ipmi", User: "admin", Host: "127.0.0.1", Port: freeUDPPort(t)}, simPassword, "127.0.0.1"},
		{"no answer", Target{Scheme: "ipmi", User: "admin", Host: "127.0.0.1", Port: silentPort}, simPassword, "no answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c, err := Dial(context.Background(), tt.target, tt.password, Options{Timeout: 500 * time.Millisecond, Retries: 1, CipherSuite: 3})
			if err == nil {
				c.Close(context.Background())
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.password) {
				t.Errorf("error %q: want it to name %q and not show the password", err, tt.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
