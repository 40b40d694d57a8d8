//go:build qemu

package qemutests

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// Bounds on the boot steps under TCG on a busy 2-core host (a VM takes
// about 15 s from reset to the agent when alone).
const (
	firmwareTimeout = 2 * time.Minute // reset to iPXE's DHCP lease and script
	agentTimeout    = 4 * time.Minute // script to the agent's first step
	registerTimeout = 3 * time.Minute // agent to registered
)

// TestPXEBootRegisters: two VMs network-boot through herd's own services:
// the iPXE ROM gets its reservation and script URL from herd's DHCP, the
// script (over HTTP) boots herd's kernel and initramfs, the agent comes up,
// gets its reservation again over DHCP and registers. herd nodes shows
// both registered with their reserved addresses.
func TestPXEBootRegisters(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 2})
	c.PXE("-v")
	start := time.Now()
	vms := c.StartAll()
	for _, vm := range vms {
		n := vm.Node
		ip, mac := regexp.QuoteMeta(n.IP), regexp.QuoteMeta(n.MAC)
		// The firmware side: iPXE's DHCP and the node's own script.
		vm.WaitFor(`net0: `+ip+`/255\.255\.255\.0`, firmwareTimeout)
		vm.WaitFor(`Filename: `+regexp.QuoteMeta(URL)+`/boot/`+mac+`\.ipxe`, firmwareTimeout)
		vm.WaitFor(`herd: installing `+n.Name+` \(`+mac+`\)`, firmwareTimeout)
		// The agent: its step headers, its lease, its registration.
		vm.WaitFor(`== herd: network \(DHCP\)`, agentTimeout)
		line := vm.WaitFor(`address \S+, hostname "[^"]*"`, registerTimeout)
		if want := `address ` + n.IP + `/24, hostname "` + n.Name + `"`; !strings.Contains(line, want) {
			t.Errorf("%s: the agent's lease %q, want its reservation %q", n.Name, line, want)
		}
		vm.WaitFor(`== herd: register and wait for the session`, registerTimeout)
		vm.WaitFor(`registered as `+n.Name+` `, registerTimeout)
	}
	t.Logf("%.1fs from starting the VMs to both registered", time.Since(start).Seconds())

	rows := c.List()
	if len(rows) != len(c.Nodes) {
		t.Fatalf("herd nodes lists %d nodes, want %d: %+v", len(rows), len(c.Nodes), rows)
	}
	for i, n := range c.Nodes {
		r := rows[i]
		if r.Name != n.Name || r.MAC != n.MAC || r.IP != n.IP || r.State != string(contract.StateRegistered) || r.Boot != "install" {
			t.Errorf("herd nodes row %d: %+v, want %s %s %s registered, boot install", i, r, n.Name, n.MAC, n.IP)
		}
		st := c.Show(n.Name)
		if st.State != contract.StateRegistered || st.IP != n.IP {
			t.Errorf("herd nodes show %s: %+v", n.Name, st)
		}
		t.Logf("%s (%s) registered %.1fs after the VMs started: %s", n.Name, st.IP, st.LastReport.Sub(start).Seconds(), st.Message)
	}
}

// TestLocalBootFromDisk: a node herd has switched to local boot gets a
// script that exits iPXE; SeaBIOS, started with -boot n, goes on to the
// virtio disk and runs its boot sector (here one that prints a line on
// the serial port and powers the machine off).
func TestLocalBootFromDisk(t *testing.T) {
	c := NewCluster(t, Options{Nodes: 1})
	n := c.Nodes[0]
	msg := "herd-test: " + n.Name + " booted from its disk"
	writeBootSector(t, n.Disk, msg)
	c.UpdateState(n.Name, func(s *inventory.Status) error {
		s.State, s.LocalBoot, s.Message = contract.StateDone, true, "installed (set by the test)"
		return nil
	})
	c.PXE("-v")
	start := time.Now()
	vm := c.StartVM(0)
	vm.WaitFor(`herd: `+n.Name+` \(`+regexp.QuoteMeta(n.MAC)+`\) boots from its disk`, firmwareTimeout)
	vm.WaitFor(`Booting from Hard Disk`, firmwareTimeout)
	vm.WaitFor(regexp.QuoteMeta(msg), firmwareTimeout)
	if code := vm.WaitExit(time.Minute); code != 0 {
		t.Errorf("QEMU exit status %d after the boot sector powered off, want 0", code)
	}
	t.Logf("%.1fs from reset to the disk's boot sector", time.Since(start).Seconds())
	if st := c.Show(n.Name); st.State != contract.StateDone || !st.LocalBoot {
		t.Errorf("after a local boot herd has %s: %+v, want it still done, boot local", n.Name, st)
	}
	if strings.Contains(vm.Console(), "Linux version") {
		t.Errorf("the installer's kernel booted on a node set to local boot")
	}
}

// writeBootSector writes an MBR boot sector to disk that prints msg on the
// first serial port (0x3f8) and powers the machine off (ACPI PM1a_CNT at
// 0x604, where SeaBIOS puts QEMU's PIIX4 power management: SLP_EN with
// S5's type 0), then halts.
func writeBootSector(t *testing.T, disk, msg string) {
	t.Helper()
	code := []byte{
		0x31, 0xc0, // xor ax, ax
		0x8e, 0xd8, // mov ds, ax
		0xbe, 0x1c, 0x7c, // mov si, 0x7c1c (msg)
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xac,       // next: lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz off
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp next
		0xba, 0x04, 0x06, // off: mov dx, 0x604
		0xb8, 0x00, 0x20, // mov ax, 0x2000
		0xef,       // out dx, ax
		0xf4,       // halt: hlt
		0xeb, 0xfd, // jmp halt
	}
	text := "\r\n" + msg + "\r\n\x00"
	if len(code) != 0x1c || len(code)+len(text) > 440 {
		t.Fatalf("boot sector: code %d bytes, message %d", len(code), len(text))
	}
	mbr := make([]byte, 512)
	copy(mbr, code)
	copy(mbr[len(code):], text)
	mbr[510], mbr[511] = 0x55, 0xaa
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
