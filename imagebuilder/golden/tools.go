package golden

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/internal/gobuild"
)

// Tool is a host program Build runs.
type Tool = buildutil.Tool

// Tools are what Build needs from the host: all run as an ordinary
// user, on the image file, without loop devices.
var Tools = []Tool{
	{Name: "sfdisk", Package: "fdisk"},
	{Name: "mkfs.vfat", Package: "dosfstools"},
	{Name: "mcopy", Package: "mtools"},
	{Name: "syslinux", Package: "syslinux"},
	{Name: MBRBin, Package: "syslinux-common"},
	{Name: "mke2fs", Package: "e2fsprogs"},
	{Name: "debugfs", Package: "e2fsprogs"},
	{Name: "depmod", Package: "kmod"},
}

// MBRBin is syslinux's master boot record, written to the image's first
// 440 bytes.
const MBRBin = "/usr/lib/syslinux/mbr/mbr.bin"

// CheckTools returns an error naming every missing tool and the Debian
// packages to install, nil when all are there.
func CheckTools() error { return buildutil.CheckTools(Tools) }

// neededTools are the Tools a build of cfg runs: all of them for an
// image; for a root tarball alone, only depmod (for the initrd's modules).
func neededTools(cfg *Config) []Tool {
	if cfg.Output != "" {
		return Tools
	}
	var need []Tool
	for _, t := range Tools {
		if t.Name == "depmod" && len(cfg.Modules) > 0 {
			need = append(need, t)
		}
	}
	return need
}

// run runs a tool with args; its output goes into the error when it
// fails.
func run(ctx context.Context, stdin []byte, name string, args ...string) error {
	path, err := buildutil.LookTool(name)
	if err != nil {
		return fmt.Errorf("%s not found: %w (run CheckTools first)", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	// mtools refuses images whose FAT geometry it finds odd unless told
	// not to check; C locale for messages we may quote.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ErrNotStatic is wrapped by the error for a herd binary that needs
// shared libraries, which the golden system does not have, or is not for
// x86-64.
var ErrNotStatic = initramfs.ErrNotStatic

// CheckStatic makes sure path is a statically linked x86-64 ELF
// executable: no program interpreter, no shared libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("herd binary %s: %w: %w", path, ErrNotStatic, err)
	}
	machine := f.Machine
	f.Close()
	if machine != elf.EM_X86_64 {
		return fmt.Errorf("herd binary %s is for %v: %w (the golden image boots an x86 kernel)", path, machine, ErrNotStatic)
	}
	if err := initramfs.CheckStatic(path); err != nil {
		return fmt.Errorf("herd binary %w", err)
	}
	return nil
}

// buildHerd compiles src's ./cmd/herd, static, for x86-64 (the golden
// image boots an x86 kernel), to out.
func buildHerd(ctx context.Context, src, out string) error {
	return gobuild.StaticHerd(ctx, src, out, "amd64")
}
