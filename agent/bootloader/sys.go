package bootloader

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/herdproject/herd/agent/hostsys"
	"golang.org/x/sys/unix"
)

// Filesystem magic numbers (statfs f_type) the installer tells apart.
const (
	magicVFAT  = 0x4d44 // MSDOS_SUPER_MAGIC: vfat, msdos
	magicExt   = 0xef53
	magicXFS   = 0x58465342
	magicBtrfs = 0x9123683e
	magicTmpfs = 0x01021994
	magicOvl   = 0x794c7630
)

// statfsType is the statfs filesystem magic of the filesystem holding p.
func statfsType(p string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: p, Err: err}
	}
	return int64(st.Type), nil
}

// fsName names a filesystem magic for messages.
func fsName(magic int64) string {
	switch magic {
	case magicVFAT:
		return "vfat"
	case magicExt:
		return "ext2/3/4"
	case magicXFS:
		return "xfs"
	case magicBtrfs:
		return "btrfs"
	case magicTmpfs:
		return "tmpfs"
	case magicOvl:
		return "overlay"
	}
	return fmt.Sprintf("type %#x", magic)
}

// run runs a host program and logs its command line and output.
func (in *installer) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return in.runIn(ctx, "", name, args...)
}

// runIn runs name (a path inside root) chrooted into root, or a host
// program when root is "", with a plain environment. It logs the command
// and its output; a failure's error carries the output.
func (in *installer) runIn(ctx context.Context, root, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	line := strings.Join(append([]string{name}, args...), " ")
	if root != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "HOME=/root"}
		line = "chroot " + root + " " + line
	}
	in.logf("run %s", line)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if err != nil {
		if text == "" {
			return out.Bytes(), fmt.Errorf("%s: %w", line, err)
		}
		return out.Bytes(), fmt.Errorf("%s: %w: %s", line, err, text)
	}
	for l := range strings.SplitSeq(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			in.logf("  %s", l)
		}
	}
	return out.Bytes(), nil
}

// bindSystem binds the running system's /dev, /proc and /sys into
// target (hostsys.BindSystem), logging each step.
func (in *installer) bindSystem(target string) (undo func() error, err error) {
	return hostsys.BindSystem(target, in.logf)
}

// writeFile writes data to p (making its directory) and syncs it.
func (in *installer) writeFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	in.logf("wrote %s (%d bytes)", p, len(data))
	return nil
}

// copyFile copies the regular file src to dst (making its directory) and
// syncs it.
func (in *installer) copyFile(src, dst string) error {
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err != nil {
		w.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := w.Sync(); err != nil {
		w.Close()
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	if err := w.Close(); err != nil {
		return err
	}
	in.logf("copied %s to %s (%d bytes)", src, dst, n)
	return nil
}
