package qemutests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/internal/netnstest"
)

// ROM is the iPXE option ROM the VMs' virtio-net cards boot from: Debian
// ipxe-qemu's BIOS ROM for virtio. It is built for the modern virtio-net
// device (PCI 1af4:1041), so the VMs' cards are modern-only
// (disable-legacy=on): SeaBIOS runs a ROM only when its PCI IDs match the
// card's, and QEMU patches the IDs only into its default ROM.
const ROM = "/usr/lib/ipxe/qemu/pxe-virtio.rom"

// Packages are the Debian packages the harness needs besides Go.
// ovmf is for UEFI nodes (Firmware), mtools and grub-efi-amd64-bin for the
// EFI system partitions their tests write.
const Packages = "qemu-system-x86 ipxe-qemu linux-image-amd64 kmod iproute2 e2fsprogs util-linux fdisk dosfstools extlinux syslinux-common ipxe pxelinux ovmf mtools grub-efi-amd64-bin"

// Bounds on building what the clusters share.
const (
	herdBuildTimeout = 5 * time.Minute
	bootBuildTimeout = 10 * time.Minute
)

// built is what every cluster of a test binary shares: herd and the boot
// tree made with it.
type built struct {
	dir     string // removed by Main
	herd    string // herd binary (static)
	bootDir string // boot tree: vmlinuz, initramfs.cpio.gz, iPXE binaries
	kernel  string // the /boot/vmlinuz-* it was built from
	took    time.Duration
}

var shared struct {
	once sync.Once
	b    built
	skip string
	err  error
}

// Main runs the tests and removes what the harness built for them. Call
// it from the test package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(qemutests.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	RemoveBuild()
	return code
}

// RemoveBuild removes what the harness built (herd and the boot tree) for
// the clusters of this process; a program that drives clusters calls it
// when the last one is gone, as Main does for tests.
func RemoveBuild() {
	if shared.b.dir != "" {
		os.RemoveAll(shared.b.dir)
	}
}

// build returns the shared herd and boot tree, making them on first use:
// `go build ./cmd/herd` (static), then `herd build boot --kernel <newest
// /boot/vmlinuz-*>`. With HERD_QEMU_BOOT_DIR set, that boot tree is used
// as it is (its initramfs embeds whatever herd it was built with). It
// skips the test when something the harness needs is missing.
func build(t T) built {
	t.Helper()
	shared.once.Do(func() {
		shared.skip = missing()
		if shared.skip != "" {
			return
		}
		start := time.Now()
		shared.b, shared.err = makeBuilt()
		shared.b.took = time.Since(start)
		if shared.err == nil {
			t.Logf("built herd and the boot tree (kernel %s) in %v: %s", shared.b.kernel, shared.b.took.Round(time.Second), shared.b.dir)
		}
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("qemutests: %v", shared.err)
	}
	return shared.b
}

// missing says what the harness lacks here, or "".
func missing() string {
	if err := netnstest.Available(); err != nil {
		return err.Error()
	}
	for _, c := range []string{"qemu-system-x86_64", "go"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Sprintf("no %s: apt-get install %s", c, Packages)
		}
	}
	if _, err := os.Stat(ROM); err != nil {
		return fmt.Sprintf("no iPXE ROM %s: apt-get install ipxe-qemu", ROM)
	}
	if os.Getenv("HERD_QEMU_BOOT_DIR") == "" {
		if _, why := newestKernel(); why != "" {
			return why
		}
	}
	return ""
}

func makeBuilt() (built, error) {
	var b built
	dir, err := os.MkdirTemp("", "herd-qemutests-")
	if err != nil {
		return b, err
	}
	b.dir = dir
	root, err := moduleRoot()
	if err != nil {
		return b, err
	}
	b.herd = filepath.Join(dir, "herd")
	// Not -trimpath: herd build finds the Go toolchain (for u-root's
	// commands) through its own GOROOT, which -trimpath drops.
	if _, err := runBounded(herdBuildTimeout, root, []string{"CGO_ENABLED=0"},
		"go", "build", "-o", b.herd, "./cmd/herd"); err != nil {
		return b, fmt.Errorf("build herd: %w", err)
	}
	if d := os.Getenv("HERD_QEMU_BOOT_DIR"); d != "" {
		for _, f := range []string{"vmlinuz", "initramfs.cpio.gz"} {
			if _, err := os.Stat(filepath.Join(d, f)); err != nil {
				return b, fmt.Errorf("HERD_QEMU_BOOT_DIR: %w", err)
			}
		}
		b.bootDir, b.kernel = d, filepath.Join(d, "vmlinuz")
		return b, nil
	}
	k, _ := newestKernel()
	b.kernel, b.bootDir = k, filepath.Join(dir, "boot")
	if _, err := runBounded(bootBuildTimeout, root, nil,
		b.herd, "build", "boot", "--kernel", k, "-o", b.bootDir, "--herd-binary", b.herd, "--source", root); err != nil {
		return b, fmt.Errorf("build the boot tree: %w", err)
	}
	return b, nil
}

// runBounded runs a command in dir with extra environment, for at most d,
// and returns its combined output; the error has the output's tail.
func runBounded(d time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w after %v", ctx.Err(), d)
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, lastLines(out.String(), 20))
	}
	return out.String(), nil
}

// moduleRoot is the directory of herd's go.mod (the tests run in
// qemu-tests/).
func moduleRoot() (string, error) {
	out, err := runBounded(time.Minute, "", nil, "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(out)
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside herd's module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// newestKernel returns the newest /boot/vmlinuz-* whose modules are
// installed (versions compared numerically), or why there is none.
func newestKernel() (string, string) {
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Slice(images, func(i, j int) bool { return versionLess(images[j], images[i]) })
	for _, p := range images {
		v, err := kernel.Version(p)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return p, ""
		}
	}
	return "", "no /boot/vmlinuz-* with its /lib/modules: apt-get install linux-image-amd64 kmod"
}

// versionLess compares a and b by their runs of digits as numbers and the
// rest as text ("6.1.0-9" < "6.1.0-56").
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		switch {
		case da > 0 && db > 0:
			x, _ := strconv.Atoi(a[:da])
			y, _ := strconv.Atoi(b[:db])
			if x != y {
				return x < y
			}
			a, b = a[da:], b[db:]
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && n < 9 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
