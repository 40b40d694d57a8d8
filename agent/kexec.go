package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herdproject/herd/agent/customize"
	"golang.org/x/sys/unix"
)

// loadKexec loads the installed system's newest kernel and initrd (from
// root, mounted from dev) with kexec_file_load, so that the final step
// starts it without a trip through the firmware.
func (a *agent) loadKexec(root, dev string) error {
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz*"))
	if len(kernels) == 0 {
		return ErrNoKexec
	}
	sort.Strings(kernels)
	kernel := kernels[len(kernels)-1]
	initrd := strings.Replace(kernel, "vmlinuz", "initrd.img", 1)
	kf, err := os.Open(kernel)
	if err != nil {
		return err
	}
	defer kf.Close()
	initFd, flags := -1, uintptr(unix.KEXEC_FILE_NO_INITRAMFS)
	if f, err := os.Open(initrd); err == nil {
		defer f.Close()
		initFd, flags = int(f.Fd()), 0
	}
	rootArg := "root=" + dev
	if uuid, err := customize.FindUUID(dev); err == nil && uuid != "" {
		rootArg = "root=UUID=" + uuid
	}
	cmdline := rootArg + " ro" + consoleArgs()
	if err := unix.KexecFileLoad(int(kf.Fd()), initFd, cmdline, int(flags)); err != nil {
		return fmt.Errorf("kexec_file_load %s: %w", kernel, err)
	}
	a.con.printf("  kexec: loaded %s (%s)", filepath.Base(kernel), cmdline)
	a.kexecLoaded = true
	return nil
}

// consoleArgs carries the current console= settings to the next kernel.
func consoleArgs() string {
	b, _ := os.ReadFile("/proc/cmdline")
	var out string
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "console=") {
			out += " " + f
		}
	}
	return out
}

// kexec starts the loaded kernel.
func (a *agent) kexec() error {
	if !a.kexecLoaded {
		return ErrNoKexec
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_KEXEC)
}
