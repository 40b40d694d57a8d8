package bootloader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// FindKernel finds the installed kernel and initrd under target/boot and
// returns them as paths inside target ("/boot/vmlinuz-6.1.0-56-amd64"):
// the newest vmlinuz-VERSION, in version order (6.1.0-10 is newer than
// 6.1.0-9), with its initrd.img-VERSION (Debian), initramfs-VERSION.img
// (Fedora, Arch) or initrd-VERSION (SUSE); else a plain vmlinuz with
// initrd.img or initramfs.img. Only regular files (or links to them)
// count; signatures and backups (.sig, .hmac, .signed, .old, .bak,
// .dpkg-*) are skipped. initrd is "" when the kernel has none. Without a
// kernel the error wraps ErrNoKernel.
func FindKernel(target string) (kernel, initrd string, err error) {
	dir := filepath.Join(target, "boot")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("find kernel: %w", err)
	}
	isFile := func(name string) bool {
		st, err := os.Stat(filepath.Join(dir, name))
		return err == nil && st.Mode().IsRegular()
	}
	best := ""
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || v == "" || notKernel(v) || !isFile(e.Name()) {
			continue
		}
		if best == "" || compareVersions(v, best) > 0 {
			best = v
		}
	}
	var kname string
	var initrds []string
	switch {
	case best != "":
		kname = "vmlinuz-" + best
		initrds = []string{"initrd.img-" + best, "initramfs-" + best + ".img", "initrd-" + best}
	case isFile("vmlinuz"):
		kname = "vmlinuz"
		initrds = []string{"initrd.img", "initramfs.img"}
	default:
		return "", "", fmt.Errorf("no kernel under %s: %w", dir, ErrNoKernel)
	}
	for _, n := range initrds {
		if isFile(n) {
			initrd = "/boot/" + n
			break
		}
	}
	return "/boot/" + kname, initrd, nil
}

// notKernel says whether a vmlinuz-VERSION name's VERSION marks a file
// that is not a bootable kernel.
func notKernel(v string) bool {
	for _, s := range []string{".sig", ".hmac", ".signed", ".old", ".bak"} {
		if strings.HasSuffix(v, s) {
			return true
		}
	}
	return strings.Contains(v, ".dpkg-")
}

// compareVersions orders kernel versions as sort -V does, roughly: runs
// of digits compare as numbers, other runs as strings, a digit run sorts
// after a non-digit one, and a version with more runs after its prefix.
// It returns -1, 0 or +1.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		var x, y string
		x, a = nextRun(a)
		y, b = nextRun(b)
		dx, dy := isDigit(x[0]), isDigit(y[0])
		switch {
		case dx && dy:
			x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
			if len(x) != len(y) {
				return sign(len(x) - len(y))
			}
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		case dx != dy:
			if dx {
				return 1
			}
			return -1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return sign(len(a) - len(b))
}

// nextRun splits s (not empty) after its leading run of digits or of
// non-digits.
func nextRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
