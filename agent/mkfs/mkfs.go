// Package mkfs makes the filesystems and swap areas of an install plan's
// partitions with the usual tools (mke2fs, mkfs.xfs, mkfs.vfat, mkswap)
// and reads back their UUIDs.
package mkfs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/herdproject/herd/agent/customize"
	"github.com/herdproject/herd/agent/hostsys"
	"github.com/herdproject/herd/ring/blockdev"
)

// ErrUnknownType is wrapped by Make's error for a filesystem type it does
// not make.
var ErrUnknownType = errors.New("unknown filesystem type")

// ErrLabel is wrapped by Make's error for a label too long for the
// filesystem.
var ErrLabel = errors.New("label too long")

// fat32Min is the size from which vfat is made FAT32.
const fat32Min = 512 << 20

// maker is how one filesystem type is made.
type maker struct {
	tool, pkg string
	maxLabel  int // bytes
}

// makerFor is how fstype is made.
func makerFor(fstype string) (maker, bool) {
	switch fstype {
	case "ext4", "ext3", "ext2":
		return maker{"mke2fs", "e2fsprogs", 16}, true
	case "xfs":
		return maker{"mkfs.xfs", "xfsprogs", 12}, true
	case "vfat":
		return maker{"mkfs.vfat", "dosfstools", 11}, true
	case "swap":
		return maker{"mkswap", "util-linux", 16}, true
	}
	return maker{}, false
}

// Make makes a filesystem of fstype on dev and returns its UUID as blkid prints it.
//
// fstype is ext4, ext3 or ext2 (mke2fs -F -q -t TYPE), xfs (mkfs.xfs -f
// -q), vfat (mkfs.vfat, FAT32 from 512 MiB) or swap (mkswap). label ("" =
// none) may have up to 16 bytes for ext and swap, 12 for xfs and 11 for
// vfat, which gets it upper-cased. dev is a block device or a regular file
// (a filesystem image). The UUID is read back from dev itself
// (customize.FindUUID), not from a blkid cache.
func Make(ctx context.Context, dev, fstype, label string) (uuid string, err error) {
	m, ok := makerFor(fstype)
	if !ok {
		return "", fmt.Errorf("make %q on %s: %w: want ext4, ext3, ext2, xfs, vfat or swap", fstype, dev, ErrUnknownType)
	}
	if fstype == "vfat" {
		label = strings.ToUpper(label)
	}
	if len(label) > m.maxLabel {
		return "", fmt.Errorf("make %s on %s: %w: %q has %d bytes, %s takes %d: shorten it", fstype, dev, ErrLabel, label, len(label), fstype, m.maxLabel)
	}
	size, err := blockdev.SizeOf(dev)
	if err != nil {
		return "", fmt.Errorf("make %s on %s: %w", fstype, dev, err)
	}
	tool, err := hostsys.FindTool(m.tool, m.pkg)
	if err != nil {
		return "", fmt.Errorf("make %s on %s: %w", fstype, dev, err)
	}
	var args []string
	switch fstype {
	case "ext4", "ext3", "ext2":
		args = []string{"-F", "-q", "-t", fstype}
		if label != "" {
			args = append(args, "-L", label)
		}
	case "xfs":
		args = []string{"-f", "-q"}
		if label != "" {
			args = append(args, "-L", label)
		}
	case "vfat":
		if size >= fat32Min {
			args = append(args, "-F", "32")
		}
		if label != "" {
			args = append(args, "-n", label)
		}
	case "swap":
		if label != "" {
			args = append(args, "-L", label)
		}
	}
	args = append(args, dev)
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make %s on %s: %s %s: %w\n%s", fstype, dev, m.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	uuid, err = customize.FindUUID(dev)
	if err != nil {
		return "", fmt.Errorf("make %s on %s: after %s: %w", fstype, dev, m.tool, err)
	}
	return uuid, nil
}
