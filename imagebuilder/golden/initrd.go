package golden

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// initrdWriter writes a gzip-compressed newc cpio archive, the format
// every x86 kernel unpacks (CONFIG_RD_GZIP).
type initrdWriter struct {
	zw    *gzip.Writer
	rw    cpio.RecordWriter
	ino   uint64
	files int
}

func newInitrdWriter(w io.Writer) (*initrdWriter, error) {
	// The default level: best compression saves 3% of the initrd and
	// takes five times as long.
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	return &initrdWriter{zw: zw, rw: cpio.Newc.Writer(zw)}, nil
}

// record writes one entry with a fresh inode number.
func (w *initrdWriter) record(r cpio.Record) error {
	w.ino++
	r.Ino, r.NLink = w.ino, 1
	if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
		r.NLink = 2
	}
	w.files++
	if err := w.rw.WriteRecord(r); err != nil {
		return fmt.Errorf("initrd: %s: %w", r.Name, err)
	}
	return nil
}

func (w *initrdWriter) dir(name string) error {
	return w.record(cpio.Directory(name, 0o755))
}

// file adds the host file src as name, with perm.
func (w *initrdWriter) file(name, src string, perm uint64) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return w.record(cpio.Record{ReaderAt: f, Info: cpio.Info{Name: name, Mode: cpio.S_IFREG | perm, FileSize: uint64(st.Size())}})
}

// tree adds every file and directory under the host directory src as
// prefix/...
func (w *initrdWriter) tree(src, prefix string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(filepath.ToSlash(filepath.Join(prefix, rel)), "/")
		switch {
		case d.IsDir():
			return w.dir(name)
		case d.Type().IsRegular():
			return w.file(name, p, 0o644)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return w.record(cpio.Symlink(name, target))
		}
		return nil
	})
}

func (w *initrdWriter) close() error {
	if err := cpio.WriteTrailer(w.rw); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	return w.zw.Close()
}

// writeInitrd writes the golden initrd to out: the herd binary as /init,
// the stage marker, /dev/console for the kernel to open before it starts
// init, mount points, and the staged module tree (stage/lib/modules/...).
func writeInitrd(out io.Writer, herd, stage string) (files int, err error) {
	w, err := newInitrdWriter(out)
	if err != nil {
		return 0, err
	}
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", strings.TrimPrefix(goldeninit.NewRoot, "/")} {
		if err := w.dir(d); err != nil {
			return 0, err
		}
	}
	// The kernel opens /dev/console from the initrd for init's standard
	// input and output: without it init starts without a console.
	if err := w.record(cpio.CharDev("dev/console", 0o600, 5, 1)); err != nil {
		return 0, err
	}
	if err := w.record(cpio.StaticFile(strings.TrimPrefix(goldeninit.InitrdMarker, "/"),
		"herd golden image initrd: /init (herd) mounts the root file system and runs its /sbin/init\n", 0o644)); err != nil {
		return 0, err
	}
	if err := w.file("init", herd, 0o755); err != nil {
		return 0, err
	}
	if stage != "" {
		if err := w.tree(filepath.Join(stage, "lib"), "lib"); err != nil {
			return 0, fmt.Errorf("initrd: modules: %w", err)
		}
	}
	if err := w.close(); err != nil {
		return 0, err
	}
	return w.files, nil
}
