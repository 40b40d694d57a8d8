package readback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests on real block devices: a loop device whose backing file changes
// under it, and device-mapper flakey and error targets. They need root,
// losetup and (for the dm ones) dmsetup with a kernel that has
// device-mapper; without, they skip and say why.

// cmdTimeout bounds every losetup, dmsetup and modprobe the tests run.
const cmdTimeout = 30 * time.Second

// devSize is the size of every test device: 8 MiB.
const devSize = 8 << 20

func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop and device-mapper devices)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// run runs a command, bounded by cmdTimeout, and returns its trimmed
// standard output.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// loopDevice attaches a new loop device (buffered, not direct I/O, so
// that it reads its backing file through that file's page cache) to a
// backing file of devSize bytes in a directory of t's, filled with
// content, and detaches it when t ends.
func loopDevice(t *testing.T, content []byte) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(backing, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return attachLoop(t, backing, "off"), backing
}

// attachLoop attaches a new loop device to backing, with direct I/O "on"
// or "off", and detaches it when tb ends; no loop device skips tb.
func attachLoop(tb testing.TB, backing, directIO string) string {
	tb.Helper()
	dev, err := run("losetup", "--find", "--show", "--direct-io="+directIO, backing)
	if err != nil {
		tb.Skipf("no loop device: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := run("losetup", "--detach", dev); err != nil {
			tb.Errorf("detach: %v", err)
		}
	})
	return dev
}

// needTarget skips t unless device-mapper works here and has target
// (loading dm-NAME first when it is a module).
func needTarget(t *testing.T, target string) {
	t.Helper()
	needRoot(t, "losetup", "dmsetup")
	if _, err := run("dmsetup", "version"); err != nil {
		t.Skipf("device-mapper is not available in this kernel (%s): %v", kernel(), err)
	}
	_, _ = run("modprobe", "dm_"+target) // built in, or not there: dmsetup targets says
	targets, err := run("dmsetup", "targets")
	if err != nil {
		t.Skipf("dmsetup targets: %v", err)
	}
	for _, line := range strings.Split(targets, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == target {
			return
		}
	}
	t.Skipf("device-mapper has no %s target in this kernel (%s; modprobe dm_%s did not help)", target, kernel(), target)
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "unknown kernel"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b)
}

// dmDevice creates a device-mapper device with table and removes it when
// t ends; it returns its /dev/mapper path.
func dmDevice(t *testing.T, table string) string {
	t.Helper()
	name := fmt.Sprintf("herd-readback-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	// --noudevsync: no waiting on a udev that may not run; mknodes
	// makes the node when udev did not.
	if _, err := run("dmsetup", "create", "--noudevsync", name, "--table", table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := run("dmsetup", "remove", "--noudevsync", "--retry", name); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	if _, err := run("dmsetup", "mknodes", name); err != nil {
		t.Fatal(err)
	}
	return "/dev/mapper/" + name
}

// fill returns n bytes of b's pattern, every byte non-zero.
func fill(n int, seed uint64) []byte {
	b := randomBytes(n, seed)
	for i := range b {
		b[i] |= 1
	}
	return b
}

// writeDevice writes b at offset 0 of dev and syncs it.
func writeDevice(t *testing.T, dev string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// A loop device's backing file changed under it: the loop device's page
// cache still has the bytes written through it, O_DIRECT reads the new
// ones.
func TestLoopBackingChanged(t *testing.T) {
	needRoot(t, "losetup")
	dev, backing := loopDevice(t, make([]byte, devSize))
	// The kernel drops a block device's page cache at its last close:
	// held open, as a mounted or otherwise used disk is, it keeps it.
	holder, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	written := fill(devSize, 20)
	writeDevice(t, dev, written)
	// Cache the device's pages, as a buffered read-back would find them.
	cached, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cached, written) {
		t.Fatal("the loop device does not read back what was written to it")
	}

	// The "disk" changes: 4 KiB at 1 MiB of the backing file.
	f, err := os.OpenFile(backing, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(written)
	copy(changed[1<<20:], fill(4096, 21))
	if _, err := f.WriteAt(changed[1<<20:1<<20+4096], 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// What a read through the page cache says: the old bytes.
	if again, err := os.ReadFile(dev); err != nil {
		t.Fatal(err)
	} else if !bytes.Equal(again, written) {
		t.Fatal("a buffered read of the loop device already sees the change: this test cannot tell O_DIRECT from the page cache")
	}

	res, err := Digest(context.Background(), dev, devSize, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Method != MethodDirect {
		t.Errorf("Method %q, want %q", res.Method, MethodDirect)
	}
	if w := sha256.Sum256(written); bytes.Equal(res.Digest, w[:]) {
		t.Fatal("read-back digest is that of the bytes written: the change under the loop device was not seen")
	}
	checkDigest(t, res, changed)
}

// A dm flakey target that corrupts the first byte of every bio: of reads
// (the disk returns other bytes than it holds) and of writes (it holds
// other bytes than it was given).
func TestFlakeyCorrupt(t *testing.T) {
	needTarget(t, "flakey")
	for _, dir := range []string{"r", "w"} {
		t.Run(map[string]string{"r": "reads", "w": "writes"}[dir], func(t *testing.T) {
			written := fill(devSize, 30)
			initial := written
			if dir == "w" {
				initial = make([]byte, devSize)
			}
			loop, _ := loopDevice(t, initial)
			// Up 0 s, down 3600 s: down (corrupting) from the start.
			dev := dmDevice(t, fmt.Sprintf("0 %d flakey %s 0 0 3600 5 corrupt_bio_byte 1 %s 0 0", devSize/512, loop, dir))
			if dir == "w" {
				writeDevice(t, dev, written)
			} else if plain, err := os.ReadFile(dev); err != nil {
				t.Fatal(err)
			} else if bytes.Equal(plain, written) {
				// Seen on Debian's Linux 6.1.0-57: reads through the
				// target come back intact, corrupt_bio_byte r or not.
				t.Skipf("this kernel's dm-flakey (%s) does not corrupt reads: a plain read of %s returns the bytes written", kernel(), dev)
			}
			res, err := Digest(context.Background(), dev, devSize, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if w := sha256.Sum256(written); bytes.Equal(res.Digest, w[:]) {
				t.Fatal("read-back digest is that of the bytes written: the corruption was not seen")
			}
			w := sha256.Sum256(written)
			t.Logf("%s: read back %x…, written %x…", dev, res.Digest[:6], w[:6])
		})
	}
}

// A dm error target spliced into a linear device: the read-back fails and
// names the first bad offset.
func TestErrorTarget(t *testing.T) {
	needTarget(t, "error")
	written := fill(devSize, 40)
	loop, _ := loopDevice(t, written)
	const bad, badLen = 2048 + 8, 8 // sectors: 4 KiB at 1 MiB + 4 KiB
	table := fmt.Sprintf("0 %d linear %s 0\n%d %d error\n%d %d linear %s %d",
		bad, loop, bad, badLen, bad+badLen, devSize/512-bad-badLen, loop, bad+badLen)
	dev := dmDevice(t, table)
	_, err := Digest(context.Background(), dev, devSize, Options{})
	if err == nil {
		t.Fatal("no error reading through the error target")
	}
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("error %v is not EIO", err)
	}
	want := fmt.Sprintf("read-back of %s at offset %d: input/output error", dev, bad*512)
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
