package sink

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// loopDevice attaches a loop device over a new file of size bytes, all
// set to fill, and detaches it when the test ends. args go to losetup
// (such as "-b", "4096" for 4 KiB logical blocks).
func loopDevice(t *testing.T, size int, fill byte, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not available")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, bytes.Repeat([]byte{fill}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "-f", "--show", img)
	out, err := exec.Command("losetup", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup %s: %v: %s", strings.Join(args, " "), err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

func readDevice(t *testing.T, dev string) []byte {
	t.Helper()
	b, err := os.ReadFile(dev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBlockDevice(t *testing.T) {
	t.Run("512-byte sectors", func(t *testing.T) { testBlockDevice(t, 512) })
	t.Run("4096-byte sectors", func(t *testing.T) { testBlockDevice(t, 4096) })
}

func testBlockDevice(t *testing.T, sector int) {
	const size = 4 << 20
	dev := loopDevice(t, size, 0xff, "-b", fmt.Sprint(sector))
	tests := []struct {
		name      string
		noZeroOut bool // force the written-zeros fallback
		ops       []op
	}{
		{name: "BLKZEROOUT with unaligned head and tail", ops: []op{fill('a', 1000), z(3000), fill('b', 100), z(2<<20 + 7), w("c"), z(512 * 3)}},
		{name: "aligned hole", ops: []op{fill('a', 4096), z(1 << 20), fill('b', 4096)}},
		{name: "small holes coalesce", ops: []op{w("x"), z(100), z(1000), z(1 << 20), z(3), w("y")}},
		{name: "hole to the end of the device", ops: []op{fill('a', 512), z(size - 512)}},
		{name: "fallback writes zeros", noZeroOut: true, ops: []op{fill('a', 1000), z(3000), fill('b', 100), z(2<<20 + 7), w("c"), z(512 * 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Fill the device with 0xff so that zeros must really be written.
			f, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(bytes.Repeat([]byte{0xff}, size)); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			if err := Check(dev, Options{Size: size, DataSize: size}); err != nil {
				t.Fatalf("Check: %v", err)
			}
			s, err := Open(dev, Options{Size: -1, DataSize: -1})
			if err != nil {
				t.Fatal(err)
			}
			if a := s.(*fileSink).align; a != int64(sector) {
				t.Errorf("logical block size %d, want %d", a, sector)
			}
			s.(*fileSink).noZeroOut = tt.noZeroOut
			want := run(t, s, tt.ops)
			mustClose(t, s, int64(len(want)))
			if !tt.noZeroOut && s.(*fileSink).noZeroOut {
				t.Error("BLKZEROOUT failed and zeros were written instead")
			}
			got := readDevice(t, dev)
			if !bytes.Equal(got[:len(want)], want) {
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("device byte %d = %#x, want %#x", i, got[i], want[i])
					}
				}
			}
			if rest := got[len(want):]; !bytes.Equal(rest, bytes.Repeat([]byte{0xff}, len(rest))) {
				t.Fatal("bytes after the stream were changed")
			}
		})
	}
}

func TestBlockDeviceTooSmall(t *testing.T) {
	const size = 1 << 20
	dev := loopDevice(t, size, 0)
	want := fmt.Sprintf("target %s is %d bytes, the image is %d: refusing to write", dev, size, size+1)
	if err := Check(dev, Options{Size: size + 1, DataSize: -1}); err == nil || err.Error() != want {
		t.Errorf("Check = %v, want %q", err, want)
	}
	if _, err := Open(dev, Options{Size: size + 1, DataSize: -1}); err == nil || err.Error() != want {
		t.Errorf("Open = %v, want %q", err, want)
	}

	// A stream longer than announced fails where it leaves the device.
	s, err := Open(dev, Options{Size: -1, DataSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(make([]byte, size-10)); err != nil {
		t.Fatal(err)
	}
	n, err := s.Write(bytes.Repeat([]byte("x"), 20))
	wantErr := fmt.Sprintf("write %s at offset %d: the stream goes past the end of the device (%d bytes)", dev, size, size)
	if n != 10 || err == nil || !strings.HasPrefix(err.Error(), wantErr) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write past the end = %d, %v; want 10, %q", n, err, wantErr)
	}
	if err := s.Zero(1); err == nil || !strings.Contains(err.Error(), dev) {
		t.Errorf("Zero past the end = %v, want an error naming %s", err, dev)
	}
	s.Abort()
}

func TestBlockDeviceBusy(t *testing.T) {
	dev := loopDevice(t, 1<<20, 0)
	// What a mount does: hold the device exclusively.
	holder, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	want := "target " + dev + " is in use"
	if err := Check(dev, Options{Size: -1, DataSize: -1}); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Check = %v, want %q...", err, want)
	}
	if _, err := Open(dev, Options{Size: -1, DataSize: -1}); err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Open = %v, want %q...", err, want)
	}
	holder.Close()
	if err := Check(dev, Options{Size: -1, DataSize: -1}); err != nil {
		t.Errorf("Check after release: %v", err)
	}
	// Check must not have kept the device open.
	s, err := Open(dev, Options{Size: -1, DataSize: -1})
	if err != nil {
		t.Fatalf("Open after Check: %v", err)
	}
	// And an open sink holds it too.
	if err := Check(dev, Options{Size: -1, DataSize: -1}); err == nil {
		t.Error("Check succeeded while a sink writes to the device")
	}
	s.Abort()
}

// smallFS mounts a 1 MiB tmpfs and unmounts it when the test ends.
func smallFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount -t tmpfs -o size=1m: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

func TestOutOfSpace(t *testing.T) {
	dir := smallFS(t)
	path := filepath.Join(dir, "img")

	err := Check(path, Options{Size: 2 << 20, DataSize: -1})
	want := "not enough space for " + path + ": it needs 2.0 MiB, 1.0 MiB are available: free space on this node"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Check = %v, want %q...", err, want)
	}
	if err := Check(path, Options{Size: 2 << 20, DataSize: 64 << 10}); err != nil {
		t.Errorf("Check of a sparse image that fits: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check created %s", path)
	}

	s, err := Open(path, Options{Size: -1, DataSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var werr error
	for i := 0; i < 32 && werr == nil; i++ {
		_, werr = s.Write(chunk)
	}
	prefix := "write " + path + " at offset "
	if werr == nil || !strings.HasPrefix(werr.Error(), prefix) ||
		!strings.Contains(werr.Error(), "no space left on device (the file system is full: free space on this node") ||
		!errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB to a 1 MiB file system: %v, want %q... no space left on device", werr, prefix)
	}
	var oe *OffsetError
	if !errors.As(werr, &oe) || oe.Offset <= 0 || oe.Offset > 1<<20 {
		t.Errorf("error offset %+v, want within the first MiB", oe)
	}
	s.Abort()

	// The space of a file that would be truncated counts as free.
	if err := os.WriteFile(path, make([]byte, 768<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, Options{Size: 768 << 10, DataSize: -1}); err != nil {
		t.Errorf("Check over an existing file whose space comes back: %v", err)
	}
	if err := Check(path+"-new", Options{Size: 768 << 10, DataSize: -1}); err == nil {
		t.Error("Check of a new file that does not fit succeeded")
	}
}
