package diskimage

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// maxStack bounds the walk from a disk to its partitions and to the
// device-mapper or RAID devices built on them.
const maxStack = 64

// MountedRW returns, for the block device dev, the read-write mounts of
// the device itself, of its partitions and of the devices stacked on any
// of them (LVM, dm-crypt, MD RAID: the "holders" in sysfs), as lines like
// "/dev/sda2 on / (ext4)". table and sys are the files it reads:
// "" = /proc/self/mountinfo and /sys. A mount counts as read-write when
// both its mount options and its superblock options say rw.
func MountedRW(dev, table, sys string) ([]string, error) {
	if table == "" {
		table = "/proc/self/mountinfo"
	}
	if sys == "" {
		sys = "/sys"
	}
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, fmt.Errorf("%s is not a block device", dev)
	}
	id := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	aliases := []string{dev}
	if real, err := filepath.EvalSymlinks(dev); err == nil {
		aliases = append(aliases, real)
	}
	return mountedRW(id, aliases, table, sys)
}

// mountedRW is MountedRW for the device numbered id ("8:0"), also known
// by the paths in aliases.
func mountedRW(id string, aliases []string, table, sys string) ([]string, error) {
	devs, names := stackOf(sys, id)
	for _, a := range aliases {
		names[a] = true
	}
	f, err := os.Open(table)
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m, ok := mountinfo.Parse(sc.Text())
		if !ok || !m.RW {
			continue
		}
		if devs[m.DevID] || names[m.Source] {
			out = append(out, fmt.Sprintf("%s on %s (%s)", m.Source, m.Point, m.FSType))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return out, nil
}

// stackOf returns the "major:minor" numbers of the block device id, its
// partitions and their holders (recursively), and their /dev names
// ("/dev/sda1", "/dev/dm-0", "/dev/mapper/vg-root"). A device sysfs does
// not know yields only itself.
func stackOf(sys, id string) (map[string]bool, map[string]bool) {
	devs, names := map[string]bool{}, map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 && len(devs) < maxStack {
		cur := queue[0]
		queue = queue[1:]
		if devs[cur] {
			continue
		}
		devs[cur] = true
		dir, err := filepath.EvalSymlinks(filepath.Join(sys, "dev", "block", cur))
		if err != nil {
			continue
		}
		names["/dev/"+filepath.Base(dir)] = true
		if b, err := os.ReadFile(filepath.Join(dir, "dm", "name")); err == nil {
			names["/dev/mapper/"+strings.TrimSpace(string(b))] = true
		}
		// Partitions are subdirectories with a "partition" file.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
				if d := readDevID(filepath.Join(dir, e.Name())); d != "" {
					queue = append(queue, d)
				}
			}
		}
		holders, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range holders {
			if d := readDevID(filepath.Join(dir, "holders", h.Name())); d != "" {
				queue = append(queue, d)
			}
		}
	}
	return devs, names
}

// readDevID reads a sysfs block device directory's "dev" file.
func readDevID(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "dev"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
