package diskimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeSys builds a sysfs with sda (partitions sda1, sda2), sda2 held by
// dm-0 (vg-root), and sdb alone.
func fakeSys(t *testing.T) string {
	t.Helper()
	sys := t.TempDir()
	mk := func(dir, dev string, files map[string]string) string {
		p := filepath.Join(sys, "devices", dir)
		if err := os.MkdirAll(filepath.Join(p, "holders"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, "dev"), []byte(dev+"\n"), 0o644)
		for name, content := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(p, name)), 0o755)
			os.WriteFile(filepath.Join(p, name), []byte(content), 0o644)
		}
		link := filepath.Join(sys, "dev", "block", dev)
		os.MkdirAll(filepath.Dir(link), 0o755)
		if err := os.Symlink(p, link); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("sda", "8:0", nil)
	mk("sda/sda1", "8:1", map[string]string{"partition": "1"})
	sda2 := mk("sda/sda2", "8:2", map[string]string{"partition": "2"})
	dm0 := mk("virtual/dm-0", "254:0", map[string]string{"dm/name": "vg-root\n"})
	os.Symlink(dm0, filepath.Join(sda2, "holders", "dm-0"))
	mk("sdb", "8:16", nil)
	return sys
}

func TestMountedRW(t *testing.T) {
	sys := fakeSys(t)
	tests := []struct {
		name      string
		id        string
		mountinfo string
		want      []string
	}{
		{"partition mounted rw", "8:0", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n", []string{"/dev/sda2 on / (ext4)"}},
		{"partition mounted ro", "8:0", "22 1 8:1 / /boot ro - vfat /dev/sda1 ro\n", nil},
		{"LVM on a partition", "8:0", "22 1 254:0 / / rw - ext4 /dev/mapper/vg-root rw\n", []string{"/dev/mapper/vg-root on / (ext4)"}},
		// btrfs reports an anonymous device number: matched by name.
		{"btrfs by source", "8:0", "22 1 0:31 / /srv rw - btrfs /dev/sda1 rw\n", []string{"/dev/sda1 on /srv (btrfs)"}},
		{"the partition itself", "8:2", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n", []string{"/dev/sda2 on / (ext4)"}},
		{"another disk", "8:16", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n22 1 8:1 / /boot rw - vfat /dev/sda1 rw\n", nil},
		{"the sibling partition", "8:1", "22 1 8:2 / / rw - ext4 /dev/sda2 rw\n", nil},
		{"device unknown to sysfs", "9:9", "22 1 9:9 / /x rw - ext4 /dev/md9 rw\n", []string{"/dev/md9 on /x (ext4)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mi := filepath.Join(t.TempDir(), "mountinfo")
			os.WriteFile(mi, []byte(tt.mountinfo), 0o644)
			got, err := mountedRW(tt.id, nil, mi, sys)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	if _, err := mountedRW("8:0", nil, filepath.Join(sys, "nope"), sys); err == nil || !strings.Contains(err.Error(), "mount table") {
		t.Errorf("missing mountinfo: %v", err)
	}
}

func TestMountedRWNotBlock(t *testing.T) {
	if _, err := MountedRW(os.DevNull, "", ""); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("MountedRW(%s) = %v", os.DevNull, err)
	}
}
