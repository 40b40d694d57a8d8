package bmc_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/bmc"
	"github.com/herdproject/herd/bmc/bmctest"
)

// TestIPMI drives a real BMC (OpenIPMI's ipmi_sim over RMCP+) through
// every action, and checks what the chassis saw and what ipmitool reads.
func TestIPMI(t *testing.T) {
	s := bmctest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	c, err := bmc.Dial(ctx, s.Target, bmctest.Password, bmc.Options{CipherSuite: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("session in %v", time.Since(start))
	defer c.Close(ctx)
	if on, err := c.PowerOn(ctx); err != nil || on {
		t.Fatalf("power at start: %v, %v; want off", on, err)
	}
	if err := c.BootDevice(ctx, bmc.PXE, bmc.ModeKeep, false); err != nil {
		t.Fatal(err)
	}
	if got := s.State(t)["boot"]; got != "pxe" {
		t.Errorf("boot device %q after BootDevice(PXE), want pxe", got)
	}
	if err := c.Power(ctx, bmc.On); err != nil {
		t.Fatal(err)
	}
	if on, err := c.PowerOn(ctx); err != nil || !on {
		t.Errorf("power after On: %v, %v", on, err)
	}
	if out := s.IPMItool(t, "chassis", "power", "status"); out != "" && !strings.Contains(out, "Chassis Power is on") {
		t.Errorf("ipmitool after On: %s", out)
	}
	if err := c.Power(ctx, bmc.Reset); err != nil {
		t.Fatal(err)
	}
	if got := s.State(t)["reset"]; got != "1" {
		t.Errorf("reset %q after Reset", got)
	}
	if err := c.BootDevice(ctx, bmc.Disk, bmc.ModeLegacy, false); err != nil {
		t.Fatal(err)
	}
	if got := s.State(t)["boot"]; got != "default" && got != "disk" {
		t.Errorf("boot device %q after BootDevice(Disk), want the disk", got)
	}
	if err := c.Power(ctx, bmc.Off); err != nil {
		t.Fatal(err)
	}
	if on, err := c.PowerOn(ctx); err != nil || on {
		t.Errorf("power after Off: %v, %v", on, err)
	}
	if out := s.IPMItool(t, "chassis", "power", "status"); out != "" && !strings.Contains(out, "Chassis Power is off") {
		t.Errorf("ipmitool after Off: %s", out)
	}
	if err := c.Power(ctx, bmc.Cycle); err != nil {
		t.Fatal(err)
	}
	calls := s.Calls()
	for _, want := range []string{"set boot pxe", "set power 1", "set reset 1", "set power 0"} {
		if !strings.Contains(calls, want) {
			t.Errorf("the chassis was never told %q:\n%s", want, calls)
		}
	}
}

// TestIPMIRefusals: a wrong password and a BMC that does not answer are
// errors naming the BMC, within a bounded time, never the password.
func TestIPMIRefusals(t *testing.T) {
	s := bmctest.Start(t)
	// A BMC that never answers: a socket that reads nothing.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silentPort := silent.LocalAddr().(*net.UDPAddr).Port
	for _, tt := range []struct {
		name     string
		target   bmc.Target
		password string
		want     string
	}{
		{"wrong password", s.Target, "not-the-password", s.Target.String() + ": refused the user or password"},
		{"nothing there", bmc.Target{Scheme: "ipmi", User: "admin", Host: "127.0.0.1", Port: bmctest.FreeUDPPort(t)}, bmctest.Password, "127.0.0.1"},
		{"no answer", bmc.Target{Scheme: "ipmi", User: "admin", Host: "127.0.0.1", Port: silentPort}, bmctest.Password, "no answer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			c, err := bmc.Dial(context.Background(), tt.target, tt.password, bmc.Options{Timeout: 500 * time.Millisecond, Retries: 1, CipherSuite: 3})
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
