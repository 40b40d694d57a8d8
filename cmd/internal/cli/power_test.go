package cli

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/bmc"
	"github.com/herdproject/herd/bmc/bmctest"
	"github.com/herdproject/herd/pxe/inventory"
)

// TestPower drives two real BMCs (ipmi_sim) and a node without one
// through herd power, as an administrator types it.
func TestPower(t *testing.T) {
	s1, s2 := bmctest.Start(t), bmctest.Start(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	bmcOf := func(s *bmctest.Sim) string { return "bmc=ipmi://admin@127.0.0.1:" + strconv.Itoa(s.Target.Port) }
	if err := os.WriteFile(inv, []byte("subnet 10.0.0.0/24\n"+
		"node 52:54:00:00:00:01 n1 10.0.0.11 "+bmcOf(s1)+"\n"+
		"node 52:54:00:00:00:02 n2 10.0.0.12 "+bmcOf(s2)+"\n"+
		"node 52:54:00:00:00:03 n3 10.0.0.13\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pw, []byte(bmctest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pw")
	if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--inventory", inv, "--bmc-password-file", pw, "--cipher-suite", "3", "--timeout", "1s"}
	steps := []struct {
		args     []string
		env      map[string]string
		code     int
		out, err []string
		check    func(t *testing.T)
	}{
		{args: append([]string{"status", "all"}, common...), code: ExitOK,
			out: []string{"n1: off\n", "n2: off\n", "n3: no bmc= in the inventory: its power is yours\n"}},
		{args: append([]string{"bootdev", "pxe", "n1", "n2"}, common...), code: ExitOK,
			out: []string{"n1: boots from pxe (next boot)\n", "n2: boots from pxe (next boot)\n"},
			check: func(t *testing.T) {
				if s1.State(t)["boot"] != "pxe" || s2.State(t)["boot"] != "pxe" {
					t.Errorf("boot devices %v, %v", s1.State(t), s2.State(t))
				}
			}},
		{args: append([]string{"on", "n1", "n2"}, common...), code: ExitOK, out: []string{"n1: power on\n", "n2: power on\n"},
			check: func(t *testing.T) {
				if s1.State(t)["power"] != "1" || s2.State(t)["power"] != "1" {
					t.Errorf("power %v, %v", s1.State(t), s2.State(t))
				}
				if out := s1.IPMItool(t, "chassis", "power", "status"); out != "" && !strings.Contains(out, "is on") {
					t.Errorf("ipmitool: %s", out)
				}
			}},
		{args: append([]string{"reset", "n2"}, common...), code: ExitOK, out: []string{"n2: power reset\n"},
			check: func(t *testing.T) {
				if s2.State(t)["reset"] != "1" || s1.State(t)["reset"] == "1" {
					t.Errorf("reset %v, %v", s1.State(t), s2.State(t))
				}
			}},
		{args: append([]string{"off", "n1"}, common...), code: ExitOK, out: []string{"n1: power off\n"},
			check: func(t *testing.T) {
				if s1.State(t)["power"] != "0" || s2.State(t)["power"] != "1" {
					t.Errorf("power %v, %v", s1.State(t), s2.State(t))
				}
			}},
		// The password from the environment.
		{args: []string{"status", "n2", "--inventory", inv}, env: map[string]string{"HERD_BMC_PASSWORD": bmctest.Password},
			code: ExitOK, out: []string{"n2: on\n"}},
		// Named without a BMC: failed, the others done.
		{args: append([]string{"status", "n3", "n1"}, common...), code: ExitFailed, out: []string{"n1: off\n", "n3: no bmc= "}},
		// Refused credentials fail each node, naming its BMC.
		{args: []string{"status", "n1", "--inventory", inv, "--bmc-password-file", bad, "--cipher-suite", "3"}, code: ExitFailed,
			out: []string{"n1: failed: " + s1.Target.String() + ": refused the user or password"}},
		// Bad usage.
		{args: append([]string{"on", "n1", "-P", "secret"}, common...), code: ExitUsage, err: []string{"-P: a password on the command line is visible"}},
		{args: append([]string{"on", "n1", "--bmc-password=secret"}, common...), code: ExitUsage, err: []string{"--bmc-password-file FILE"}},
		{args: []string{"on", "n1", "--inventory", inv}, code: ExitUsage, err: []string{"no BMC password: give --bmc-password-file FILE or set $HERD_BMC_PASSWORD"}},
		{args: append([]string{"on", "n9"}, common...), code: ExitUsage, err: []string{`no node "n9" in inventory ` + inv}},
		{args: append([]string{"wake", "n1"}, common...), code: ExitUsage, err: []string{`unknown power action "wake"`}},
		{args: append([]string{"bootdev", "usb", "n1"}, common...), code: ExitUsage, err: []string{"want herd power bootdev pxe|disk"}},
		{args: append([]string{"bootdev", "pxe", "n1", "--efi", "--legacy"}, common...), code: ExitUsage, err: []string{"--efi and --legacy: give one"}},
		{args: append([]string{"status", "n1", "--bmc-ca-file", inv}, common...), code: ExitUsage, err: []string{"--bmc-ca-file " + inv + ": no PEM certificate in it"}},
		{args: append([]string{"status", "n1", "--bmc-ca-file", inv + ".missing"}, common...), code: ExitUsage, err: []string{"--bmc-ca-file: open " + inv + ".missing"}},
	}
	for _, st := range steps {
		getenv := func(k string) string { return st.env[k] }
		code, out, errOut := runEnv(Herd, getenv, append([]string{"power"}, st.args...)...)
		if code != st.code {
			t.Errorf("herd power %s: exit %d, want %d\nstdout:\n%sstderr:\n%s", strings.Join(st.args, " "), code, st.code, out, errOut)
		}
		for _, w := range st.out {
			if !strings.Contains(out, w) {
				t.Errorf("herd power %s: stdout lacks %q:\n%s", strings.Join(st.args, " "), w, out)
			}
		}
		for _, w := range st.err {
			if !strings.Contains(errOut, w) {
				t.Errorf("herd power %s: stderr lacks %q:\n%s", strings.Join(st.args, " "), w, errOut)
			}
		}
		if strings.Contains(out+errOut, bmctest.Password) {
			t.Errorf("herd power %s: the password is in the output", strings.Join(st.args, " "))
		}
		if st.check != nil {
			st.check(t)
		}
	}
}

// TestBMCPower: herd serve --power's campaign.Power against a real BMC
// (ipmi_sim): Install sets the network boot and powers a node on (cycles
// it when it is on), Cycle sets the network boot again and cycles it,
// Disk sets the disk.
func TestBMCPower(t *testing.T) {
	s := bmctest.Start(t)
	n := inventory.Node{Name: "n1", BMC: s.Target.String()}
	p := &bmcPower{password: bmctest.Password, opts: bmc.Options{CipherSuite: 3, Timeout: time.Second}}
	ctx := context.Background()
	if !p.Has(n) || p.Has(inventory.Node{Name: "n2"}) {
		t.Fatal("Has")
	}
	if err := p.Install(ctx, n); err != nil {
		t.Fatal(err)
	}
	if st := s.State(t); st["power"] != "1" || st["boot"] != "pxe" {
		t.Errorf("after Install: %v", st)
	}
	if err := p.Install(ctx, n); err != nil { // on already: a cycle
		t.Fatal(err)
	}
	if err := p.Cycle(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := p.Disk(ctx, n); err != nil {
		t.Fatal(err)
	}
	// (ipmi_sim powers a cycled node on again a moment later.)
	if st := s.State(t); st["boot"] == "pxe" || st["boot"] == "" {
		t.Errorf("after Disk: %v", st)
	}
	// Install on a node that is on cycles it: power off then on.
	if calls := s.Calls(); strings.Count(calls, "set power 0") < 2 || strings.Count(calls, "set boot pxe") < 3 {
		t.Errorf("chassis calls:\n%s", calls)
	}
}
