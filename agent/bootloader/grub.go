package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/agent/hostsys"
)

// installGrub installs the image's own GRUB, chrooted into the target
// with the running system's /dev, /proc and /sys bound into it (and
// unbound afterwards, also on error): grub-install for i386-pc (BIOS, to
// the disk's MBR) or x86_64-efi (to the ESP's removable path, without
// touching NVRAM), then grub.cfg from grub-mkconfig, or a minimal one.
func (in *installer) installGrub(ctx context.Context, res *Result) (err error) {
	cfg := in.cfg
	install := ""
	for _, p := range grubInstallPaths {
		if st, err := os.Stat(filepath.Join(cfg.Target, p)); err == nil && st.Mode().IsRegular() {
			install = "/" + p
			break
		}
	}
	if install == "" {
		return fmt.Errorf("no grub-install under %s", cfg.Target)
	}
	// grub-install, /boot/grub (Debian) or grub2-install, /boot/grub2
	// (Fedora).
	prog := strings.TrimSuffix(path.Base(install), "-install")
	grubCfg := "/boot/" + prog + "/grub.cfg"
	mkconfig := hostsys.FindIn(cfg.Target, prog+"-mkconfig")

	args := []string{"--target=i386-pc", cfg.Disk}
	if cfg.UEFI {
		args = []string{"--target=x86_64-efi", "--efi-directory=" + cfg.ESP, "--removable", "--no-nvram"}
	}
	undo, err := in.bindSystem(cfg.Target)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, undo()) }()

	if _, err := in.runIn(ctx, cfg.Target, install, args...); err != nil {
		if strings.Contains(err.Error(), "BIOS Boot Partition") {
			return fmt.Errorf("%w (GRUB on a gpt disk boots by BIOS only with a BIOS boot partition, which herd does not make: use a dos label, or UEFI, or an image without grub-pc so that herd installs extlinux)", err)
		}
		return err
	}
	if cfg.UEFI {
		loader := filepath.Join(cfg.Target, cfg.ESP, "EFI/BOOT/BOOTX64.EFI")
		if _, err := os.Stat(loader); err != nil {
			return fmt.Errorf("%s --removable wrote no %s: %w", install, RemovableLoader, err)
		}
	}
	res.Config = grubCfg
	if mkconfig == "" {
		in.logf("the image has no %s-mkconfig: writing a minimal grub.cfg", prog)
		text := grubConf(bootPath(cfg, res.Kernel), bootPath(cfg, res.Initrd), res.CommandLine, cfg.timeout())
		if err := in.writeFile(filepath.Join(cfg.Target, grubCfg), []byte(text)); err != nil {
			return fmt.Errorf("write the GRUB configuration: %w", err)
		}
		return nil
	}
	if err := in.grubDefaults(); err != nil {
		return err
	}
	if _, err := in.runIn(ctx, cfg.Target, mkconfig, "-o", grubCfg); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(cfg.Target, grubCfg))
	if err != nil {
		return fmt.Errorf("%s wrote no configuration: %w", mkconfig, err)
	}
	if c, ok := grubCommandLine(b); ok {
		res.CommandLine = c
	} else {
		in.logf("%s has no linux line (boot loader spec entries?): reporting the configured command line", grubCfg)
	}
	return nil
}

// grubDefaults adds "rw" and Config.Append to GRUB_CMDLINE_LINUX for
// grub-mkconfig: in /etc/default/grub.d/herd.cfg where that directory
// exists (Debian), else at the end of /etc/default/grub.
func (in *installer) grubDefaults() error {
	args := strings.TrimPrefix(commandLine(in.cfg), "root=UUID="+in.cfg.RootUUID+" ")
	text := "# Written by herd's installer: the kernel arguments of the install.\n" +
		`GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ` + shellQuoted(args) + "\"\n"
	d := filepath.Join(in.cfg.Target, "etc/default/grub.d")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		if err := in.writeFile(filepath.Join(d, "herd.cfg"), []byte(text)); err != nil {
			return fmt.Errorf("write GRUB defaults: %w", err)
		}
		return nil
	}
	p := filepath.Join(in.cfg.Target, "etc/default/grub")
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read GRUB defaults: %w", err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	if err := in.writeFile(p, append(old, text...)); err != nil {
		return fmt.Errorf("write GRUB defaults: %w", err)
	}
	return nil
}

// shellQuoted escapes s for the inside of a double-quoted shell word.
func shellQuoted(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune("\\\"$`", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// grubCommandLine is the kernel command line of grub.cfg's first linux
// line.
func grubCommandLine(cfg []byte) (string, bool) {
	for l := range strings.SplitSeq(string(cfg), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "linux" || f[0] == "linuxefi" || f[0] == "linux16") {
			return strings.Join(f[2:], " "), true
		}
	}
	return "", false
}

// grubConf is a minimal grub.cfg with one entry. GRUB's root is the
// filesystem of its prefix (/boot/grub), so the paths are as read from
// the /boot filesystem.
func grubConf(kernel, initrd, cmdline string, timeout int) string {
	var b strings.Builder
	b.WriteString("# Written by herd's installer.\n")
	b.WriteString("set default=0\n")
	fmt.Fprintf(&b, "set timeout=%d\n", timeout)
	b.WriteString("\nmenuentry 'herd' {\n")
	fmt.Fprintf(&b, "\tlinux %s %s\n", kernel, cmdline)
	if initrd != "" {
		fmt.Fprintf(&b, "\tinitrd %s\n", initrd)
	}
	b.WriteString("}\n")
	return b.String()
}
