//go:build nettest

package pxetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// TestPXEServices runs `herd pxe` with every service on a veth of the
// test's, and boots a client the way firmware and iPXE do: DHCP (as iPXE:
// user class "iPXE") for its reservation and script URL, the BIOS boot file
// over TFTP, the script over HTTP; then the status page and the metrics.
func TestPXEServices(t *testing.T) {
	const mac = "52:54:00:25:11:21"
	ns := newNetns(t, "pxe", "10.251.1.1", mac, "10.251.1.21") // the client uses its reservation, as firmware does after DHCP
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.251.1.0/24\nrouter 10.251.1.1\ndomain rack.test\nnode "+mac+" r1n1 10.251.1.21\n"), 0o644)
	srv := start(t, dir, herdBin, "pxe", "--interface", ns.hostIf, "--inventory", inv, "--state-dir", filepath.Join(dir, "state"),
		"--boot-dir", filepath.Join(dir, "boot"), "--http-port", "18081", "--tftp-port", "16970")
	waitTCP(t, "10.251.1.1:18081", 10*time.Second)

	// DHCP, as iPXE asks: the reservation and the script's URL.
	var c *nclient4.Client
	if err := ns.Do(func() (err error) {
		c, err = nclient4.New(ns.nodeIf, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := c.Request(ctx, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	if err != nil {
		t.Fatalf("DHCP: %v\n%s", err, srv.errb.String())
	}
	ack := lease.ACK
	if got := ack.YourIPAddr.String(); got != "10.251.1.21" {
		t.Errorf("address %s, want the reservation 10.251.1.21", got)
	}
	if got := ack.HostName(); got != "r1n1" {
		t.Errorf("hostname %q, want r1n1", got)
	}
	wantURL := "http://10.251.1.1:18081/boot/" + mac + ".ipxe"
	if got := ack.BootFileNameOption(); got != wantURL {
		t.Errorf("boot file %q, want %q", got, wantURL)
	}

	waitSeen(t, "dhcp ipxe")

	// TFTP, as the firmware fetches iPXE: the file Debian's ipxe ships.
	out, err := ns.Command("curl", "-s", "--max-time", "20", "tftp://10.251.1.1:16970/undionly.kpxe").Output()
	if err != nil {
		t.Fatalf("tftp: %v", err)
	}
	want, err := os.ReadFile("/usr/lib/ipxe/undionly.kpxe")
	if err != nil {
		t.Fatalf("Debian's ipxe package: %v", err)
	}
	if !bytes.Equal(out, want) {
		t.Errorf("undionly.kpxe over TFTP: %d bytes, want %d", len(out), len(want))
	}
	waitSeen(t, "tftp undionly.kpxe")

	// HTTP: the install script, the status page and the metrics.
	if s := httpGet(t, wantURL); !strings.HasPrefix(s, "#!ipxe") || !strings.Contains(s, "kernel ") || !strings.Contains(s, "herd.name=r1n1") {
		t.Errorf("install script:\n%s", s)
	}
	if s := httpGet(t, "http://10.251.1.1:18081/"); !strings.Contains(s, "r1n1") || !strings.Contains(s, "booting") {
		t.Errorf("status page lacks r1n1 booting:\n%s", s)
	}
	if s := httpGet(t, "http://10.251.1.1:18081/metrics"); !strings.Contains(s, `herd_nodes{state="booting"} 1`) {
		t.Errorf("metrics:\n%s", s)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.wait(t, 15*time.Second); code != 0 {
		t.Errorf("herd pxe exit %d after SIGTERM, want 0", code)
	}
}

// waitSeen waits until the boot services have recorded that they saw
// node r1n1 (DHCP, TFTP) by, before it asked for its boot entry: the
// API says so, and its state did not change.
func waitSeen(t *testing.T, by string) {
	t.Helper()
	waitStatus(t, "http://10.251.1.1:18081", "r1n1", 5*time.Second, "seen by "+by+" and still unknown", func(st inventory.Status) bool {
		return st.SeenBy == by && st.State == contract.StateUnknown && time.Since(st.Seen) < time.Minute
	})
}

// A bad inventory is refused before anything is served: file:line, exit 2.
func TestBadInventory(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory")
	os.WriteFile(inv, []byte("subnet 10.9.0.0/24\nnode 52:54:00:00:00:01 a 10.9.0.5\nnode 52:54:00:00:00:01 b 10.9.0.6\n"), 0o644)
	cmd := exec.Command(herdBin, "pxe", "--interface", "lo", "--inventory", inv, "--state-dir", filepath.Join(dir, "s"), "--boot-dir", filepath.Join(dir, "b"))
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if cmd.ProcessState.ExitCode() != 2 {
		t.Fatalf("exit %v, want 2; stderr: %s", err, errb.String())
	}
	if !strings.Contains(errb.String(), inv+":3:") {
		t.Errorf("message lacks %s:3: %s", inv, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); err == nil {
		t.Error("the boot directory was created for a bad inventory")
	}
}
