package modalias

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// writeFile writes content under root, making the directories.
func writeFile(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// fakeSys builds a /sys like QEMU q35 with virtio-net, a virtio disk, an
// AHCI controller and a host bridge, with sysfs's symlinks (including
// loops). Nested devices appear only when their parent's driver loads:
// see fakeLoader.
func fakeSys(t testing.TB) string {
	sys := t.TempDir()
	d := filepath.Join(sys, "devices")
	writeFile(t, d, "pci0000:00/0000:00:00.0/modalias", "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00\n")
	writeFile(t, d, "pci0000:00/0000:00:02.0/modalias", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
	writeFile(t, d, "pci0000:00/0000:00:03.0/modalias", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\n")
	writeFile(t, d, "pci0000:00/0000:00:1f.2/modalias", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n")
	// The same modalias twice (two identical NICs): scanned once.
	writeFile(t, d, "pci0000:00/0000:00:04.0/modalias", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
	writeFile(t, d, "platform/i8042/modalias", "platform:i8042\n")
	writeFile(t, d, "platform/i8042/serio0/modalias", "serio:ty01pr00id00ex00\n")
	writeFile(t, d, "virtual/net/lo/uevent", "INTERFACE=lo\n")
	writeFile(t, d, "system/cpu/modalias", "cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0094\n")
	// Empty and unreadable modalias files are skipped.
	writeFile(t, d, "platform/empty/modalias", "")
	// sysfs symlinks: subsystem and driver links, and loops.
	symlink(t, "../../../bus/pci", filepath.Join(d, "pci0000:00/0000:00:02.0/subsystem"))
	symlink(t, "../../devices/pci0000:00/0000:00:02.0", filepath.Join(sys, "bus/pci/devices/0000:00:02.0"))
	symlink(t, "..", filepath.Join(d, "pci0000:00/0000:00:02.0/loop"))
	symlink(t, ".", filepath.Join(d, "virtual/self"))
	symlink(t, "../platform", filepath.Join(d, "platform/i8042/serio0/up"))
	symlink(t, "/proc/self/cwd", filepath.Join(d, "virtual/outside"))
	// A modalias that is a symlink (never in sysfs) is not read.
	symlink(t, "../pci0000:00/0000:00:02.0/modalias", filepath.Join(d, "virtual/modalias"))
	return sys
}

// fakeLoader records the order of loads. Modules in missing are not
// known (ErrNotFound); modules in fail fail; onLoad runs after a load,
// as the kernel's probing adds devices.
type fakeLoader struct {
	mu      sync.Mutex
	order   []string
	missing map[string]bool
	fail    map[string]error
	onLoad  map[string]func()
}

func (f *fakeLoader) Load(m string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.missing[m] {
		return fmt.Errorf("load %s: %w", m, ErrNotFound)
	}
	f.order = append(f.order, m)
	if err := f.fail[m]; err != nil {
		return err
	}
	if fn := f.onLoad[m]; fn != nil {
		fn()
	}
	return nil
}

func TestScan(t *testing.T) {
	sys := fakeSys(t)
	got, err := Scan(filepath.Join(sys, "devices"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00",
		"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00",
		"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
		"platform:i8042",
		"serio:ty01pr00id00ex00",
		"cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0094",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := Scan(filepath.Join(sys, "nope")); err == nil {
		t.Error("Scan(missing): no error")
	}
}

// TestScanRealSys walks this machine's /sys/devices: it must end, and
// without errors, whatever loops sysfs has.
func TestScanRealSys(t *testing.T) {
	if _, err := os.Stat("/sys/devices"); err != nil {
		t.Skip(err)
	}
	got, err := Scan("/sys/devices")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d modaliases under /sys/devices", len(got))
}

func TestLoadAll(t *testing.T) {
	sys := fakeSys(t)
	d := filepath.Join(sys, "devices")
	l := &fakeLoader{
		missing: map[string]bool{"crc32c": true},
		fail:    map[string]error{"crc32c_intel": errors.New("no such device")},
		onLoad: map[string]func(){
			// virtio_pci brings the virtio devices (a NIC and a disk);
			// ahci brings a SCSI disk.
			"virtio_pci": func() {
				writeFile(t, d, "pci0000:00/0000:00:02.0/virtio0/modalias", "virtio:d00000001v00001AF4\n")
				writeFile(t, d, "pci0000:00/0000:00:03.0/virtio1/modalias", "virtio:d00000002v00001AF4\n")
			},
			"ahci": func() {
				writeFile(t, d, "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/modalias", "scsi:t-0x00\n")
			},
		},
	}
	var logs []string
	logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
	extra := ExtraSoftdeps()
	extra["e1000"] = []string{"never"} // not present: not loaded
	loaded, err := LoadAll(context.Background(), filepath.Join(sys, "devices"), fixtureAliases(t), fixtureSoftdeps(t), extra, l, logf)
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := []string{
		// round 1, in scan order
		"virtio_pci", "ahci", "i8042", "atkbd", "psmouse", "crc32c_intel",
		// round 2: devices the drivers brought; virtio_blk after its softdep
		"virtio_net", "virtio_ring", "virtio_blk", "sd_mod",
	}
	if diff := cmp.Diff(wantOrder, l.order); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}
	wantLoaded := []string{"virtio_pci", "ahci", "i8042", "atkbd", "psmouse", "virtio_net", "virtio_ring", "virtio_blk", "sd_mod"}
	if diff := cmp.Diff(wantLoaded, loaded); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "load crc32c_intel (for cpu:type:x86") {
		t.Errorf("the failed load is not logged:\n%s", strings.Join(logs, "\n"))
	}

	// Again: everything was tried, nothing new (a fresh LoadAll tries
	// again; the kernel loader makes that cheap).
	l2 := &fakeLoader{}
	if _, err := LoadAll(context.Background(), sys, fixtureAliases(t), nil, nil, l2, nil); err != nil {
		t.Fatal(err)
	}
	if len(l2.order) != 9 {
		t.Errorf("second run loaded %q", l2.order)
	}
}

func TestLoadModulesSoftdeps(t *testing.T) {
	l := &fakeLoader{missing: map[string]bool{"crc32c": true, "fs_xfs": true}}
	loaded, err := LoadModules(context.Background(), []string{"ext4", "vfat", "fs-xfs", "ext4"}, fixtureAliases(t), fixtureSoftdeps(t), ExtraSoftdeps(), l, nil)
	if err != nil {
		t.Fatal(err)
	}
	// ext4: its modules.softdep "crc32c" is an alias (both crc32c
	// modules), then herd's extra crc32c_generic (already loaded).
	// fs-xfs is no module name: its alias gives xfs.
	want := []string{"crc32c_generic", "crc32c_intel", "ext4", "nls_cp437", "nls_ascii", "vfat", "xfs"}
	if diff := cmp.Diff(want, loaded); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadSoftdepLoop(t *testing.T) {
	l := &fakeLoader{}
	loaded, err := LoadModules(context.Background(), []string{"a"}, nil, map[string][]string{"a": {"b"}, "b": {"a", "c"}}, nil, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c", "b", "a"}, loaded); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestLoadAllBounded: every load brings a new device for a new module;
// LoadAll stops after MaxRounds.
func TestLoadAllBounded(t *testing.T) {
	sys := t.TempDir()
	d := filepath.Join(sys, "devices")
	writeFile(t, d, "chain/1/modalias", "chain:1")
	var aliases []Alias
	onLoad := map[string]func(){}
	for i := 1; i <= 2*MaxRounds; i++ {
		aliases = append(aliases, Alias{Pattern: fmt.Sprintf("chain:%d", i), Module: fmt.Sprintf("m%d", i)})
		next := i + 1
		onLoad[fmt.Sprintf("m%d", i)] = func() {
			writeFile(t, d, fmt.Sprintf("chain/%d/modalias", next), fmt.Sprintf("chain:%d", next))
		}
	}
	l := &fakeLoader{onLoad: onLoad}
	loaded, err := LoadAll(context.Background(), sys, aliases, nil, nil, l, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != MaxRounds {
		t.Errorf("loaded %d modules (%q), want %d", len(loaded), loaded, MaxRounds)
	}
}

func TestLoadAllContext(t *testing.T) {
	sys := fakeSys(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &fakeLoader{}
	_, err := LoadAll(ctx, sys, fixtureAliases(t), nil, nil, l, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if len(l.order) != 0 {
		t.Errorf("loaded %q after cancel", l.order)
	}
	if _, err := LoadAll(context.Background(), filepath.Join(sys, "missing"), nil, nil, nil, l, nil); err == nil {
		t.Error("LoadAll(missing sys): no error")
	}
}

func TestPCIDevices(t *testing.T) {
	sys := t.TempDir()
	dev := filepath.Join(sys, "devices", "pci0000:00")
	attrs := func(slot, vendor, device, class, modalias string) {
		writeFile(t, dev, slot+"/vendor", vendor+"\n")
		writeFile(t, dev, slot+"/device", device+"\n")
		writeFile(t, dev, slot+"/class", class+"\n")
		writeFile(t, dev, slot+"/subsystem_vendor", "0x1af4\n")
		writeFile(t, dev, slot+"/subsystem_device", "0x1100\n")
		if modalias != "" {
			writeFile(t, dev, slot+"/modalias", modalias+"\n")
		}
		symlink(t, "../../../devices/pci0000:00/"+slot, filepath.Join(sys, "bus/pci/devices", slot))
	}
	attrs("0000:00:02.0", "0x8086", "0x100e", "0x020000", "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00")
	attrs("0000:00:00.0", "0x8086", "0x29c0", "0x060000", "")
	attrs("0000:00:1f.2", "0x8086", "0x2922", "0x010601", "") // built from the IDs
	attrs("0000:01:00.0", "0x14e4", "0x1657", "0x020000", "pci:v000014E4d00001657sv0000103Csd000022BEbc02sc00i00")
	symlink(t, "../../../bus/pci/drivers/ahci", filepath.Join(dev, "0000:00:1f.2/driver"))

	got, err := PCIDevices(filepath.Join(sys, "bus/pci/devices"), fixtureAliases(t))
	if err != nil {
		t.Fatal(err)
	}
	// Given /sys/bus, the same.
	if got2, err := PCIDevices(filepath.Join(sys, "bus"), fixtureAliases(t)); err != nil || !cmp.Equal(got, got2) {
		t.Errorf("PCIDevices(/sys/bus) = %v, %v; differs from PCIDevices(/sys/bus/pci/devices)", got2, err)
	}
	want := []PCIDevice{
		{Slot: "0000:00:00.0", Class: "060000", Vendor: "8086", Device: "29c0"},
		{Slot: "0000:00:02.0", Class: "020000", Vendor: "8086", Device: "100e", Drivers: []string{"e1000"}},
		{Slot: "0000:00:1f.2", Class: "010601", Vendor: "8086", Device: "2922", Drivers: []string{"ahci"}, Bound: "ahci"},
		{Slot: "0000:01:00.0", Class: "020000", Vendor: "14e4", Device: "1657"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	wantStr := []string{
		"0000:00:00.0 Host bridge [0600] 8086:29c0 no matching module (bound: none)",
		"0000:00:02.0 Ethernet controller [0200] 8086:100e modules e1000 (bound: none)",
		"0000:00:1f.2 SATA controller [0106] 8086:2922 modules ahci (bound: ahci)",
		"0000:01:00.0 Ethernet controller [0200] 14e4:1657 no matching module (bound: none)",
	}
	for i, d := range got {
		if s := d.String(); i < len(wantStr) && s != wantStr[i] {
			t.Errorf("String() = %q, want %q", s, wantStr[i])
		}
	}
	if _, err := PCIDevices(filepath.Join(sys, "nope"), nil); err == nil {
		t.Error("PCIDevices(missing): no error")
	}
}
