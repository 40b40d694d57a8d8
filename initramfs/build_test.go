package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/initramfs/kmod"
	"github.com/herdproject/herd/internal/logging"
	"github.com/klauspost/pgzip"
	"github.com/u-root/mkuimage/ldd"
	"github.com/u-root/u-root/pkg/cpio"
)

// The real build (the installed Debian kernel, its modules, this tree's
// herd) is made once per test binary and shared by the tests that look at
// it, here and in the QEMU smoke test.
var shared struct {
	once    sync.Once
	dir     string // holds initramfs.cpio.gz and herd
	kernel  string
	res     Result
	elapsed time.Duration
	err     error
	skip    string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	if standalone.dir != "" {
		os.RemoveAll(standalone.dir)
	}
	os.Exit(code)
}

// installedKernel returns the newest /boot/vmlinuz-* whose modules are
// installed, or why there is none. When /boot has none, it installs
// Debian's linux-image-amd64 (as root, with apt-get).
func installedKernel() (string, string) {
	find := func() string {
		images, _ := filepath.Glob("/boot/vmlinuz-*")
		sort.Sort(sort.Reverse(sort.StringSlice(images)))
		for _, p := range images {
			v, err := kernel.Version(p)
			if err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
				return p
			}
		}
		return ""
	}
	if k := find(); k != "" {
		return k, ""
	}
	if os.Geteuid() != 0 {
		return "", "no /boot/vmlinuz-* with its /lib/modules, and not root to apt-get install linux-image-amd64"
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", "no /boot/vmlinuz-* with its /lib/modules, and no apt-get to install linux-image-amd64"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var out bytes.Buffer
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "linux-image-amd64", "kmod"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Sprintf("no kernel in /boot, and apt-get %s failed: %v: %s", strings.Join(args, " "), err, tail(out.String(), 5))
		}
	}
	if k := find(); k != "" {
		return k, ""
	}
	return "", "linux-image-amd64 installed, yet no /boot/vmlinuz-* with its /lib/modules"
}

// build returns the shared build, making it on first use.
func build(t *testing.T) (kernelPath string, initramfsPath string, herd string, res Result) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the initramfs build (compiles u-root and herd, about 30 s)")
	}
	shared.once.Do(func() {
		k, why := installedKernel()
		if k == "" {
			shared.skip = why
			return
		}
		shared.kernel = k
		shared.dir, shared.err = os.MkdirTemp("", "herd-initramfs-test-")
		if shared.err != nil {
			return
		}
		src, err := ModuleRoot("")
		if err != nil {
			shared.err = err
			return
		}
		herd := filepath.Join(shared.dir, "herd")
		if prebuilt := os.Getenv("HERD_TEST_HERD"); prebuilt != "" {
			// A herd binary to embed instead of this tree's (e.g. to
			// try an older or a work-in-progress agent).
			b, err := os.ReadFile(prebuilt)
			if err != nil {
				shared.err = err
				return
			}
			shared.err = os.WriteFile(herd, b, 0o755)
		} else {
			shared.err = buildHerd(context.Background(), src, herd)
		}
		if shared.err != nil {
			return
		}
		f, err := os.Create(filepath.Join(shared.dir, "initramfs.cpio.gz"))
		if err != nil {
			shared.err = err
			return
		}
		start := time.Now()
		shared.res, shared.err = Build(context.Background(), Config{
			Kernel: k, Out: f, HerdBinary: herd,
			Log: logging.New(os.Stderr, "build", slog.LevelInfo, logging.Plain),
		})
		shared.elapsed = time.Since(start)
		if err := f.Close(); shared.err == nil {
			shared.err = err
		}
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("build: %v", shared.err)
	}
	return shared.kernel, filepath.Join(shared.dir, "initramfs.cpio.gz"), filepath.Join(shared.dir, "herd"), shared.res
}

// archive reads a gzip'd newc archive with u-root's cpio reader.
func archive(t *testing.T, p string) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]cpio.Record{}
	for _, r := range recs {
		if _, dup := m[r.Name]; dup {
			t.Errorf("%s is in the archive twice", r.Name)
		}
		m[r.Name] = r
	}
	return m
}

func content(t *testing.T, r cpio.Record) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatalf("%s: %v", r.Name, err)
	}
	return b
}

func kind(r cpio.Record) string {
	switch r.Mode & cpio.S_IFMT {
	case cpio.S_IFREG:
		return "file"
	case cpio.S_IFLNK:
		return "link"
	case cpio.S_IFDIR:
		return "dir"
	case cpio.S_IFCHR:
		return "chardev"
	}
	return fmt.Sprintf("mode %o", r.Mode)
}

// TestBuildInstalledKernel builds the initramfs for the installed Debian
// kernel and lists it.
func TestBuildInstalledKernel(t *testing.T) {
	k, p, _, res := build(t)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s (release %s): initramfs %.1f MiB gzip (%.1f MiB cpio), %d entries, %d modules, built in %v",
		k, res.KernelVersion, float64(st.Size())/(1<<20), float64(res.RawSize)/(1<<20), res.Files, len(res.Modules), shared.elapsed.Round(time.Millisecond))
	if res.Size != st.Size() {
		t.Errorf("Result.Size = %d, file has %d bytes", res.Size, st.Size())
	}
	if st.Size() > 40<<20 {
		t.Errorf("initramfs is %d bytes, over the 40 MiB target", st.Size())
	}
	a := archive(t, p)
	if res.Files != len(a) {
		t.Errorf("Result.Files = %d, archive has %d entries", res.Files, len(a))
	}

	t.Run("release", func(t *testing.T) {
		// The release read from the bzImage names the modules directory
		// (and, on Debian, the image's file name).
		if want := strings.TrimPrefix(filepath.Base(k), "vmlinuz-"); res.KernelVersion != want {
			t.Errorf("release from the bzImage %q, file name says %q", res.KernelVersion, want)
		}
		if _, err := os.Stat(filepath.Join("/lib/modules", res.KernelVersion)); err != nil {
			t.Errorf("release %q names no modules directory: %v", res.KernelVersion, err)
		}
		if _, ok := a[path.Join("lib/modules", res.KernelVersion, "modules.dep")]; !ok {
			t.Errorf("no lib/modules/%s/modules.dep in the archive", res.KernelVersion)
		}
	})

	t.Run("init and agent", func(t *testing.T) {
		want := map[string]string{ // name → kind[:link target]
			"init":            "link:bbin/init",
			"bbin/bb":         "file",
			"bin/sh":          "link:../bbin/gosh",
			"bin/defaultsh":   "link:../bbin/gosh",
			"bin/herd":        "file",
			"bin/uinit":       "link:herd",
			"etc/uinit.flags": "file",
			"dev/console":     "chardev",
			"tmp":             "dir",
		}
		for _, c := range Commands {
			want["bbin/"+path.Base(c)] = "link:bb"
		}
		for name, w := range want {
			r, ok := a[name]
			if !ok {
				t.Errorf("%s: missing", name)
				continue
			}
			got := kind(r)
			if got == "link" {
				got += ":" + string(content(t, r))
			}
			if got != w {
				t.Errorf("%s: %s, want %s", name, got, w)
			}
		}
		if flags := string(content(t, a["etc/uinit.flags"])); !strings.Contains(flags, "agent") {
			t.Errorf("etc/uinit.flags = %q: the uinit would not run `herd agent`", flags)
		}
		herd := a["bin/herd"]
		if herd.Mode&0o111 == 0 {
			t.Errorf("bin/herd mode %o is not executable", herd.Mode)
		}
		ef, err := elf.NewFile(io.NewSectionReader(herd.ReaderAt, 0, int64(herd.FileSize)))
		if err != nil {
			t.Fatalf("bin/herd: %v", err)
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("bin/herd is dynamically linked: it must be static (CGO_ENABLED=0)")
			}
		}
		// The embedded herd runs here too.
		dir := t.TempDir()
		bin := filepath.Join(dir, "herd")
		if err := os.WriteFile(bin, content(t, herd), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "herd ") {
			t.Errorf("bin/herd version: %v: %s", err, out)
		}
	})

	t.Run("modules", func(t *testing.T) {
		mdir := path.Join("lib/modules", res.KernelVersion)
		byName := map[string]string{}
		for name, r := range a {
			if strings.HasPrefix(name, mdir+"/kernel/") && kind(r) == "file" {
				byName[kmod.Name(name)] = name
			}
		}
		for _, m := range []string{"virtio_net", "virtio_pci", "virtio_blk", "ext4", "crc32c_generic", "vfat", "nls_cp437", "nls_ascii", "jbd2", "mbcache"} {
			if byName[m] == "" {
				t.Errorf("module %s missing", m)
			}
		}
		for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.dep.bin", "modules.alias.bin"} {
			if _, ok := a[path.Join(mdir, f)]; !ok {
				t.Errorf("%s/%s missing", mdir, f)
			}
		}
		// depmod's modules.dep describes exactly the modules copied, and
		// every dependency it names is in.
		dir := t.TempDir()
		for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep"} {
			if err := os.WriteFile(filepath.Join(dir, f), content(t, a[path.Join(mdir, f)]), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		db, err := kmod.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		sel := db.Select([]string{"virtio_net", "ext4"}, ExtraSoftdeps)
		for _, m := range sel.Modules {
			if byName[m] == "" || db.Path(m) != strings.TrimPrefix(byName[m], mdir+"/") {
				t.Errorf("modules.dep names %s at %q, archive has %q", m, db.Path(m), byName[m])
			}
		}
		if len(sel.Missing) > 0 {
			t.Errorf("the archive's modules.dep lacks %v", sel.Missing)
		}
		for m := range byName {
			if !db.Has(m) {
				t.Errorf("%s is in the archive but not in its modules.dep", m)
			}
		}
		if len(byName) != len(res.Modules) {
			t.Errorf("archive holds %d modules, Result lists %d", len(byName), len(res.Modules))
		}
		alias := string(content(t, a[path.Join(mdir, "modules.alias")]))
		for _, w := range []string{"alias virtio:d00000001v* virtio_net", "alias crypto-crc32c crc32c_generic"} {
			if !strings.Contains(alias, w+"\n") {
				t.Errorf("modules.alias lacks %q", w)
			}
		}
		t.Logf("%d modules; %d asked for that this kernel lacks: %v", len(byName), len(res.MissingModules), res.MissingModules)
	})

	t.Run("tools", func(t *testing.T) {
		for name, w := range map[string]string{
			"usr/sbin/mke2fs":            "file",
			"usr/sbin/mkfs.ext4":         "link:mke2fs",
			"usr/sbin/mkswap":            "file",
			"usr/sbin/sfdisk":            "file",
			"usr/sbin/blkid":             "file",
			"usr/sbin/mkfs.vfat":         "link:mkfs.fat",
			"usr/sbin/mkfs.fat":          "file",
			"usr/bin/extlinux":           "file",
			MBRBin[1:]:                   "file",
			"lib64/ld-linux-x86-64.so.2": "link:/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		} {
			r, ok := a[name]
			if !ok {
				t.Errorf("%s: missing", name)
				continue
			}
			got := kind(r)
			if got == "link" {
				got += ":" + string(content(t, r))
			}
			if got != w {
				t.Errorf("%s: %s, want %s", name, got, w)
			}
		}
		if r, ok := a[MBRBin[1:]]; ok && r.FileSize != 440 {
			t.Errorf("mbr.bin has %d bytes, want 440", r.FileSize)
		}
		// Every shared library the host's loader resolves for the tools
		// is in, at the same path.
		libs, err := ldd.FList("/usr/sbin/mke2fs", "/usr/sbin/sfdisk", "/usr/sbin/blkid", "/usr/bin/extlinux", "/usr/sbin/mkswap", "/usr/sbin/mkfs.fat")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range libs {
			if _, ok := a[strings.TrimPrefix(l, "/")]; !ok {
				t.Errorf("shared library %s missing", l)
			}
		}
		t.Logf("%d shared libraries: %v", len(res.Libraries), res.Libraries)
	})

	t.Run("tools run from the archive alone", func(t *testing.T) {
		// Unpack the archive and run the tools chrooted into it: only
		// its own libraries are there to load.
		if os.Geteuid() != 0 {
			t.Skip("chroot needs root")
		}
		root := t.TempDir()
		for _, r := range a {
			if kind(r) == "chardev" {
				continue
			}
			if err := cpio.CreateFileInRoot(r, root, false); err != nil {
				t.Fatalf("unpack %s: %v", r.Name, err)
			}
		}
		run := func(args ...string) string {
			t.Helper()
			cmd := exec.Command("chroot", append([]string{root}, args...)...)
			cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		run("/usr/sbin/mkfs.ext4", "-F", "-q", "/tmp/fs.img", "8M")
		if out := run("/usr/sbin/blkid", "-o", "value", "-s", "TYPE", "/tmp/fs.img"); strings.TrimSpace(out) != "ext4" {
			t.Errorf("blkid says %q, want ext4", out)
		}
		run("/usr/sbin/mkswap", "--version")
		run("/usr/sbin/sfdisk", "--version")
		run("/usr/bin/extlinux", "--version")
		run("/usr/sbin/mkfs.vfat", "--help")
		run("/bbin/ls", "/lib/modules")
	})
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
