// Package kernel reads what herd needs to know about a Linux kernel image
// before building an initramfs for it: its release string, taken from the
// bzImage's setup header, and the options in its build configuration.
package kernel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Offsets in the x86 boot protocol's setup header
// (Documentation/arch/x86/boot.rst, "The real-mode kernel header").
const (
	offHeader        = 0x202 // "HdrS"
	offVersion       = 0x206 // boot protocol version
	offKernelVersion = 0x20E // pointer to the version string, minus 0x200
	versionBase      = 0x200
	maxVersionLen    = 256
)

// ErrNotBzImage is returned for a file that is not an x86 bzImage with a
// version string (boot protocol 2.00 or later).
var ErrNotBzImage = errors.New("not an x86 bzImage with a kernel version string")

// Version returns the kernel release of the bzImage at path ("6.1.0-56-amd64"):
// the first word of the string the setup header's kernel_version field
// points to, which is what `uname -r` prints and what names
// /lib/modules/<release>.
func Version(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	v, err := ReadVersion(f)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", path, err)
	}
	return v, nil
}

// ReadVersion is Version for an open image.
func ReadVersion(r io.ReaderAt) (string, error) {
	var hdr [offKernelVersion + 2]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return "", fmt.Errorf("%w: reading the setup header: %v", ErrNotBzImage, err)
	}
	if string(hdr[offHeader:offHeader+4]) != "HdrS" {
		return "", fmt.Errorf("%w: no HdrS signature at 0x%x", ErrNotBzImage, offHeader)
	}
	if proto := binary.LittleEndian.Uint16(hdr[offVersion:]); proto < 0x0200 {
		return "", fmt.Errorf("%w: boot protocol %d.%02d", ErrNotBzImage, proto>>8, proto&0xff)
	}
	ptr := binary.LittleEndian.Uint16(hdr[offKernelVersion:])
	if ptr == 0 {
		return "", fmt.Errorf("%w: kernel_version is 0", ErrNotBzImage)
	}
	buf := make([]byte, maxVersionLen)
	n, err := r.ReadAt(buf, int64(ptr)+versionBase)
	if n == 0 && err != nil {
		return "", fmt.Errorf("%w: reading the version string at 0x%x: %v", ErrNotBzImage, int(ptr)+versionBase, err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	fields := strings.Fields(string(buf))
	if len(fields) == 0 || !printable(fields[0]) {
		return "", fmt.Errorf("%w: empty or unreadable version string", ErrNotBzImage)
	}
	return fields[0], nil
}

func printable(s string) bool {
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Config is a kernel's build configuration: CONFIG_ name → value ("y",
// "m", a number or a quoted string). Options that are "not set" are
// absent.
type Config map[string]string

// ConfigPath is where Debian, Ubuntu and Fedora keep the configuration of
// the kernel at kernelPath with the given release: config-<release> next
// to the image (/boot/config-6.1.0-56-amd64).
func ConfigPath(kernelPath, release string) string {
	return filepath.Join(filepath.Dir(kernelPath), "config-"+release)
}

// ReadConfig reads a kernel .config file.
func ReadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := Config{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			continue
		}
		c[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Enabled reports whether option is built in ("y").
func (c Config) Enabled(option string) bool { return c[option] == "y" }
