// Package hostsys is what the agent's install steps need of the running
// system (herd's initramfs, or the host of a test): finding the
// administration tools they run, and binding /dev, /proc and /sys into a
// new system for programs run chrooted there.
package hostsys

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ToolDirs are searched after PATH: the initramfs's PATH, and a non-root
// PATH on Debian, may lack the sbin directories.
var ToolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Find finds program name in PATH or ToolDirs; its error wraps
// exec.ErrNotFound and names where it looked.
func Find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range ToolDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w, nor in %s", name, exec.ErrNotFound, strings.Join(ToolDirs, ", "))
}

// FindTool is Find whose error also names the Debian package pkg that
// provides the program and says how the initramfs gets it.
func FindTool(name, pkg string) (string, error) {
	p, err := Find(name)
	if err != nil {
		return "", fmt.Errorf("%w: install Debian package %s (the initramfs carries it when the package is installed on the host that builds it: herd build boot)", err, pkg)
	}
	return p, nil
}

// FindIn returns the path, as seen from root, of program name in one of
// ToolDirs under root (an installed system's own tool, to run chrooted
// there), or "" when there is none.
func FindIn(root, name string) string {
	for _, d := range ToolDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// BindSystem bind-mounts the running system's /dev, /proc and /sys onto
// the same directories in target (making them when missing), for
// programs run chrooted there; logf (nil = silent) hears each step. undo
// unmounts them in reverse order (detaching one that is busy); call it
// also when a later step fails. On error nothing stays mounted.
func BindSystem(target string, logf func(string, ...any)) (undo func() error, err error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var done []string
	undo = func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			p := done[i]
			err := unix.Unmount(p, 0)
			if errors.Is(err, unix.EBUSY) {
				logf("unmount %s: busy, detaching it", p)
				err = unix.Unmount(p, unix.MNT_DETACH)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
				continue
			}
			logf("unmounted %s", p)
		}
		done = nil
		return errors.Join(errs...)
	}
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		p := filepath.Join(target, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, errors.Join(fmt.Errorf("make mount point: %w", err), undo())
		}
		if err := unix.Mount(d, p, "", unix.MS_BIND, ""); err != nil {
			return nil, errors.Join(fmt.Errorf("bind-mount %s on %s: %w", d, p, err), undo())
		}
		logf("bind-mounted %s on %s", d, p)
		done = append(done, p)
	}
	return undo, nil
}
