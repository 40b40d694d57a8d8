package debimage

import (
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/herdproject/herd/imagebuilder/golden"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
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

// writeRootTar writes the tree under dir to w as the root tarball (see
// above).
func writeRootTar(w io.Writer, dir string, mtime time.Time) (buildutil.TreeStats, error) {
	// The tarball's fstab replaces the image's; it is not added.
	if _, err := os.Stat(filepath.Join(dir, "etc/fstab")); err != nil {
		return buildutil.TreeStats{}, err
	}
	return buildutil.WriteTree(w, dir, buildutil.TreeOptions{
		MTime: mtime, Preserve: true, Hollow: []string{"dev"}, Concurrency: 2,
		Replace: map[string][]byte{"etc/fstab": []byte(golden.RootTarFstab)},
	})
}

// writeRootTarFile writes the root tarball of dir to path.
func writeRootTarFile(path, dir string, mtime time.Time) (buildutil.TreeStats, error) {
	f, err := os.Create(path)
	if err != nil {
		return buildutil.TreeStats{}, err
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
