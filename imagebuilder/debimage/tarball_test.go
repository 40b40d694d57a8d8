package debimage

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/imagebuilder/golden"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// TestRootTar writes a small tree: owners kept (as root), hard links as
// links, setuid kept, /dev's nodes left out, xattrs as PAX records, the
// tarball's fstab in place of the image's (and the image's back after).
func TestRootTar(t *testing.T) {
	dir := t.TempDir()
	root := os.Geteuid() == 0
	mk := func(p, content string, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	mk("etc/fstab", "UUID=x / ext4 defaults 0 1\n", 0o644)
	mk("usr/bin/su", "su", 0o755|os.ModeSetuid)
	mk("usr/bin/a", "same", 0o755)
	os.Link(filepath.Join(dir, "usr/bin/a"), filepath.Join(dir, "usr/bin/b"))
	os.Symlink("a", filepath.Join(dir, "usr/bin/c"))
	os.MkdirAll(filepath.Join(dir, "dev/pts"), 0o755)
	os.Symlink("/proc/self/fd", filepath.Join(dir, "dev/fd"))
	mk("var/log/x", "log", 0o640)
	if root {
		os.Chown(filepath.Join(dir, "var/log/x"), 0, 4)
		if err := unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	xattr := unix.Setxattr(filepath.Join(dir, "usr/bin/a"), "user.herd", []byte("v"), 0) == nil

	var buf bytes.Buffer
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	res, err := writeRootTar(&buf, dir, mtime)
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := zstd.NewReader(&buf)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var names []string
	hdrs := map[string]*tar.Header{}
	bodies := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		hdrs[h.Name] = h
		b, _ := io.ReadAll(tr)
		bodies[h.Name] = string(b)
		if !h.ModTime.Equal(mtime.Truncate(time.Second)) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
	}
	want := []string{"./", "./dev/", "./etc/", "./etc/fstab", "./usr/", "./usr/bin/", "./usr/bin/a", "./usr/bin/b", "./usr/bin/c", "./usr/bin/su", "./var/", "./var/log/", "./var/log/x"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if res.Entries != len(names) {
		t.Errorf("counted %d entries, read %d", res.Entries, len(names))
	}
	if h := hdrs["./usr/bin/b"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "./usr/bin/a" {
		t.Errorf("hard link: %+v", h)
	}
	if h := hdrs["./usr/bin/c"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "a" {
		t.Errorf("symlink: %+v", h)
	}
	if h := hdrs["./usr/bin/su"]; h == nil || h.Mode != 0o4755 {
		t.Errorf("setuid: %+v", h)
	}
	if root {
		if h := hdrs["./var/log/x"]; h == nil || h.Gid != 4 || h.Mode != 0o640 || h.Uname != "" {
			t.Errorf("owner: %+v", h)
		}
	}
	if xattr {
		if v := hdrs["./usr/bin/a"].PAXRecords["SCHILY.xattr.user.herd"]; v != "v" {
			t.Errorf("xattr %q", v)
		}
	}

	// Through the file: the tarball's fstab, the tree's back after.
	out := filepath.Join(t.TempDir(), "root.tar.zst")
	if _, err := writeRootTarFile(out, dir, mtime); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/fstab")); !strings.HasPrefix(string(b), "UUID=x") {
		t.Errorf("the tree's fstab is now %q", b)
	}
	f, _ := os.Open(out)
	defer f.Close()
	zr2, _ := zstd.NewReader(f)
	defer zr2.Close()
	tr = tar.NewReader(zr2)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no ./etc/fstab: %v", err)
		}
		if h.Name == "./etc/fstab" {
			b, _ := io.ReadAll(tr)
			if string(b) != golden.RootTarFstab {
				t.Errorf("tarball fstab %q", b)
			}
			break
		}
	}
}
