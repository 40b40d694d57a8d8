package source

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herdproject/herd/ring/plan"
)

// entry is what a tar entry says, for comparison.
type entry struct {
	Type     byte
	Mode     int64
	Uid, Gid int
	Link     string
	Content  string
	Major    int64
	Minor    int64
	Xattrs   map[string]string
}

func readTar(t *testing.T, r io.Reader) (map[string]entry, []string) {
	t.Helper()
	tr := tar.NewReader(r)
	got := map[string]entry{}
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return got, order
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := entry{Type: h.Typeflag, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Link: h.Linkname, Content: string(b), Major: h.Devmajor, Minor: h.Devminor}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if e.Xattrs == nil {
					e.Xattrs = map[string]string{}
				}
				e.Xattrs[name] = v
			}
		}
		if _, dup := got[h.Name]; dup {
			t.Errorf("entry %s twice", h.Name)
		}
		got[h.Name] = e
		order = append(order, h.Name)
	}
}

func TestDirs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("device nodes and ownership need root")
	}
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	home := filepath.Join(root, "srv", "home")
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	long := strings.Repeat("long-directory-name/", 8) + "file-with-a-long-name.conf"

	writeFile(t, etc+"/hosts", []byte("127.0.0.1 localhost\n"))
	writeFile(t, etc+"/sub/deep.conf", []byte("deep"))
	writeFile(t, etc+"/"+long, []byte("long"))
	writeFile(t, etc+"/suid", []byte("#!/bin/sh\n"))
	writeFile(t, etc+"/messages.log", []byte("excluded by base name"))
	writeFile(t, etc+"/sub/cache/x", []byte("excluded by relative path"))
	writeFile(t, etc+"/shadow", []byte("excluded by absolute path"))
	writeFile(t, home+"/alice/.profile", []byte("profile"))
	must(t, unix.Chmod(etc+"/suid", 0o4755))
	must(t, os.Chmod(etc+"/hosts", 0o640))
	must(t, os.Chown(etc+"/hosts", 1234, 5678))
	must(t, os.Chtimes(etc+"/hosts", mtime, mtime))
	must(t, os.Symlink("hosts", etc+"/hosts.link"))
	must(t, os.Link(etc+"/hosts", etc+"/hosts.hard"))
	must(t, os.Link(etc+"/sub/deep.conf", home+"/deep.hard")) // across -D trees
	must(t, unix.Mknod(etc+"/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(etc+"/sda", unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	must(t, unix.Chmod(etc+"/null", 0o666))
	must(t, unix.Chmod(etc+"/sda", 0o660))
	must(t, unix.Mkfifo(etc+"/fifo", 0o600))
	l, err := net.Listen("unix", etc+"/sock")
	must(t, err)
	defer l.Close()
	err = unix.Setxattr(etc+"/sub/deep.conf", "user.herd", []byte("v\x00binary"), 0)
	xattrs := err == nil
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatalf("setxattr: %v", err)
	}

	var warned []string
	f := plan.File{
		Dirs:    []string{etc, home + "/"},
		Exclude: []string{"*.log", "sub/cache/", etc + "/shadow"},
	}
	if err := Check(f); err != nil {
		t.Fatalf("Check: %v", err)
	}
	s, err := OpenWith(f, Options{Warn: func(m string) { warned = append(warned, m) }})
	must(t, err)
	if s.Size() != -1 || s.DataSize() != -1 {
		t.Errorf("Size, DataSize = %d, %d; want -1, -1", s.Size(), s.DataSize())
	}
	got, order := readTar(t, s)
	must(t, s.Close())

	st := func(p string) (int, int) {
		var s unix.Stat_t
		must(t, unix.Lstat(p, &s))
		return int(s.Uid), int(s.Gid)
	}
	uid, gid := st(etc + "/sub")
	want := map[string]entry{
		"etc/":                {Type: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: gid},
		"etc/hosts":           {Type: tar.TypeReg, Mode: 0o640, Uid: 1234, Gid: 5678, Content: "127.0.0.1 localhost\n"},
		"etc/hosts.hard":      {Type: tar.TypeLink, Mode: 0o640, Uid: 1234, Gid: 5678, Link: "etc/hosts"},
		"etc/hosts.link":      {Type: tar.TypeSymlink, Mode: 0o777, Uid: uid, Gid: gid, Link: "hosts"},
		"etc/suid":            {Type: tar.TypeReg, Mode: 0o4755, Uid: uid, Gid: gid, Content: "#!/bin/sh\n"},
		"etc/null":            {Type: tar.TypeChar, Mode: 0o666, Uid: uid, Gid: gid, Major: 1, Minor: 3},
		"etc/sda":             {Type: tar.TypeBlock, Mode: 0o660, Uid: uid, Gid: gid, Major: 8, Minor: 0},
		"etc/fifo":            {Type: tar.TypeFifo, Mode: 0o600, Uid: uid, Gid: gid},
		"etc/sub/":            {Type: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: gid},
		"etc/sub/deep.conf":   {Type: tar.TypeReg, Mode: 0o644, Uid: uid, Gid: gid, Content: "deep"},
		"home/":               {Type: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: gid},
		"home/alice/":         {Type: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: gid},
		"home/alice/.profile": {Type: tar.TypeReg, Mode: 0o644, Uid: uid, Gid: gid, Content: "profile"},
		"home/deep.hard":      {Type: tar.TypeLink, Mode: 0o644, Uid: uid, Gid: gid, Link: "etc/sub/deep.conf"},
	}
	if xattrs {
		e := want["etc/sub/deep.conf"]
		e.Xattrs = map[string]string{"user.herd": "v\x00binary"}
		want["etc/sub/deep.conf"] = e
	}
	for dir := "etc/" + long; dir != "etc"; dir = filepath.Dir(dir) {
		if dir == "etc/"+long {
			want[dir] = entry{Type: tar.TypeReg, Mode: 0o644, Uid: uid, Gid: gid, Content: "long"}
		} else {
			want[dir+"/"] = entry{Type: tar.TypeDir, Mode: 0o755, Uid: uid, Gid: gid}
		}
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("entry %s missing", name)
			continue
		}
		if !equalEntry(g, w) {
			t.Errorf("entry %s = %+v, want %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s", name)
		}
	}
	if order[0] != "etc/" || !slices.Contains(order, "home/") || slices.Index(order, "home/") < slices.Index(order, "etc/sub/deep.conf") {
		t.Errorf("entries are not in tree order: %v", order)
	}
	if !slices.ContainsFunc(warned, func(m string) bool { return strings.Contains(m, etc+"/sock is a socket") }) {
		t.Errorf("no warning about the socket: %q", warned)
	}
	if ws, n := s.Warnings(); n != len(warned) || len(ws) != n {
		t.Errorf("Warnings() = %q, %d; the callback saw %q", ws, n, warned)
	}

	// The modification time travels in whole seconds.
	tr := tar.NewReader(mustOpen(t, f))
	for {
		h, err := tr.Next()
		must(t, err)
		if h.Name == "etc/hosts" {
			if !h.ModTime.Equal(mtime) {
				t.Errorf("etc/hosts mtime %v, want %v", h.ModTime, mtime)
			}
			break
		}
	}
}

func equalEntry(a, b entry) bool {
	if len(a.Xattrs) != len(b.Xattrs) {
		return false
	}
	for k, v := range a.Xattrs {
		if b.Xattrs[k] != v {
			return false
		}
	}
	return a.Type == b.Type && a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid &&
		a.Link == b.Link && a.Content == b.Content && a.Major == b.Major && a.Minor == b.Minor
}

func mustOpen(t *testing.T, f plan.File) *Source {
	t.Helper()
	s, err := Open(f)
	must(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDirsRootAndSymlinkedDir(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root+"/real/a", []byte("a"))
	must(t, os.Symlink("real", root+"/link"))
	s := mustOpen(t, plan.File{Dirs: []string{root + "/link"}})
	got, _ := readTar(t, s)
	if got["link/a"].Content != "a" || got["link/"].Type != tar.TypeDir {
		t.Errorf("a -D symlink to a directory is copied as that directory named after the link: %v", got)
	}
}

func TestDirsOneFileSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	root := t.TempDir()
	writeFile(t, root+"/tree/a", []byte("a"))
	mnt := root + "/tree/mnt"
	must(t, os.Mkdir(mnt, 0o755))
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
		}
	})
	writeFile(t, mnt+"/other-fs", []byte("not copied"))
	s := mustOpen(t, plan.File{Dirs: []string{root + "/tree"}})
	got, _ := readTar(t, s)
	if _, ok := got["tree/mnt/"]; !ok {
		t.Error("the mount point itself is missing")
	}
	if _, ok := got["tree/mnt/other-fs"]; ok {
		t.Error("the walk went into another file system")
	}
	if got["tree/a"].Content != "a" {
		t.Error("tree/a missing")
	}
	ws, _ := s.Warnings()
	if len(ws) != 1 || !strings.Contains(ws[0], mnt+" is a mount point") {
		t.Errorf("warnings %q, want one about %s", ws, mnt)
	}
}

func TestDirsCompressed(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root+"/d/f", bytes.Repeat([]byte("herd "), 100000))
	s := mustOpen(t, plan.File{Dirs: []string{root + "/d"}, CompressedOut: true})
	b, err := io.ReadAll(s)
	must(t, err)
	got, _ := readTar(t, bytes.NewReader(gunzip(t, b)))
	if got["d/f"].Content != strings.Repeat("herd ", 100000) {
		t.Error("d/f differs after gzip and tar")
	}
	if len(b) > 100000 {
		t.Errorf("compressed stream is %d bytes: not compressed", len(b))
	}
}

func TestDirsUnreadable(t *testing.T) {
	root := t.TempDir()
	traversable(t, root)
	writeFile(t, root+"/d/closed/x", []byte("x"))
	writeFile(t, root+"/d/secret", []byte("x"))
	for _, tt := range []struct{ name, path string }{
		{"directory", root + "/d/closed"},
		{"file", root + "/d/secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			must(t, os.Chmod(tt.path, 0))
			defer os.Chmod(tt.path, 0o755)
			// The tree writer runs here, on the thread asUser changes.
			w := &treeWriter{tw: tar.NewWriter(io.Discard), buf: make([]byte, 4096), links: map[fileID]string{}, warn: t.Logf}
			var err error
			asUser(t, func() { err = w.writeAll([]string{root + "/d"}, []string{"d"}) })
			want := "input " + tt.path + ": permission denied"
			if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, os.ErrPermission) {
				t.Errorf("tree with an unreadable %s: %v, want %q...", tt.name, err, want)
			}
		})
	}
}
