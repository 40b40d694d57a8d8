package debimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/imagebuilder/golden"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/internal/iocount"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// The root tarball (root.tar.zst) is the image's root tree for install
// plans, as `herd image golden --root-tar` writes its own: names start
// with "./" ("./" itself first), directories before their contents, in
// byte order. Unlike golden's, it keeps what a Debian system needs:
// numeric owners (no names: the image's /etc/passwd defines them), the
// modes with setuid/setgid/sticky bits, hard links as links, symlinks,
// and extended attributes (file capabilities, as PAX SCHILY.xattr.
// records). It differs from the image's root file system in:
//
//	/etc/fstab     golden.RootTarFstab: the root by LABEL=root, not the
//	               image's UUIDs (the agent rewrites it per node)
//	/dev/*         left out: device nodes need root to unpack, and
//	               the booted system mounts devtmpfs on /dev
//
// Every entry has the build's start time (to the second) as its
// modification time.

// tarResult counts what writeRootTar wrote.
type tarResult struct {
	entries int
	size    int64
}

// writeRootTar writes the tree under dir to w as a zstd-compressed tar
// (see above).
func writeRootTar(w io.Writer, dir string, mtime time.Time) (tarResult, error) {
	cw := &iocount.Writer{W: w}
	zw, err := zstd.NewWriter(cw, zstd.WithEncoderConcurrency(2))
	if err != nil {
		return tarResult{}, err
	}
	tw := tar.NewWriter(zw)
	mtime = mtime.Truncate(time.Second)
	links := map[[2]uint64]string{} // (dev, inode) → first name
	var res tarResult
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "dev" {
			// Keep /dev, without its nodes and links.
		} else if strings.HasPrefix(rel, "dev/") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		hdr := &tar.Header{
			Name:    "./" + rel,
			Mode:    buildutil.TarMode(info.Mode()),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		var body *os.File
		switch {
		case d.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if rel == "." {
				hdr.Name = "./"
			}
		case info.Mode().IsRegular():
			key := [2]uint64{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok && st.Nlink > 1 {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				break
			}
			if st.Nlink > 1 {
				links[key] = hdr.Name
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
			if body, err = os.Open(p); err != nil {
				return err
			}
			defer body.Close()
		case info.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode()&fs.ModeNamedPipe != 0:
			hdr.Typeflag = tar.TypeFifo
		case info.Mode()&fs.ModeSocket != 0:
			return nil // a socket cannot be archived, and means nothing unpacked
		default:
			return fmt.Errorf("%s: cannot archive a %v", p, info.Mode().Type())
		}
		if err := addXattrs(hdr, p); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		res.entries++
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
	res.size = cw.N
	return res, err
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

// writeRootTarFile writes the root tarball of dir to path, with the
// tarball's fstab in place of the image's for the time of the writing.
func writeRootTarFile(path, dir string, mtime time.Time) (tarResult, error) {
	fstab := filepath.Join(dir, "etc/fstab")
	orig, err := os.ReadFile(fstab)
	if err != nil {
		return tarResult{}, err
	}
	if err := os.WriteFile(fstab, []byte(golden.RootTarFstab), 0o644); err != nil {
		return tarResult{}, err
	}
	defer os.WriteFile(fstab, orig, 0o644)
	f, err := os.Create(path)
	if err != nil {
		return tarResult{}, err
	}
	res, err := writeRootTar(f, dir, mtime)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return res, err
}
