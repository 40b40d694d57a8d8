package modalias

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Scan returns the modalias of every device under sysDevices (normally
// /sys/devices): the contents of each regular file named "modalias",
// without the newline, each once, in the walk's lexical order. Symbolic
// links are never followed (every device has its real directory under
// /sys/devices; the links in sysfs lead back into that tree, some in
// loops). Unreadable directories and attributes are skipped; only a
// missing or unreadable sysDevices is an error.
func Scan(sysDevices string) ([]string, error) {
	if _, err := os.Stat(sysDevices); err != nil {
		return nil, fmt.Errorf("scan modaliases: %w", err)
	}
	var out []string
	seen := map[string]bool{}
	err := filepath.WalkDir(sysDevices, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == sysDevices {
				return err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Name() != "modalias" || !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil // some attributes refuse reads (ENODEV): not ours
		}
		a := strings.TrimSpace(string(b))
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan modaliases: %w", err)
	}
	return out, nil
}

// PCIDevice is one PCI function as sysfs describes it.
type PCIDevice struct {
	// Slot is the PCI address ("0000:00:03.0").
	Slot string
	// Class is the class code in 6 hex digits ("020000": Ethernet).
	Class string
	// Vendor and Device are the IDs in 4 lower-case hex digits ("8086",
	// "100e").
	Vendor, Device string
	// Drivers are the modules whose alias matches the device, as Match
	// returns them; none means herd's initramfs has no driver for it.
	Drivers []string
	// Bound is the driver bound to the device now ("" = none).
	Bound string
}

// String renders d for the agent's "no network interface" message:
// "0000:00:03.0 Ethernet controller [0200] 8086:100e driver e1000 (bound: none)".
func (d PCIDevice) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", d.Slot)
	class := d.Class
	if len(class) >= 4 {
		class = class[:4]
	}
	if name := pciClassNames[class]; name != "" {
		fmt.Fprintf(&b, " %s", name)
	}
	fmt.Fprintf(&b, " [%s] %s:%s", class, d.Vendor, d.Device)
	if len(d.Drivers) == 0 {
		b.WriteString(" no matching module")
	} else {
		fmt.Fprintf(&b, " modules %s", strings.Join(d.Drivers, ","))
	}
	bound := d.Bound
	if bound == "" {
		bound = "none"
	}
	fmt.Fprintf(&b, " (bound: %s)", bound)
	return b.String()
}

// pciClassNames names the class/subclass codes an installer cares about
// (PCI Code and ID Assignment Specification, §1).
var pciClassNames = map[string]string{
	"0100": "SCSI controller",
	"0101": "IDE controller",
	"0104": "RAID controller",
	"0106": "SATA controller",
	"0107": "SAS controller",
	"0108": "NVMe controller",
	"0200": "Ethernet controller",
	"0207": "InfiniBand controller",
	"0280": "Network controller",
	"0300": "VGA controller",
	"0600": "Host bridge",
	"0601": "ISA bridge",
	"0604": "PCI bridge",
	"0c03": "USB controller",
	"0c05": "SMBus",
}

// PCIDevices lists the PCI functions in sysBus (normally
// /sys/bus/pci/devices; given /sys/bus, its pci/devices directory),
// sorted by slot, with the modules of aliases that match each. A device
// without a modalias attribute gets one built from its IDs, as the
// kernel builds it (pci_uevent).
func PCIDevices(sysBus string, aliases []Alias) ([]PCIDevice, error) {
	dir := sysBus
	if fi, err := os.Stat(filepath.Join(sysBus, "pci", "devices")); err == nil && fi.IsDir() {
		dir = filepath.Join(sysBus, "pci", "devices")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list PCI devices: %w", err)
	}
	var out []PCIDevice
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		attr := func(name string) string {
			b, err := os.ReadFile(filepath.Join(p, name))
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		}
		d := PCIDevice{
			Slot:   e.Name(),
			Vendor: hexID(attr("vendor"), 4),
			Device: hexID(attr("device"), 4),
			Class:  hexID(attr("class"), 6),
		}
		if link, err := os.Readlink(filepath.Join(p, "driver")); err == nil {
			d.Bound = filepath.Base(link)
		}
		ma := attr("modalias")
		if ma == "" {
			ma = pciModalias(d.Vendor, d.Device, hexID(attr("subsystem_vendor"), 4), hexID(attr("subsystem_device"), 4), d.Class)
		}
		if ma != "" {
			d.Drivers = Match(aliases, ma)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// hexID turns a sysfs ID ("0x8086") into width lower-case hex digits; ""
// when it does not parse.
func hexID(s string, width int) string {
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 32)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%0*x", width, n)
}

// pciModalias builds the modalias the kernel would report
// ("pci:v00008086d0000100Esv00008086sd0000001Ebc02sc00i00").
func pciModalias(vendor, device, subVendor, subDevice, class string) string {
	if vendor == "" || device == "" || len(class) != 6 {
		return ""
	}
	if subVendor == "" {
		subVendor = "ffff"
	}
	if subDevice == "" {
		subDevice = "ffff"
	}
	up := strings.ToUpper
	return fmt.Sprintf("pci:v0000%sd0000%ssv0000%ssd0000%sbc%ssc%si%s",
		up(vendor), up(device), up(subVendor), up(subDevice), up(class[0:2]), up(class[2:4]), up(class[4:6]))
}

// errIsNotExist reports a missing file.
func errIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
