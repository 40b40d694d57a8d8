package golden

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/herdproject/herd/internal/logging"
	"github.com/klauspost/compress/zstd"
)

// tarEntry is one entry of a root tarball read back; body only for
// small files, sum for all regular files.
type tarEntry struct {
	hdr  *tar.Header
	body string
	sum  [32]byte
}

// readRootTar reads a tar.zst into its entries (by name, "/"-rooted:
// "./etc/" is "/etc") and their order.
func readRootTar(t *testing.T, file string) (map[string]tarEntry, []string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	entries := map[string]tarEntry{}
	var order []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d entries: %v", len(order), err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := tarEntry{hdr: hdr, sum: sha256.Sum256(b)}
		if len(b) < 64<<10 {
			e.body = string(b)
		}
		name := path.Clean("/" + hdr.Name)
		if _, dup := entries[name]; dup {
			t.Errorf("%s twice", name)
		}
		entries[name] = e
		order = append(order, name)
	}
	return entries, order
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// pathLess orders paths as a depth-first walk in byte order does: by
// their elements.
func pathLess(a, b string) bool {
	ea, eb := strings.Split(strings.Trim(a, "/"), "/"), strings.Split(strings.Trim(b, "/"), "/")
	if a == "/" {
		return b != "/"
	}
	for i := 0; i < len(ea) && i < len(eb); i++ {
		if ea[i] != eb[i] {
			return ea[i] < eb[i]
		}
	}
	return len(ea) < len(eb)
}

// TestBuildRootTar builds an image and a root tarball in one run and
// reads the tarball back: the golden tree, with the image's kernel and
// initrd in /boot, a fstab by label, busybox as /bin/sh, every entry
// root's and in walk order; as root, /bin/sh runs in a chroot of it.
func TestBuildRootTar(t *testing.T) {
	dir := t.TempDir()
	before := time.Now().Truncate(time.Second)
	res := buildTestImage(t, Config{Output: filepath.Join(dir, "golden.img"), RootTar: filepath.Join(dir, "root.tar.zst")})
	if res.RootTar != filepath.Join(dir, "root.tar.zst") || res.Output == "" {
		t.Fatalf("result: output %q, root tar %q", res.Output, res.RootTar)
	}
	st, err := os.Stat(res.RootTar)
	if err != nil || st.Size() != res.RootTarSize || st.Mode().Perm() != 0o644 {
		t.Fatalf("root tarball: %v, %d bytes (result says %d), mode %v", err, st.Size(), res.RootTarSize, st.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
	entries, order := readRootTar(t, res.RootTar)
	if len(order) != res.RootTarEntries {
		t.Errorf("%d entries, result says %d", len(order), res.RootTarEntries)
	}
	t.Logf("root tarball: %d entries, %.1f MiB, shell %q, libraries %q", len(order), float64(res.RootTarSize)/(1<<20), res.Shell, res.ShellLibraries)

	t.Run("order and owners", func(t *testing.T) {
		if len(order) == 0 || order[0] != "/" || entries["/"].hdr.Name != "./" {
			t.Fatalf("first entry %q, want ./", order[0])
		}
		mtime := entries["/"].hdr.ModTime
		if mtime.Before(before) || mtime.After(time.Now()) || mtime.Nanosecond() != 0 {
			t.Errorf("mtime %v: want the build's start, to the second", mtime)
		}
		seen := map[string]bool{}
		for i, name := range order {
			h := entries[name].hdr
			if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
				t.Errorf("%s: owner %d:%d (%s:%s), want root's", name, h.Uid, h.Gid, h.Uname, h.Gname)
			}
			if !h.ModTime.Equal(mtime) {
				t.Errorf("%s: mtime %v, want %v like every entry", name, h.ModTime, mtime)
			}
			if !strings.HasPrefix(h.Name, "./") || (h.Typeflag == tar.TypeDir) != strings.HasSuffix(h.Name, "/") {
				t.Errorf("%s: tar name %q", name, h.Name)
			}
			if name != "/" && !seen[path.Dir(name)] {
				t.Errorf("%s comes before its directory", name)
			}
			if i > 0 && !pathLess(order[i-1], name) {
				t.Errorf("%s after %s: not in walk order", name, order[i-1])
			}
			seen[name] = true
		}
	})

	t.Run("files", func(t *testing.T) {
		kv := res.KernelVersion
		dump := t.TempDir()
		initrd := filepath.Join(dump, "initrd.img")
		output(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", res.Output, res.Table.Partitions[0].Offset()), "::initrd.img", initrd)
		for _, w := range []struct {
			name string
			mode int64
			same string // the host file it is a copy of
		}{
			{goldeninit.RootInit, 0o755, res.HerdBinary},
			{"/boot/vmlinuz-" + kv, 0o644, res.Kernel},
			{"/boot/initrd.img-" + kv, 0o644, initrd},
			{"/etc/hostname", 0o644, ""},
			{"/etc/machine-id", 0o444, ""},
			{"/etc/ssh/ssh_host_ed25519_key", 0o600, ""},
			{"/tmp", 0o1777, ""},
			{"/root", 0o700, ""},
			{"/etc", 0o755, ""},
		} {
			e, ok := entries[w.name]
			if !ok {
				t.Errorf("no %s", w.name)
				continue
			}
			if e.hdr.Mode != w.mode {
				t.Errorf("%s: mode %o, want %o", w.name, e.hdr.Mode, w.mode)
			}
			if w.same != "" && (e.hdr.Typeflag != tar.TypeReg || e.sum != fileSum(t, w.same)) {
				t.Errorf("%s is not a copy of %s", w.name, w.same)
			}
		}
		if got := entries["/etc/hostname"].body; got != "golden\n" {
			t.Errorf("/etc/hostname %q", got)
		}
		fstab := entries["/etc/fstab"].body
		if !strings.Contains(fstab, "\nLABEL=root\t/\text4\terrors=remount-ro\t0\t1\n") || strings.Contains(fstab, "UUID=") || strings.Contains(fstab, "/boot") {
			t.Errorf("/etc/fstab: want the root by label, no UUID, no /boot:\n%s", fstab)
		}
		for name, e := range entries {
			if strings.Contains(e.body, res.RootUUID) || strings.Contains(e.body, res.BootID) {
				t.Errorf("%s names the image's UUIDs:\n%s", name, e.body)
			}
		}
		if e := entries[NetworkdMark]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != goldeninit.RootInit {
			t.Errorf("%s: want a symlink to %s", NetworkdMark, goldeninit.RootInit)
		}
	})

	t.Run("shell", func(t *testing.T) {
		if _, err := os.Stat(HostBusybox); err != nil {
			if res.Shell != "" || entries["/bin/sh"].hdr != nil {
				t.Errorf("no %s on this host, but shell %q", HostBusybox, res.Shell)
			}
			t.Skipf("no %s on this host (apt-get install busybox)", HostBusybox)
		}
		if res.Shell != HostBusybox {
			t.Errorf("shell %q, want %s", res.Shell, HostBusybox)
		}
		if e := entries["/bin/busybox"]; e.hdr == nil || e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode != 0o755 || e.sum != fileSum(t, HostBusybox) {
			t.Errorf("/bin/busybox: want a copy of %s, mode 0755", HostBusybox)
		}
		for _, a := range ShellApplets {
			if e := entries["/bin/"+a]; e.hdr == nil || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != "busybox" {
				t.Errorf("/bin/%s: want a symlink to busybox", a)
			}
		}
		// What busybox needs, read independently: the interpreter and
		// libc, reachable in the tree (through its symlinks).
		f, err := elf.Open(HostBusybox)
		if err != nil {
			t.Fatal(err)
		}
		needed, _ := f.ImportedLibraries()
		var interp string
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				b, _ := io.ReadAll(p.Open())
				interp = strings.TrimRight(string(b), "\x00")
			}
		}
		f.Close()
		want := []string{interp}
		for _, n := range needed {
			want = append(want, "/lib/x86_64-linux-gnu/"+n)
		}
		for _, p := range want {
			if !resolvesToFile(entries, p) {
				t.Errorf("%s is not in the tarball (or not a file through its links); libraries %q", p, res.ShellLibraries)
			}
		}
		for _, l := range res.ShellLibraries {
			if entries[l].hdr == nil {
				t.Errorf("library %s is not in the tarball", l)
			}
		}
	})

	// Unpacked by GNU tar (as any node or operator would), the tree
	// runs /bin/sh in a chroot.
	t.Run("chroot", func(t *testing.T) {
		if _, err := exec.LookPath("tar"); err != nil {
			t.Skip("no tar")
		}
		root := filepath.Join(t.TempDir(), "root")
		os.Mkdir(root, 0o755)
		output(t, "tar", "--zstd", "-xpf", res.RootTar, "-C", root)
		if b, err := os.ReadFile(filepath.Join(root, "etc", "hostname")); err != nil || string(b) != "golden\n" {
			t.Errorf("unpacked /etc/hostname: %q, %v", b, err)
		}
		if st, err := os.Stat(filepath.Join(root, "tmp")); err != nil || st.Mode()&fs.ModeSticky == 0 {
			t.Errorf("unpacked /tmp: %v, %v", st.Mode(), err)
		}
		if os.Geteuid() != 0 {
			t.Skip("chroot needs root")
		}
		if res.Shell == "" {
			t.Skipf("no shell in the tarball (no %s on this host)", HostBusybox)
		}
		cmd := exec.Command("chroot", root, "/bin/sh", "-c", "echo ok; hostname")
		cmd.Env = []string{"PATH=/bin:/sbin", "LC_ALL=C"}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err != nil || len(lines) != 2 || lines[0] != "ok" || lines[1] == "" {
			t.Errorf("chroot %s /bin/sh -c 'echo ok; hostname': %v\n%s", root, err, out)
		}
	})
}

// resolvesToFile follows symlinks among the entries from name to a
// regular file.
func resolvesToFile(entries map[string]tarEntry, name string) bool {
	for range 40 {
		e, ok := entries[name]
		if !ok {
			return false
		}
		switch e.hdr.Typeflag {
		case tar.TypeReg:
			return true
		case tar.TypeSymlink:
			if path.IsAbs(e.hdr.Linkname) {
				name = path.Clean(e.hdr.Linkname)
			} else {
				name = path.Join(path.Dir(name), e.hdr.Linkname)
			}
		default:
			return false
		}
	}
	return false
}

// Without -o, only the tarball is written; an existing tarball is kept
// without Force.
func TestBuildRootTarOnly(t *testing.T) {
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "root.tar.zst")
	res := buildTestImage(t, Config{RootTar: tarFile, Hostname: "tar-only"})
	if res.Output != "" || res.Table != nil || res.RootUUID != "" || res.Size != 0 {
		t.Errorf("an image without -o: output %q, table %v, root UUID %q, size %d", res.Output, res.Table, res.RootUUID, res.Size)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Errorf("files written: %v, want only root.tar.zst", names)
	}
	entries, _ := readRootTar(t, tarFile)
	if got := entries["/etc/hostname"].body; got != "tar-only\n" {
		t.Errorf("/etc/hostname %q", got)
	}
	if e := entries["/boot/initrd.img-"+res.KernelVersion]; e.hdr == nil || e.hdr.Size != res.InitrdSize {
		t.Errorf("/boot/initrd.img-%s: want the initrd, %d bytes", res.KernelVersion, res.InitrdSize)
	}
	_, err := Build(context.Background(), Config{RootTar: tarFile, HerdBinary: res.HerdBinary})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), tarFile) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing root tarball: %v", err)
	}
	before, _ := os.ReadFile(tarFile)
	res2, err := Build(context.Background(), Config{RootTar: tarFile, Force: true, HerdBinary: res.HerdBinary})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(tarFile)
	if bytes.Equal(before, after) || res2.RootTarSize != int64(len(after)) {
		t.Errorf("--force did not replace the tarball (host name tar-only → golden)")
	}
}

// writeTar on a small tree: modes, symlinks, order, owners, one mtime.
func TestWriteTar(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"b/c", "a", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
	os.WriteFile(filepath.Join(dir, "b", "key"), []byte("secret"), 0o600)
	os.Chmod(filepath.Join(dir, "b", "key"), 0o600)
	os.WriteFile(filepath.Join(dir, "b", "c", "z"), []byte("z"), 0o644)
	os.Symlink("../b/key", filepath.Join(dir, "a", "link"))
	mtime := time.Date(2024, 5, 1, 12, 0, 0, 500, time.UTC)
	out := filepath.Join(t.TempDir(), "t.tar.zst")
	name, st, err := writeRootTarFile(out, dir, mtime)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(name, out); err != nil {
		t.Fatal(err)
	}
	entries, order := readRootTar(t, out)
	want := []string{"/", "/a", "/a/link", "/b", "/b/c", "/b/c/z", "/b/key", "/tmp"}
	if strings.Join(order, " ") != strings.Join(want, " ") || st.Entries != len(want) {
		t.Errorf("entries %q (%d counted), want %q", order, st.Entries, want)
	}
	if fi, _ := os.Stat(out); fi == nil || fi.Size() != st.Size {
		t.Errorf("size %d counted", st.Size)
	}
	for _, w := range []struct {
		name string
		typ  byte
		mode int64
		link string
	}{
		{"/tmp", tar.TypeDir, 0o1777, ""},
		{"/b/key", tar.TypeReg, 0o600, ""},
		{"/a/link", tar.TypeSymlink, 0o777, "../b/key"},
	} {
		h := entries[w.name].hdr
		if h == nil || h.Typeflag != w.typ || h.Mode != w.mode || h.Linkname != w.link || h.Uid != 0 || h.Uname != "root" || !h.ModTime.Equal(mtime.Truncate(time.Second)) {
			t.Errorf("%s: %+v", w.name, h)
		}
	}
	if entries["/b/key"].body != "secret" {
		t.Errorf("/b/key: %q", entries["/b/key"].body)
	}
}

func TestSharedLibraries(t *testing.T) {
	exe := HostBusybox
	if _, err := os.Stat(exe); err != nil {
		exe = "/bin/sh"
	}
	libs, err := SharedLibraries(exe, LibraryDirs)
	if err != nil {
		t.Fatal(err)
	}
	var hasLibc, hasInterp bool
	for _, l := range libs {
		hasLibc = hasLibc || filepath.Base(l) == "libc.so.6"
		hasInterp = hasInterp || strings.HasPrefix(filepath.Base(l), "ld-linux")
	}
	if !hasLibc || !hasInterp {
		t.Errorf("%s needs %q: want libc.so.6 and the interpreter", exe, libs)
	}
	if _, err := SharedLibraries(exe, []string{t.TempDir()}); err == nil || !strings.Contains(err.Error(), "which is in none of") {
		t.Errorf("libraries in no directory: %v", err)
	}
	if libs, err := SharedLibraries(staticHerd(t), LibraryDirs); err != nil || len(libs) != 0 {
		t.Errorf("static herd: %q, %v", libs, err)
	}
}

// A host without busybox: no shell, a warning naming %post.
func TestAddShellMissing(t *testing.T) {
	var warned strings.Builder
	ok, libs, err := addShell(t.TempDir(), filepath.Join(t.TempDir(), "busybox"), logging.New(&warned, "", slog.LevelWarn, logging.Plain))
	if ok || libs != nil || err != nil || !strings.Contains(warned.String(), "warning: no ") || !strings.Contains(warned.String(), "%post scripts will not run") {
		t.Errorf("addShell without busybox: %v, %q, %v; warning %q", ok, libs, err, warned.String())
	}
}
