package source

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/herdproject/herd/ring/plan"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, s *Source) []byte {
	t.Helper()
	b, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("read %s: %v", s.Name(), err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close %s: %v", s.Name(), err)
	}
	return b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pattern is n bytes that are not all alike.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	content := pattern(300000, 1)
	writeFile(t, img, content)
	var parts []byte
	for i, n := range []int{1000, 0, 65536, 7} {
		p := pattern(n, byte(i))
		writeFile(t, fmt.Sprintf("%s/split_%d", dir, i), p)
		parts = append(parts, p...)
	}
	writeFile(t, dir+"/split_5", []byte("after a gap: not read"))
	writeFile(t, dir+"/empty", nil)

	tests := []struct {
		name     string
		file     plan.File
		want     []byte // the stream, after gunzip when gzipped
		gzipped  bool
		size     int64
		dataSize int64
		shown    string
	}{
		{name: "regular file", file: plan.File{Input: img}, want: content, size: 300000, dataSize: 300000, shown: img},
		{name: "empty file", file: plan.File{Input: dir + "/empty"}, want: nil, size: 0, dataSize: 0, shown: dir + "/empty"},
		{name: "split input", file: plan.File{Input: dir + "/split", SplitIn: true}, want: parts, size: int64(len(parts)), dataSize: int64(len(parts)), shown: dir + "/split_{0..3}"},
		{name: "compressed out", file: plan.File{Input: img, CompressedOut: true}, want: content, gzipped: true, size: -1, dataSize: -1, shown: img + " (gzip on the fly)"},
		{name: "compressed split", file: plan.File{Input: dir + "/split", SplitIn: true, CompressedOut: true}, want: parts, gzipped: true, size: -1, dataSize: -1},
		{name: "already compressed is sent as is", file: plan.File{Input: img, CompressedIn: true, CompressedOut: true}, want: content, size: 300000, dataSize: 300000},
		{name: "compressed in is sent as is", file: plan.File{Input: img, CompressedIn: true}, want: content, size: 300000, dataSize: 300000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.file); err != nil {
				t.Fatalf("Check: %v", err)
			}
			s, err := Open(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if s.Size() != tt.size || s.DataSize() != tt.dataSize {
				t.Errorf("Size, DataSize = %d, %d; want %d, %d", s.Size(), s.DataSize(), tt.size, tt.dataSize)
			}
			if tt.shown != "" && s.Name() != tt.shown {
				t.Errorf("Name = %q, want %q", s.Name(), tt.shown)
			}
			got := readAll(t, s)
			if tt.gzipped {
				got = gunzip(t, got)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("stream has %d bytes, want %d (or they differ)", len(got), len(tt.want))
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestSparseFileSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 10 << 20, size - 4096} {
		if _, err := f.WriteAt(pattern(4096, 3), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	s, err := Open(plan.File{Input: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != size {
		t.Errorf("Size = %d, want %d", s.Size(), size)
	}
	// Three 4 KiB extents; a file system may allocate a little around them.
	if d := s.DataSize(); d < 3*4096 || d > 1<<20 {
		t.Errorf("DataSize = %d, want about %d", d, 3*4096)
	}
	// Measuring left the offset at 0: the stream starts with the data.
	head := make([]byte, 4096)
	if _, err := io.ReadFull(s, head); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, pattern(4096, 3)) {
		t.Error("the stream does not start at offset 0")
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/file", []byte("x"))
	if err := os.Mkdir(dir+"/dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/a/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/b/etc", 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		file plan.File
		want string // the whole message, or its start when it ends with "..."
	}{
		{name: "missing", file: plan.File{Input: dir + "/nope"}, want: "input " + dir + "/nope: no such file or directory"},
		{name: "directory", file: plan.File{Input: dir + "/dir"}, want: "input " + dir + "/dir is a directory: use -D DIR to copy a directory tree (or give a file or device)"},
		{name: "no input", file: plan.File{}, want: "no input: give a file or device (-I) or directories (-D)"},
		{name: "split without _0", file: plan.File{Input: dir + "/file", SplitIn: true}, want: "input " + dir + "/file_0: no such file or directory..."},
		{name: "missing directory", file: plan.File{Dirs: []string{dir + "/nope"}}, want: "input " + dir + "/nope: no such file or directory"},
		{name: "-D of a file", file: plan.File{Dirs: []string{dir + "/file"}}, want: "input " + dir + "/file is not a directory: -D takes directories..."},
		{name: "-D twice the same name", file: plan.File{Dirs: []string{dir + "/a/etc", dir + "/b/etc"}}, want: "-D " + dir + "/a/etc and " + dir + "/b/etc would both unpack as \"etc\"..."},
		{name: "bad pattern", file: plan.File{Dirs: []string{dir + "/dir"}, Exclude: []string{"[x"}}, want: "exclude pattern \"[x\": syntax error in pattern: fix -X"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, call := range []struct {
				name string
				fn   func() error
			}{
				{"Check", func() error { return Check(tt.file) }},
				{"Open", func() error {
					s, err := Open(tt.file)
					if err == nil {
						s.Close()
					}
					return err
				}},
			} {
				err := call.fn()
				if !matches(err, tt.want) {
					t.Errorf("%s = %v, want %q", call.name, err, tt.want)
				}
			}
		})
	}
}

func matches(err error, want string) bool {
	if err == nil {
		return false
	}
	if prefix, ok := strings.CutSuffix(want, "..."); ok {
		return strings.HasPrefix(err.Error(), prefix)
	}
	return err.Error() == want
}

// asUser runs fn with the file-system identity of an unprivileged user, so
// that permissions apply even when the test runs as root.
func asUser(t *testing.T, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		fn()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	unix.Setfsuid(65534)
	unix.Setfsgid(65534)
	defer func() {
		unix.Setfsgid(0)
		unix.Setfsuid(0)
	}()
	fn()
}

func TestUnreadableInput(t *testing.T) {
	dir := t.TempDir()
	traversable(t, dir)
	path := dir + "/secret"
	writeFile(t, path, []byte("x"))
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	want := "input " + path + ": permission denied: make it readable for the sender (or run it as root)"
	var checkErr, openErr error
	asUser(t, func() {
		checkErr = Check(plan.File{Input: path})
		var s *Source
		s, openErr = Open(plan.File{Input: path})
		if openErr == nil {
			s.Close()
		}
	})
	for name, err := range map[string]error{"Check": checkErr, "Open": openErr} {
		if err == nil || err.Error() != want || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s = %v, want %q", name, err, want)
		}
	}
}

func TestBlockDeviceInput(t *testing.T) {
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not available")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	content := pattern(1<<20, 9)
	writeFile(t, img, content)
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	if err := Check(plan.File{Input: dev}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	s, err := Open(plan.File{Input: dev})
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 1<<20 || s.DataSize() != 1<<20 {
		t.Errorf("Size, DataSize = %d, %d; want the device size %d", s.Size(), s.DataSize(), 1<<20)
	}
	if got := readAll(t, s); !bytes.Equal(got, content) {
		t.Error("device contents differ")
	}
}

func TestCloseMidStream(t *testing.T) {
	dir := t.TempDir()
	goroutines := runtime.NumGoroutine()
	big := pattern(16<<20, 5)
	writeFile(t, dir+"/tree/big", big)
	writeFile(t, dir+"/img", big)
	for _, f := range []plan.File{
		{Dirs: []string{dir + "/tree"}},
		{Dirs: []string{dir + "/tree"}, CompressedOut: true},
		{Input: dir + "/img", CompressedOut: true},
		{Input: dir + "/img"},
	} {
		s, err := Open(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, make([]byte, 4096)); err != nil {
			t.Fatal(err)
		}
		done := make(chan error)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Close: %v", s.Name(), err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Close did not stop the stream", s.Name())
		}
		if _, err := s.Read(make([]byte, 10)); err == nil {
			t.Errorf("%s: Read after Close succeeded", s.Name())
		}
		if err := s.Close(); err != nil {
			t.Errorf("%s: second Close: %v", s.Name(), err)
		}
	}
	// Nothing is left running (pgzip's workers end shortly after Close).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after Close:\n%s", goroutines, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestDummy(t *testing.T) {
	for _, size := range []int64{0, 1, 65520, 65521, 65522, 3<<20 + 17} {
		a, err := io.ReadAll(Dummy(size))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(a)) != size {
			t.Fatalf("Dummy(%d) gave %d bytes", size, len(a))
		}
		if bytes.IndexByte(a, 0) >= 0 {
			t.Fatalf("Dummy(%d) has a zero byte", size)
		}
		// Deterministic, whatever the read sizes.
		var b bytes.Buffer
		r := Dummy(size)
		buf := make([]byte, 4093)
		for {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err == io.EOF {
				break
			}
		}
		if !bytes.Equal(a, b.Bytes()) {
			t.Fatalf("Dummy(%d) differs between two runs", size)
		}
	}
	// Chunks do not repeat with a power-of-two period.
	c := make([]byte, 2<<20)
	io.ReadFull(Dummy(-1), c)
	if bytes.Equal(c[:1<<20], c[1<<20:]) {
		t.Error("Dummy repeats every MiB")
	}
	r := Dummy(-1)
	buf := make([]byte, 1<<20)
	if n := testing.AllocsPerRun(100, func() { r.Read(buf) }); n != 0 {
		t.Errorf("Dummy Read allocates %v times per call", n)
	}
}

// traversable lets everyone into dir and its parent (t.TempDir makes both
// private), so that only the modes a test sets below dir keep users out.
func traversable(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
