//go:build nettest

package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/herdproject/herd/ring/digest"
	"golang.org/x/sys/unix"
)

// TestReadbackMismatch: read-back verification end to end. Three real
// nodes, herd send --verify readback; node 2 writes to a loop device on a
// file in /dev/shm. In "changed", 4 KiB of that backing file change under
// the loop device after node 2 wrote them and before it reads them back
// (see changeBehind): node 2 fails "read-back mismatch", with the digest
// of what the disk now holds, and the other two end done and verified. In
// "unchanged", the same ring ends with all three done and verified: the
// loop device alone does not fail a node.
func TestReadbackMismatch(t *testing.T) {
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skipf("needs losetup: %v", err)
	}
	// 16 MiB behind 20 Mbit/s ports: about 7 s of stream, seconds for
	// changeBehind after node 2 wrote 5 MiB.
	const (
		size = 16 << 20
		rate = 20_000_000
		off  = 1 << 20 // the page of node 2's disk that changes
	)
	for _, change := range []bool{false, true} {
		t.Run(map[bool]string{false: "unchanged", true: "changed"}[change], func(t *testing.T) {
			r := newRing(t, 3)
			r.setRate(rate)
			in := r.input(size)
			input, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			nd := r.nodes[1]
			dev, backing := rbLoopOutput(t, r, nd, size)
			r.start()

			stop := make(chan struct{})
			stopChange := sync.OnceFunc(func() { close(stop) })
			defer stopChange()
			type result struct {
				image []byte    // node 2's disk after the change
				at    time.Time // when it changed
				err   error
			}
			changed := make(chan result, 1)
			if change {
				go func() {
					img, err := changeBehind(dev, backing, input, off, 5<<20, stop)
					changed <- result{img, time.Now(), err}
				}()
			}
			begun := time.Now()
			s := r.send(in, size, nil, "--verify", "readback")
			stopChange()
			t.Logf("herd send exited %d after %.1fs:\n%s", s.code, s.elapsed.Seconds(), s.out)
			if !change {
				if s.code != 0 {
					t.Errorf("herd send exited %d, want 0: nothing changed under node 2's loop device", s.code)
				}
				r.check(s, in, nil)
				return
			}

			var res result
			select {
			case res = <-changed:
			case <-time.After(time.Minute):
				t.Fatal("the change under node 2's loop device did not end within a minute")
			}
			if res.err != nil {
				t.Fatalf("change under node 2's loop device: %v\nnode 2's log:\n%s", res.err, tail(nd.log))
			}
			t.Logf("%d bytes at %d of %s changed %.2fs after the session started, before node 2 wrote its last page", 4096, off, backing, res.at.Sub(begun).Seconds())
			if s.code == 0 {
				t.Errorf("herd send exited 0 with node 2's disk changed under it")
			}
			r.check(s, in, map[string]string{nd.addr: "file 1: read-back mismatch"})
			// The reason names both digests: the stream's, and that of
			// what node 2's disk holds now, read with O_DIRECT.
			// herd send's default digest.
			sum := func(b []byte) []byte {
				h := digest.New(digest.Default)
				h.Write(b)
				return h.Sum(nil)
			}
			wrote, readBack := sum(input), sum(res.image)
			reason := rbReason(s.out, nd.addr)
			for _, want := range []string{"read-back mismatch", fmt.Sprintf("%x", wrote[:6]), fmt.Sprintf("%x", readBack[:6]), "O_DIRECT"} {
				if !strings.Contains(reason, want) {
					t.Errorf("node 2's reason %q does not say %q (the digest written is %x, that of the disk now %x)", reason, want, wrote, readBack)
				}
			}
		})
	}
}

// rbReason is node addr's reason in the summary of out ("" when none).
func rbReason(out, addr string) string {
	for _, m := range summaryRE.FindAllStringSubmatch(out, -1) {
		if m[1] == addr {
			return strings.TrimSpace(m[4])
		}
	}
	return ""
}

// rbLoopOutput makes node nd's output (out.img in its directory, the
// sender's -O) a symbolic link to a new loop device on a file of size
// bytes in the ring's directory (/dev/shm), attached with direct I/O off:
// the loop device reads and writes the file through its page cache, so a
// change to the file is what the device returns from then on. The device
// is detached when t ends, after the nodes stopped (register before
// r.start).
func rbLoopOutput(t *testing.T, r *ring, nd *node, size int64) (dev, backing string) {
	t.Helper()
	backing = filepath.Join(r.dir, filepath.Base(nd.dir)+".disk")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=off", backing).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	if err := os.Symlink(dev, filepath.Join(nd.dir, "out.img")); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s writes to %s (backing file %s)", nd.addr, dev, backing)
	return dev, backing
}

// changeBehind changes the page at off of loop device dev's backing file
// after the node writing input to dev wrote it and before the node reads
// it back, and returns what the device holds then (input with that page
// changed). The order is made certain, not timed:
//
//  1. It waits until dev (read through its page cache, which the node's
//     writes go to) holds the input's bytes up to at least `ahead`:
//     the page at off is written whole, and the node writes sequentially,
//     so nothing will touch it again.
//  2. fsync of dev writes every dirty page of the device back to the
//     backing file, the one at off included; the backing file must then
//     hold the input's bytes at off. The device's cached page is clean
//     from here on: no later writeback (the node's fsync at the end)
//     writes it again.
//  3. It overwrites that page of the backing file, and checks that an
//     O_DIRECT read of dev (what the read-back does) returns the new bytes.
//  4. The last page of dev does not hold the input's bytes yet: the node
//     has not written the end of the stream, so its read-back, which
//     starts after the stream, has not begun. Otherwise the change may
//     have come too late to be seen, and it says so.
//
// It gives up when stop closes or after a minute.
func changeBehind(dev, backing string, input []byte, off, ahead int64, stop <-chan struct{}) ([]byte, error) {
	const page = 4096
	d, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	buf := make([]byte, page)
	holds := func(at int64) (bool, error) {
		if _, err := d.ReadAt(buf, at); err != nil {
			return false, err
		}
		return bytes.Equal(buf, input[at:at+page]), nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ok, err := holds(off)
		if err == nil && ok {
			ok, err = holds(ahead)
		}
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		select {
		case <-stop:
			return nil, errors.New("the session ended before the node wrote the page")
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the node did not write %d bytes to %s within a minute", ahead+page, dev)
		}
		time.Sleep(time.Millisecond)
	}

	if err := d.Sync(); err != nil {
		return nil, fmt.Errorf("fsync %s: %w", dev, err)
	}
	b, err := os.OpenFile(backing, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if _, err := b.ReadAt(buf, off); err != nil {
		return nil, err
	}
	if !bytes.Equal(buf, input[off:off+page]) {
		return nil, fmt.Errorf("after fsync of %s its backing file does not hold the bytes written at %d", dev, off)
	}
	image := bytes.Clone(input)
	for i := off; i < off+page; i++ {
		image[i] ^= 0xff
	}
	if _, err := b.WriteAt(image[off:off+page], off); err != nil {
		return nil, err
	}
	if err := b.Sync(); err != nil {
		return nil, err
	}
	direct, err := rbReadDirect(dev, off, page)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(direct, image[off:off+page]) {
		return nil, fmt.Errorf("an O_DIRECT read of %s at %d does not return the changed bytes", dev, off)
	}
	last := int64(len(input)) - page
	if done, err := holds(last); err != nil {
		return nil, err
	} else if done {
		return nil, fmt.Errorf("too late: the node had written the whole stream (and may have read it back) when %s changed; the change proves nothing", backing)
	}
	return image, nil
}

// rbReadDirect reads n bytes (a multiple of 4096) at off of path with
// O_DIRECT.
func rbReadDirect(path string, off int64, n int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s with O_DIRECT: %w", path, err)
	}
	defer unix.Close(fd)
	const align = 4096
	raw := make([]byte, n+align)
	skip := (align - int(uintptr(unsafe.Pointer(&raw[0]))%align)) % align
	buf := raw[skip : skip+n]
	got, err := unix.Pread(fd, buf, off)
	if err != nil {
		return nil, fmt.Errorf("O_DIRECT read of %s at %d: %w", path, off, err)
	}
	if got != n {
		return nil, fmt.Errorf("O_DIRECT read of %s at %d: %d bytes, want %d", path, off, got, n)
	}
	return bytes.Clone(buf), nil
}
