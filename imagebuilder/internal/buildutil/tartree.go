package buildutil

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/internal/iocount"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// TreeOptions say how WriteTree archives a tree.
type TreeOptions struct {
	// MTime is every entry's modification time (to the second).
	MTime time.Time
	// Preserve keeps what an installed system needs: numeric owners (no
	// names: the tree's /etc/passwd defines them), hard links as links,
	// FIFOs, and extended attributes as PAX SCHILY.xattr. records;
	// sockets are left out. false: every entry is root's (by name) and
	// only directories, regular files and symbolic links are archived.
	Preserve bool
	// Hollow are directories (relative, slash-separated: "dev") archived
	// without their contents.
	Hollow []string
	// Replace gives other contents to regular files (relative paths:
	// "etc/fstab"); they keep their mode and owner.
	Replace map[string][]byte
	// Concurrency is the zstd encoder's; 0 = zstd's default.
	Concurrency int
}

// TreeStats counts what WriteTree wrote.
type TreeStats struct {
	// Entries is the number of tar entries; Size the compressed bytes.
	Entries int
	Size    int64
}

// WriteTree writes the tree under dir to w as a zstd-compressed tar:
// names start with "./" ("./" itself first), directories before their
// contents, in byte order (filepath.WalkDir's), modes with the setuid,
// setgid and sticky bits (TarMode).
func WriteTree(w io.Writer, dir string, o TreeOptions) (TreeStats, error) {
	cw := &iocount.Writer{W: w}
	var zopts []zstd.EOption
	if o.Concurrency > 0 {
		zopts = append(zopts, zstd.WithEncoderConcurrency(o.Concurrency))
	}
	zw, err := zstd.NewWriter(cw, zopts...)
	if err != nil {
		return TreeStats{}, err
	}
	tw := tar.NewWriter(zw)
	mtime := o.MTime.Truncate(time.Second)
	links := map[[2]uint64]string{} // (dev, inode) → first name
	var st TreeStats
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if hollowed(o.Hollow, rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: "./" + rel, Mode: TarMode(info.Mode()), ModTime: mtime, Uname: "root", Gname: "root"}
		var sys *syscall.Stat_t
		if o.Preserve {
			var ok bool
			if sys, ok = info.Sys().(*syscall.Stat_t); !ok {
				return fmt.Errorf("%s: no stat", p)
			}
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.Format = int(sys.Uid), int(sys.Gid), "", "", tar.FormatPAX
		}
		var body io.Reader
		switch mode := info.Mode(); {
		case d.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if rel == "." {
				hdr.Name = "./"
			}
		case mode.IsRegular():
			if b, ok := o.Replace[rel]; ok {
				hdr.Typeflag, hdr.Size, body = tar.TypeReg, int64(len(b)), bytes.NewReader(b)
				break
			}
			if sys != nil && sys.Nlink > 1 {
				key := [2]uint64{uint64(sys.Dev), sys.Ino}
				if first, ok := links[key]; ok {
					hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
					break
				}
				links[key] = hdr.Name
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			hdr.Typeflag, hdr.Size, body = tar.TypeReg, info.Size(), f
		case mode&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case o.Preserve && mode&fs.ModeNamedPipe != 0:
			hdr.Typeflag = tar.TypeFifo
		case o.Preserve && mode&fs.ModeSocket != 0:
			return nil // a socket cannot be archived, and means nothing unpacked
		default:
			return fmt.Errorf("%s: cannot archive a %v", p, mode.Type())
		}
		if o.Preserve {
			if err := addXattrs(hdr, p); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		st.Entries++
		if body != nil {
			if n, err := io.Copy(tw, body); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			} else if n != hdr.Size {
				return fmt.Errorf("%s: changed while archived", p)
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	st.Size = cw.N
	return st, err
}

// hollowed says whether rel lies inside one of the hollow directories
// (the directories themselves are kept).
func hollowed(hollow []string, rel string) bool {
	return slices.ContainsFunc(hollow, func(h string) bool { return strings.HasPrefix(rel, h+"/") })
}

// addXattrs puts p's extended attributes into hdr as PAX records.
func addXattrs(hdr *tar.Header, p string) error {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ENOTSUP) || n == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: list xattrs: %w", p, err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			return fmt.Errorf("%s: xattr %s: %w", p, name, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+name] = string(v[:m])
	}
	return nil
}
