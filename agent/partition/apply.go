package partition

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/herdproject/herd/agent/hostsys"
	"github.com/herdproject/herd/internal/mountinfo"
	"github.com/herdproject/herd/kickstart"
	"github.com/herdproject/herd/ring/blockdev"
	"golang.org/x/sys/unix"
)

// ErrInUse is wrapped by Apply's error when the disk or one of its
// partitions is mounted, held or used as swap.
var ErrInUse = errors.New("disk in use")

const (
	// settleTimeout bounds the wait for the kernel's new partitions.
	settleTimeout = 10 * time.Second
	// pollInterval is how often Apply looks at them meanwhile.
	pollInterval = 50 * time.Millisecond
	// sysBlock is where the kernel lists block devices.
	sysBlock = "/sys/class/block"
)

// Apply writes t to its disk with sfdisk (wiping the signatures of the old
// table and of filesystems where the new partitions start) and sets each
// partition's Device.
//
// It refuses, and writes nothing, when the disk or one of its partitions
// is mounted (by major:minor in /proc/self/mountinfo), has holders
// (device mapper, RAID, LVM: /sys/class/block/NAME/holders) or is used as
// swap (/proc/swaps), and when the disk's size is no longer t.Size.
//
// On a block device, Apply then has the kernel re-read the table
// (BLKRRPART) and waits, at most 10 s, until every partition's device node
// exists and its size in sysfs is the planned one. When the kernel does
// not read the table itself (a kernel without the dos or gpt parser), Apply
// tells it the partitions with BLKPG, as partx does. A regular file
// (a disk image) is partitioned too, without the in-use checks; it has no
// partition devices and Device stays empty. Cancelling ctx stops sfdisk
// and the wait.
func Apply(ctx context.Context, t *Table) error {
	if t == nil || len(t.Parts) == 0 {
		return errors.New("apply partition table: empty table: Compute one first")
	}
	fi, err := os.Stat(t.Disk)
	if err != nil {
		return fmt.Errorf("apply partition table: %w", err)
	}
	block := blockdev.IsBlock(fi.Mode())
	if !block && !fi.Mode().IsRegular() {
		return fmt.Errorf("apply partition table to %s: %s is neither a block device nor a regular file", t.Disk, fi.Mode().Type())
	}
	size, err := blockdev.SizeOf(t.Disk)
	if err != nil {
		return fmt.Errorf("apply partition table: %w", err)
	}
	if size != t.Size {
		return fmt.Errorf("apply partition table to %s: the disk has %d bytes, the table was computed for %d: compute it again", t.Disk, size, t.Size)
	}
	var name string // the disk's name in sysfs
	if block {
		if name, err = sysName(fi); err != nil {
			return fmt.Errorf("apply partition table to %s: %w", t.Disk, err)
		}
		if err := checkUnused(t.Disk, name); err != nil {
			return fmt.Errorf("apply partition table to %s: %w", t.Disk, err)
		}
	}
	sfdisk, err := hostsys.FindTool("sfdisk", "fdisk")
	if err != nil {
		return fmt.Errorf("apply partition table to %s: %w", t.Disk, err)
	}
	cmd := exec.CommandContext(ctx, sfdisk, "--wipe", "always", "--wipe-partitions", "always", "-q", t.Disk)
	cmd.Stdin = strings.NewReader(t.Script())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apply partition table to %s: sfdisk: %w\n%s", t.Disk, err, strings.TrimSpace(string(out)))
	}
	for i := range t.Parts {
		t.Parts[i].Device = ""
	}
	if !block {
		return nil
	}
	if err := settle(ctx, t, name); err != nil {
		return fmt.Errorf("apply partition table to %s: %w", t.Disk, err)
	}
	return nil
}

// sysName is the sysfs name of the block device fi (which may be reached
// by a symlink such as /dev/disk/by-id/...).
func sysName(fi os.FileInfo) (string, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", errors.New("no device number")
	}
	link := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("find the device in sysfs: %w", err)
	}
	name := filepath.Base(target)
	if _, err := os.Stat(filepath.Join(sysBlock, name, "partition")); err == nil {
		return "", fmt.Errorf("%s is a partition: give the whole disk", name)
	}
	return name, nil
}

// kpart is a partition as the kernel sees it, in 512-byte sectors.
type kpart struct {
	name        string
	dev         string // "major:minor"
	start, size int64
}

// kernelParts lists the kernel's partitions of disk (a sysfs name) by
// number.
func kernelParts(disk string) (map[int]kpart, error) {
	ents, err := os.ReadDir(filepath.Join(sysBlock, disk))
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	parts := make(map[int]kpart)
	for _, e := range ents {
		dir := filepath.Join(sysBlock, disk, e.Name())
		num, err := readInt(filepath.Join(dir, "partition"))
		if err != nil {
			continue // not a partition
		}
		p := kpart{name: e.Name()}
		if p.start, err = readInt(filepath.Join(dir, "start")); err != nil {
			return nil, err
		}
		if p.size, err = readInt(filepath.Join(dir, "size")); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(dir, "dev"))
		if err != nil {
			return nil, err
		}
		p.dev = strings.TrimSpace(string(b))
		parts[int(num)] = p
	}
	return parts, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// checkUnused fails when disk (sysfs name name) or one of its partitions
// is mounted, held or swapped on.
func checkUnused(path, name string) error {
	parts, err := kernelParts(name)
	if err != nil {
		return err
	}
	devs := make(map[string]string) // "major:minor" → device node
	b, err := os.ReadFile(filepath.Join(sysBlock, name, "dev"))
	if err != nil {
		return fmt.Errorf("read the device number: %w", err)
	}
	devs[strings.TrimSpace(string(b))] = path
	names := []string{name}
	for _, p := range parts {
		devs[p.dev] = "/dev/" + p.name
		names = append(names, p.name)
	}
	for _, n := range names {
		held, err := os.ReadDir(filepath.Join(sysBlock, n, "holders"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("check holders of %s: %w", n, err)
		}
		if len(held) > 0 {
			return fmt.Errorf("%w: %s is held by %s (device mapper, RAID or LVM): stop that first", ErrInUse, "/dev/"+n, held[0].Name())
		}
	}
	if err := checkMounts(devs); err != nil {
		return err
	}
	return checkSwaps(devs)
}

// checkMounts fails when a device of devs is mounted.
func checkMounts(devs map[string]string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("check mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := mountinfo.Parse(sc.Text())
		if !ok {
			continue
		}
		if dev, ok := devs[m.DevID]; ok {
			return fmt.Errorf("%w: %s is mounted on %s: unmount it first (umount %s)", ErrInUse, dev, m.Point, m.Point)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("check mounts: /proc/self/mountinfo: %w", err)
	}
	return nil
}

// checkSwaps fails when a device of devs is used as swap.
func checkSwaps(devs map[string]string) error {
	b, err := os.ReadFile("/proc/swaps")
	if errors.Is(err, os.ErrNotExist) {
		return nil // a kernel without swap
	}
	if err != nil {
		return fmt.Errorf("check swap: %w", err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		fields := strings.Fields(l)
		if i == 0 || len(fields) == 0 {
			continue // the header
		}
		name := mountinfo.Unescape(fields[0])
		var st unix.Stat_t
		if unix.Stat(name, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue // a swap file, or gone
		}
		if dev, ok := devs[fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))]; ok {
			return fmt.Errorf("%w: %s is used as swap: swapoff %s first", ErrInUse, dev, name)
		}
	}
	return nil
}

// settle has the kernel take the new table of t.Disk (sysfs name disk)
// and waits for the partitions' device nodes.
func settle(ctx context.Context, t *Table, disk string) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	f, err := os.Open(t.Disk)
	if err != nil {
		return err
	}
	defer f.Close()
	fd := int(f.Fd())

	// BLKRRPART fails with EBUSY while something (udev's probe) has a
	// partition open: try again until the deadline.
	for {
		err := unix.IoctlSetInt(fd, unix.BLKRRPART, 0)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("re-read the partition table: %w: the device cannot hold partitions (for a loop device: losetup --partscan)", err)
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("re-read the partition table: %w", err)
		}
		if err := sleep(ctx); err != nil {
			return fmt.Errorf("re-read the partition table: still busy: %w", err)
		}
	}
	if err := syncKernel(fd, t, disk); err != nil {
		return err
	}

	for {
		missing := ""
		for i, p := range t.Parts {
			part := filepath.Base(DeviceName("/dev/"+disk, p.Number))
			if why := partReady(disk, part, p); why != "" {
				missing = why
				break
			}
			t.Parts[i].Device = "/dev/" + part
		}
		if missing == "" {
			return nil
		}
		if err := sleep(ctx); err != nil {
			for i := range t.Parts {
				t.Parts[i].Device = ""
			}
			return fmt.Errorf("wait for the new partitions: %s: %w", missing, err)
		}
	}
}

// sleep waits pollInterval, or until ctx ends.
func sleep(ctx context.Context) error {
	tm := time.NewTimer(pollInterval)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// extLength is the kernel's length of a dos extended partition in bytes
// (the msdos parser's: 2 sectors of 512 bytes, or one larger sector).
func extLength(disk string) int64 {
	lbs, err := readInt(filepath.Join(sysBlock, disk, "queue", "logical_block_size"))
	if err != nil || lbs < 1024 {
		return 1024
	}
	return lbs
}

// syncKernel makes the kernel's partitions of disk those of t, with BLKPG,
// when re-reading the table did not: a kernel built without the parser
// for t's label reads nothing.
func syncKernel(fd int, t *Table, disk string) error {
	have, err := kernelParts(disk)
	if err != nil {
		return err
	}
	want := make(map[int]Partition)
	for _, p := range t.Parts {
		want[p.Number] = p
	}
	ext := extLength(disk)
	length := func(p Partition) int64 {
		if p.Part.Kind == kickstart.Extended {
			return ext
		}
		return p.Size
	}
	for n, k := range have {
		p, ok := want[n]
		if ok && k.start*512 == p.Start && k.size*512 == length(p) {
			delete(want, n)
			continue
		}
		if err := blkpg(fd, unix.BLKPG_DEL_PARTITION, n, 0, 0); err != nil {
			return fmt.Errorf("remove the kernel's old partition %d (BLKPG): %w", n, err)
		}
	}
	for _, p := range t.Parts {
		if _, ok := want[p.Number]; !ok {
			continue
		}
		if err := blkpg(fd, unix.BLKPG_ADD_PARTITION, p.Number, p.Start, length(p)); err != nil {
			return fmt.Errorf("tell the kernel of partition %d (BLKPG): %w", p.Number, err)
		}
	}
	return nil
}

// blkpg adds or removes partition n (BLKPG ioctl; start and length in
// bytes).
func blkpg(fd int, op int32, n int, start, length int64) error {
	p := &unix.BlkpgPartition{Start: start, Length: length, Pno: int32(n)}
	arg := &unix.BlkpgIoctlArg{Op: op, Datalen: int32(unsafe.Sizeof(*p)), Data: (*byte)(unsafe.Pointer(p))}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKPG, uintptr(unsafe.Pointer(arg))); e != 0 {
		return e
	}
	return nil
}

// partReady says why partition p (sysfs name part of disk) is not ready
// yet, or "" when its size in sysfs is the planned one and its device node
// is there.
func partReady(disk, part string, p Partition) string {
	dir := filepath.Join(sysBlock, disk, part)
	size, err := readInt(filepath.Join(dir, "size"))
	if err != nil {
		return fmt.Sprintf("no partition %s in sysfs", part)
	}
	if p.Part.Kind != kickstart.Extended && size*512 != p.Size {
		return fmt.Sprintf("%s has %d bytes, want %d", part, size*512, p.Size)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return fmt.Sprintf("no device number for %s in sysfs", part)
	}
	var st unix.Stat_t
	node := "/dev/" + part
	if err := unix.Stat(node, &st); err != nil {
		return fmt.Sprintf("no device node %s", node)
	}
	if got := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)); st.Mode&unix.S_IFMT != unix.S_IFBLK || got != strings.TrimSpace(string(b)) {
		return fmt.Sprintf("%s is not block device %s yet", node, strings.TrimSpace(string(b)))
	}
	return ""
}
