package mkfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/agent/hostsys"
)

const mib = 1 << 20

// sparseFile makes a sparse file of size bytes.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// blkid asks util-linux's blkid for one tag, probing the file itself (no
// cache).
func blkid(t *testing.T, img, tag string) string {
	t.Helper()
	path, err := hostsys.FindTool("blkid", "util-linux")
	if err != nil {
		t.Skip(err)
	}
	out, err := exec.Command(path, "-p", "-o", "value", "-s", tag, img).Output()
	if err != nil {
		t.Fatalf("blkid -s %s %s: %v", tag, img, err)
	}
	return strings.TrimSpace(string(out))
}

func TestMake(t *testing.T) {
	for _, tc := range []struct {
		name, fstype, label string
		size                int64
		wantLabel, version  string // version: blkid's VERSION ("" = not checked)
	}{
		{"ext4", "ext4", "root", 64 * mib, "root", ""},
		{"ext4 16-byte label", "ext4", "abcdefghijklmnop", 64 * mib, "abcdefghijklmnop", ""},
		{"ext3 no label", "ext3", "", 64 * mib, "", ""},
		{"ext2", "ext2", "boot", 64 * mib, "boot", ""},
		{"xfs", "xfs", "scratch", 320 * mib, "scratch", ""},
		{"vfat", "vfat", "efi", 64 * mib, "EFI", "FAT16"},
		{"vfat 512 MiB is FAT32", "vfat", "ESP", 512 * mib, "ESP", "FAT32"},
		{"swap", "swap", "swap0", 64 * mib, "swap0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := makerFor(tc.fstype)
			if _, err := hostsys.FindTool(m.tool, m.pkg); err != nil {
				t.Skip(err)
			}
			img := sparseFile(t, tc.size)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			uuid, err := Make(ctx, img, tc.fstype, tc.label)
			if err != nil {
				t.Fatal(err)
			}
			if want := blkid(t, img, "UUID"); uuid != want || uuid == "" {
				t.Errorf("UUID %q, blkid says %q", uuid, want)
			}
			if got := blkid(t, img, "LABEL"); got != tc.wantLabel {
				t.Errorf("label %q, want %q", got, tc.wantLabel)
			}
			if got := blkid(t, img, "TYPE"); got != tc.fstype {
				t.Errorf("type %q, want %s", got, tc.fstype)
			}
			if tc.version != "" {
				if got := blkid(t, img, "VERSION"); got != tc.version {
					t.Errorf("version %q, want %s", got, tc.version)
				}
			}
		})
	}
}

// Making a filesystem over another: the old one's signature must not
// leave its UUID behind.
func TestMakeOver(t *testing.T) {
	for _, m := range []struct{ tool, pkg string }{{"mkswap", "util-linux"}, {"mke2fs", "e2fsprogs"}, {"mkfs.vfat", "dosfstools"}} {
		if _, err := hostsys.FindTool(m.tool, m.pkg); err != nil {
			t.Skip(err)
		}
	}
	img := sparseFile(t, 64*mib)
	ctx := context.Background()
	for _, fstype := range []string{"swap", "ext4", "swap", "vfat", "ext2"} {
		uuid, err := Make(ctx, img, fstype, "")
		if err != nil {
			t.Fatal(err)
		}
		if want := blkid(t, img, "UUID"); uuid != want {
			t.Errorf("%s over the previous filesystem: UUID %q, blkid says %q", fstype, uuid, want)
		}
		if got := blkid(t, img, "TYPE"); got != fstype {
			t.Errorf("%s over the previous filesystem: blkid says %s", fstype, got)
		}
	}
}

func TestMakeErrors(t *testing.T) {
	img := sparseFile(t, 64*mib)
	ctx := context.Background()
	for _, tc := range []struct {
		name, dev, fstype, label string
		is                       error
		want                     string
	}{
		{"unknown type", img, "ntfs", "", ErrUnknownType, `make "ntfs" on ` + img + ": unknown filesystem type: want ext4, ext3, ext2, xfs, vfat or swap"},
		{"long ext label", img, "ext4", "abcdefghijklmnopq", ErrLabel, `"abcdefghijklmnopq" has 17 bytes, ext4 takes 16`},
		{"long xfs label", img, "xfs", "abcdefghijklm", ErrLabel, `"abcdefghijklm" has 13 bytes, xfs takes 12`},
		{"long vfat label", img, "vfat", "efi-system-p", ErrLabel, `"EFI-SYSTEM-P" has 12 bytes, vfat takes 11`},
		{"missing device", filepath.Join(t.TempDir(), "nodev"), "ext4", "", os.ErrNotExist, "make ext4 on "},
		{"not a disk", "/dev/null", "swap", "", nil, "/dev/null is neither a block device nor a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uuid, err := Make(ctx, tc.dev, tc.fstype, tc.label)
			if err == nil || uuid != "" || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Make: %q, %v; want an error ...%s... (%v)", uuid, err, tc.want, tc.is)
			}
		})
	}
	// The tool fails: its output is in the error (a 64 KiB file is too
	// small for XFS).
	if _, err := hostsys.FindTool("mkfs.xfs", "xfsprogs"); err == nil {
		small := sparseFile(t, 64<<10)
		_, err := Make(ctx, small, "xfs", "")
		if err == nil || !strings.Contains(err.Error(), "mkfs.xfs -f -q "+small+": exit status") || strings.Count(err.Error(), "\n") == 0 {
			t.Errorf("mkfs.xfs on 64 KiB: %v, want its exit status and output", err)
		}
	}
}

func TestLookTool(t *testing.T) {
	_, err := hostsys.FindTool("mkfs.herd-no-such-tool", "herd-no-such-package")
	if !errors.Is(err, exec.ErrNotFound) || !strings.Contains(err.Error(), "install Debian package herd-no-such-package (the initramfs carries it when the package is installed on the host that builds it: herd build boot)") {
		t.Errorf("lookTool of a missing tool: %v", err)
	}
}
