package debimage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCacheKey(t *testing.T) {
	type in struct {
		suite                   string
		sources, packages, hook []string
		size, esp               int64
		password, keys          []byte
	}
	base := in{"bookworm", []string{"deb http://a bookworm main"}, []string{"systemd-sysv", "udev"}, []string{"true"},
		2 << 30, 100 << 20, nil, nil}
	key := func(i in) string {
		return cacheKey(i.suite, i.sources, i.packages, i.hook, i.size, i.esp, i.password, i.keys)
	}
	k0 := key(base)
	if len(k0) != 64 {
		t.Fatalf("key %q: want 64 hex digits", k0)
	}
	// Same inputs (fresh slices): same key.
	same := base
	same.sources = append([]string(nil), base.sources...)
	same.packages = []string{"systemd-sysv", "udev"}
	if key(same) != k0 {
		t.Error("same inputs, another key")
	}
	changes := map[string]func(*in){
		"suite":               func(i *in) { i.suite = "trixie" },
		"source line":         func(i *in) { i.sources = []string{"deb http://b bookworm main"} },
		"source added":        func(i *in) { i.sources = append(i.sources, "deb http://s bookworm-security main") },
		"source option":       func(i *in) { i.sources = []string{"deb [signed-by=/k] http://a bookworm main"} },
		"package":             func(i *in) { i.packages = append(i.packages, "vim") },
		"package order":       func(i *in) { i.packages = []string{"udev", "systemd-sysv"} },
		"hook":                func(i *in) { i.hook = []string{"false"} },
		"no hook":             func(i *in) { i.hook = nil },
		"hook split":          func(i *in) { i.hook = []string{"tr", "ue"} },
		"size":                func(i *in) { i.size = 3 << 30 },
		"esp size":            func(i *in) { i.esp = 200 << 20 },
		"password":            func(i *in) { i.password = []byte("secret\n") },
		"empty password file": func(i *in) { i.password = []byte{} },
		"keys":                func(i *in) { i.keys = []byte("ssh-ed25519 AAAA a@b\n") },
		"package into hook": func(i *in) {
			i.packages = []string{"systemd-sysv"}
			i.hook = []string{"udev", "true"}
		},
	}
	seen := map[string]string{k0: "base"}
	for name, change := range changes {
		i := base
		change(&i)
		k := key(i)
		if prev, dup := seen[k]; dup {
			t.Errorf("%s: same key as %s", name, prev)
		}
		seen[k] = name
	}
	// The password's key changes with its contents, not its file name.
	a, b := base, base
	a.password, b.password = []byte("one"), []byte("two")
	if key(a) == key(b) {
		t.Error("two passwords, one key")
	}
}

func TestLoadCached(t *testing.T) {
	dir := t.TempDir()
	if r, err := loadCached(filepath.Join(dir, "nothing")); r != nil || err != nil {
		t.Errorf("missing entry: %v, %v", r, err)
	}
	e := filepath.Join(dir, "k")
	os.Mkdir(e, 0o755)
	os.WriteFile(filepath.Join(e, ResultName), []byte(`{"key":"k","root_uuid":"u","kernel_version":"6.1"}`), 0o644)
	if _, err := loadCached(e); err == nil {
		t.Error("entry without the image: no error")
	}
	os.WriteFile(filepath.Join(e, ImageName), nil, 0o644)
	os.WriteFile(filepath.Join(e, RootTarName), nil, 0o644)
	r, err := loadCached(e)
	if err != nil {
		t.Fatal(err)
	}
	if r.RootUUID != "u" || r.KernelVersion != "6.1" || r.CachedImage != filepath.Join(e, ImageName) {
		t.Errorf("loaded %+v", r)
	}
}

// TestCloneFileSparse copies a file with holes: same bytes, and the
// copy allocates no more than the data (a reflink or a sparse copy).
func TestCloneFileSparse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	f, _ := os.Create(src)
	const size = 64 << 20
	f.Truncate(size)
	data := bytes.Repeat([]byte("herd"), 4096) // 16 KiB
	for _, off := range []int64{0, 10 << 20, size - int64(len(data))} {
		f.WriteAt(data, off)
	}
	// A region of written zeros: holes in the copy.
	f.WriteAt(make([]byte, 1<<20), 20<<20)
	f.Close()

	dst := filepath.Join(dir, "dst")
	os.WriteFile(dst, []byte("old"), 0o644)
	if err := CloneFile(src, dst); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("copy differs")
	}
	var st unix.Stat_t
	if err := unix.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if alloc := st.Blocks * 512; alloc > 4<<20 {
		t.Errorf("copy allocates %d bytes of a %d-byte file with 48 KiB of data: not sparse", alloc, size)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temporary files left: %v", ents)
	}

	// The sparse path itself, whatever the file system can reflink.
	out, _ := os.Create(filepath.Join(dir, "plain"))
	in, _ := os.Open(src)
	if err := copySparse(out, in, size); err != nil {
		t.Fatal(err)
	}
	out.Close()
	in.Close()
	c, _ := os.ReadFile(filepath.Join(dir, "plain"))
	if !bytes.Equal(a, c) {
		t.Fatal("sparse copy differs")
	}
	unix.Stat(filepath.Join(dir, "plain"), &st)
	if alloc := st.Blocks * 512; alloc > 4<<20 {
		t.Errorf("sparse copy allocates %d bytes", alloc)
	}
}
