package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdproject/herd/agent/modalias"
	"golang.org/x/sys/unix"
)

// mountPseudo mounts what a fresh initramfs lacks (u-root's init mounts
// most of it already; EBUSY means it is there).
func mountPseudo() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	return nil
}

func (a *agent) modulesDir() string {
	if a.cfg.ModulesDir != "" {
		return a.cfg.ModulesDir
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
}

func (a *agent) aliases() ([]modalias.Alias, map[string][]string) {
	dir := a.modulesDir()
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	al, _ := modalias.ParseAliases(f)
	var soft map[string][]string
	if sf, err := os.Open(filepath.Join(dir, "modules.softdep")); err == nil {
		soft, _ = modalias.ParseSoftdeps(sf)
		sf.Close()
	}
	return al, soft
}

// loadModules loads the modules the present hardware asks for, by
// modalias, until nothing new loads.
func (a *agent) loadModules(ctx context.Context) error {
	al, soft := a.aliases()
	if len(al) == 0 {
		return fmt.Errorf("no modules.alias under %s: the initramfs has no modules", a.modulesDir())
	}
	l, err := modalias.NewKernelLoader(a.modulesDir())
	if err != nil {
		return err
	}
	extra := modalias.ExtraSoftdeps() // ext4 → crc32c_generic, vfat → nls_cp437, nls_ascii
	loaded, err := modalias.LoadAll(ctx, "/sys/devices", al, soft, extra, l, a.con.printf)
	// Filesystems and loop devices are not hardware: load the ones plans
	// use, with their soft dependencies. brd waits for a stage2, which
	// sizes its ramdisks (see prepare).
	names := []string{"ext4", "vfat", "xfs", "squashfs", "isofs", "loop"}
	_, efiErr := os.Stat("/sys/firmware/efi")
	if efiErr == nil {
		names = append(names, "efivarfs") // UEFI boot entries (plans)
	}
	fs, ferr := modalias.LoadModules(ctx, names, al, soft, extra, l, a.con.printf)
	loaded = append(loaded, fs...)
	a.con.printf("loaded %d module(s): %s", len(loaded), strings.Join(loaded, " "))
	if efiErr == nil {
		if err := unix.Mount("efivarfs", efivarsDir, "efivarfs", 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			a.con.printf("warning: mount efivarfs on %s: %v (a plan's UEFI boot entry will rely on the removable path)", efivarsDir, err)
		}
	}
	return errors.Join(err, ferr)
}

// efivarsDir is where the kernel's EFI variables are mounted.
const efivarsDir = "/sys/firmware/efi/efivars"

// pciHint lists the PCI devices and the drivers that would match, for a
// machine where no network interface appeared.
func (a *agent) pciHint() string {
	al, _ := a.aliases()
	devs, err := modalias.PCIDevices("/sys/bus/pci/devices", al)
	if err != nil || len(devs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("; PCI devices present (vendor:device class → drivers):")
	for _, d := range devs {
		b.WriteString("\n  " + d.String())
	}
	b.WriteString("\n  (a driver missing from the initramfs? rebuild it with herd build boot --modules)")
	return b.String()
}

// hasCarrier reports whether the interface has a link.
func hasCarrier(name string) bool {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "carrier"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// drainConsole waits (at most 2 s) until the console has sent what the
// agent wrote (tcdrain): a reboot right after the last line would
// otherwise cut the serial console's tail, "report done" included. Only
// a terminal or TTYs can be drained; other writers are left as they are.
func drainConsole(w io.Writer) {
	const limit = 2 * time.Second
	switch c := w.(type) {
	case *TTYs:
		c.Drain(limit)
	case *os.File:
		drainFile(c, limit)
	}
}

// reboot syncs and restarts the machine.
func reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// rescueShell replaces the agent with a shell on the console (herd.debug).
func rescueShell() error {
	for _, sh := range []string{"/bin/sh", "/bbin/gosh", "/bin/gosh"} {
		if _, err := os.Stat(sh); err == nil {
			return unix.Exec(sh, []string{sh}, os.Environ())
		}
	}
	return errors.New("no shell in the initramfs for herd.debug")
}
