//go:build qemu

package qemutests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
)

// uefiTimeout bounds OVMF's start to herd's script under TCG (its own
// PXE, the TFTP of the EFI iPXE, iPXE's DHCP): OVMF is slower than SeaBIOS.
const uefiTimeout = 4 * time.Minute

// uefiRegisters boots one node with firmware fw through herd pxe (with
// these extra arguments) to the agent's registration, asserting every
// step on the console and in herd's log. uefiFile is the EFI iPXE herd's
// DHCP names to OVMF's PXE ("" when the firmware is iPXE itself). It
// returns the seconds from QEMU's start to the registration.
func uefiRegisters(t *testing.T, fw Firmware, uefiFile string, args ...string) float64 {
	t.Helper()
	c := NewCluster(t, Options{Nodes: 1, Firmware: func(int) Firmware { return fw }})
	srv := c.PXE(append([]string{"-v"}, args...)...)
	n := c.Nodes[0]
	if n.Firmware != fw || n.Vars == "" {
		t.Fatalf("node %s: firmware %v, variables %q; want %v and a variable store", n.Name, n.Firmware, n.Vars, fw)
	}
	vm := c.StartVM(0)
	ip, mac := regexp.QuoteMeta(n.IP), regexp.QuoteMeta(n.MAC)
	vm.WaitReset(uefiTimeout)
	if uefiFile != "" {
		// OVMF's PXE: DHCP as a UEFI client (option 93 = 7), the EFI
		// iPXE by TFTP.
		srv.WaitErrors(`dhcp: (OFFER|ACK) `+ip+` to `+mac+` \(`+n.Name+`\) \(uefi\) boot `+regexp.QuoteMeta(uefiFile)+`$`, uefiTimeout)
		srv.WaitErrors(`tftp: \S+ `+regexp.QuoteMeta(uefiFile)+`: \d+ bytes in`, uefiTimeout)
	}
	// iPXE's DHCP (as iPXE) and the node's own script over HTTP.
	srv.WaitErrors(`dhcp: ACK `+ip+` to `+mac+` \(`+n.Name+`\) \(ipxe\) boot `+regexp.QuoteMeta(URL+"/boot/"+n.MAC+".ipxe"), uefiTimeout)
	vm.WaitFor(`Filename: `+regexp.QuoteMeta(URL)+`/boot/`+mac+`\.ipxe`, uefiTimeout)
	vm.WaitFor(`herd: installing `+n.Name+` \(`+mac+`\)`, uefiTimeout)
	srv.WaitErrors(`httpboot: node `+n.Name+` \(`+mac+`\) booting: install entry over HTTP`, time.Minute)
	// The agent: its lease and its registration.
	vm.WaitFor(`== herd: network \(DHCP\)`, agentTimeout)
	line := vm.WaitFor(`address \S+, hostname "[^"]*"`, registerTimeout)
	if want := `address ` + n.IP + `/24, hostname "` + n.Name + `"`; !strings.Contains(line, want) {
		t.Errorf("%s: the agent's lease %q, want its reservation %q", n.Name, line, want)
	}
	vm.WaitFor(`registered as `+n.Name+` `, registerTimeout)
	took := time.Since(vm.Started).Seconds()
	rows := c.List()
	if len(rows) != 1 || rows[0].Name != n.Name || rows[0].IP != n.IP || rows[0].State != string(contract.StateRegistered) || rows[0].Boot != "install" {
		t.Errorf("herd nodes: %+v, want %s %s registered, boot install", rows, n.Name, n.IP)
	}
	t.Logf("%s (%v%s): %.1fs from QEMU's start to registered", n.Name, fw, map[bool]string{true: ", " + uefiFile}[uefiFile != ""], took)
	return took
}

// TestUEFIPXESnponly: an OVMF node whose card has no option ROM boots
// through the firmware's own PXE: herd's DHCP sees a UEFI client and names
// snponly.efi (herd's default), which comes by TFTP, drives the card through the
// firmware's SNP, gets the node's script over HTTP and boots herd's agent,
// which registers.
func TestUEFIPXESnponly(t *testing.T) {
	t.Parallel() // one VM: two such scenarios share the two cores
	uefiRegisters(t, UEFIPXE, "snponly.efi")
}

// TestUEFIPXEIpxeEFI is TestUEFIPXESnponly with ipxe.efi, iPXE with its
// own virtio-net driver.
func TestUEFIPXEIpxeEFI(t *testing.T) {
	t.Parallel() // one VM: two such scenarios share the two cores
	uefiRegisters(t, UEFIPXE, "ipxe.efi", "--uefi-file", "ipxe.efi")
}

// TestUEFIiPXEROM: an OVMF node with iPXE's EFI option ROM on its card:
// iPXE runs as the firmware's network boot option, gets the node's script
// from herd's DHCP answer to iPXE and boots the agent, which registers.
func TestUEFIiPXEROM(t *testing.T) {
	t.Parallel() // one VM: two such scenarios share the two cores
	uefiRegisters(t, UEFIiPXE, "")
}

// TestUEFILocalBootExit: an installed UEFI node boots network first
// (bootindex 1), gets herd's local-boot script, whose exit hands control
// back to OVMF with an error, so OVMF goes on down BootOrder to the disk:
// to the option the installed system wrote for itself (as efibootmgr
// does: HD()/File() on the ESP; the test writes it into the node's
// variable store), which starts a GRUB that prints a marker. That holds at
// the first start and across two resets; after `herd nodes reinstall` the
// next reset boots the installer again.
func TestUEFILocalBootExit(t *testing.T) {
	for _, fw := range []Firmware{UEFIPXE, UEFIiPXE} {
		t.Run(fw.String(), func(t *testing.T) {
			t.Parallel() // one VM each: side by side on the two cores
			uefiLocalBoot(t, fw)
		})
	}
}

func uefiLocalBoot(t *testing.T, fw Firmware) {
	c := NewCluster(t, Options{Nodes: 1, Firmware: func(int) Firmware { return fw }})
	n := c.Nodes[0]
	mac := regexp.QuoteMeta(n.MAC)
	card := strings.ToUpper(strings.ReplaceAll(n.MAC, ":", "")) // in the card's option names
	marker := "herd-test: " + n.Name + " booted GRUB from its ESP"
	writeESP(t, n.Disk, marker)
	const installed = "herd: installed system"
	if err := n.AddDiskBootOption(0x10, installed, 1, espGUID, espStart, espSize, `\EFI\BOOT\BOOTX64.EFI`); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	c.UpdateState(n.Name, func(s *inventory.Status) error {
		s.State, s.LocalBoot, s.Message = contract.StateDone, true, "installed (set by the test)"
		return nil
	})
	c.PXE("-v")
	vm := c.StartVM(0)
	for boot := 1; boot <= 3; boot++ {
		start := time.Now()
		if boot > 1 {
			vm.Reset()
		}
		vm.WaitReset(uefiTimeout)
		vm.WaitFor(`herd: `+n.Name+` \(`+mac+`\) boots from its disk`, uefiTimeout)
		// iPXE's exit 1 is an error to the boot manager, which goes on to
		// the next option; a bare exit would be EFI_SUCCESS, and BdsDxe
		// would start its menu (UiApp) and wait there.
		// (OVMF's PXE fails in StartImage, iPXE's ROM already in
		// LoadImage: it boots from inside LoadFile.)
		vm.WaitFor(`BdsDxe: failed to (load|start) Boot[0-9A-F]{4} "[^"]*`+card, uefiTimeout)
		vm.WaitFor(`BdsDxe: starting Boot0010 "`+installed+`"`, uefiTimeout)
		vm.WaitFor(regexp.QuoteMeta(marker), uefiTimeout)
		t.Logf("boot %d: %.1fs from (re)start to the disk's GRUB", boot, time.Since(start).Seconds())
	}
	if strings.Contains(vm.Console(), "Linux version") || strings.Contains(vm.Console(), `"UiApp"`) {
		t.Errorf("an installed node started the installer or the boot manager's menu")
	}
	order, err := n.BootOrder()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BootOrder after three starts: %v", order)
	checkNetworkFirst(t, n, order, installed)

	c.HerdNodes("reinstall", n.Name)
	start := time.Now()
	vm.Reset()
	vm.WaitReset(uefiTimeout)
	vm.WaitFor(`herd: installing `+n.Name+` \(`+mac+`\)`, uefiTimeout)
	vm.WaitFor(`registered as `+n.Name+` `, agentTimeout+registerTimeout)
	t.Logf("reinstall: %.1fs from reset to registered", time.Since(start).Seconds())
	if st := c.Show(n.Name); st.State != contract.StateRegistered || st.LocalBoot {
		t.Errorf("after reinstall and reset herd has %s: %+v, want registered, boot install", n.Name, st)
	}
}

// checkNetworkFirst checks the BootOrder OVMF made from QEMU's bootindex:
// the card's options first, then the disk's, the installed system's own
// option before OVMF's generic one for the disk.
func checkNetworkFirst(t *testing.T, n Node, order []BootOption, installed string) {
	t.Helper()
	card := strings.ToUpper(strings.ReplaceAll(n.MAC, ":", ""))
	pos := map[string]int{}
	for i, o := range order {
		switch {
		case strings.Contains(o.Description, card):
			if _, ok := pos["card"]; !ok {
				pos["card"] = i
			}
		case o.Description == installed:
			pos["installed"] = i
		case o.Description == "UEFI Misc Device":
			pos["disk"] = i
		}
	}
	c, okc := pos["card"]
	i, oki := pos["installed"]
	if !okc || !oki || c != 0 || i < c {
		t.Errorf("BootOrder %v: want the card's options first, then %q", order, installed)
	}
	if d, ok := pos["disk"]; ok && d < i {
		t.Errorf("BootOrder %v: OVMF's own disk option before the installed system's", order)
	}
}

// The ESP writeESP makes: its unique GUID, first sector and size in
// sectors.
const (
	espGUID  = "BB50B9D3-FE94-E241-821E-AD6261DC34C8"
	espStart = 2048
	espSize  = 65536
)

// writeESP makes disk a GPT disk with one partition, an ESP (FAT16,
// 32 MiB at 1 MiB), whose removable-media path \EFI\BOOT\BOOTX64.EFI is
// a GRUB image (grub-mkimage) with an embedded config that prints msg and
// then waits, so the test can press reset. No root: sfdisk on the file,
// mkfs.fat --offset, mtools.
func writeESP(t *testing.T, disk, msg string) {
	t.Helper()
	for _, c := range []string{"sfdisk", "mkfs.fat", "mmd", "mcopy", "grub-mkimage"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("no %s: apt-get install fdisk dosfstools mtools grub-efi-amd64-bin", c)
		}
	}
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi/kernel.img"); err != nil {
		t.Skipf("no GRUB for x86_64-efi: apt-get install grub-efi-amd64-bin")
	}
	dir := t.TempDir()
	cfg, img := filepath.Join(dir, "embed.cfg"), filepath.Join(dir, "BOOTX64.EFI")
	if strings.ContainsAny(msg, `"\$`) {
		t.Fatalf("marker %q: no quotes, backslashes or $", msg)
	}
	if err := os.WriteFile(cfg, []byte("echo \""+msg+"\"\nsleep 3600\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	layout := fmt.Sprintf("label: gpt\nstart=%d, size=%d, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=%s, name=\"EFI System\"\n", espStart, espSize, espGUID)
	steps := [][]string{
		{"grub-mkimage", "-O", "x86_64-efi", "-o", img, "-c", cfg, "-p", "/EFI/BOOT", "echo", "sleep"},
		{"sh", "-c", `printf '%s' "$1" | sfdisk -q "$2"`, "sh", layout, disk},
		{"mkfs.fat", "-F", "16", "--offset", fmt.Sprint(espStart), disk, fmt.Sprint(espSize / 2)},
		{"mmd", "-i", disk + "@@1M", "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", disk + "@@1M", img, "::/EFI/BOOT/BOOTX64.EFI"},
	}
	for _, s := range steps {
		if _, err := runBounded(time.Minute, dir, nil, s[0], s[1:]...); err != nil {
			t.Fatalf("ESP on %s: %v", disk, err)
		}
	}
}
