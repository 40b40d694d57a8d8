package sink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// op is one call on a sink: data to write, or (data nil) n zero bytes.
type op struct {
	data []byte
	zero int64
}

func w(s string) op         { return op{data: []byte(s)} }
func wb(b []byte) op        { return op{data: b} }
func z(n int64) op          { return op{zero: n} }
func fill(c byte, n int) op { return op{data: bytes.Repeat([]byte{c}, n)} }

// run applies ops and returns the stream they make.
func run(t *testing.T, s Sink, ops []op) []byte {
	t.Helper()
	var want []byte
	for _, o := range ops {
		if o.data != nil {
			n, err := s.Write(o.data)
			if err != nil || n != len(o.data) {
				t.Fatalf("Write(%d bytes) = %d, %v", len(o.data), n, err)
			}
			want = append(want, o.data...)
			continue
		}
		if err := s.Zero(o.zero); err != nil {
			t.Fatalf("Zero(%d): %v", o.zero, err)
		}
		want = append(want, make([]byte, o.zero)...)
	}
	return want
}

func mustClose(t *testing.T, s Sink, want int64) {
	t.Helper()
	res, err := s.Close()
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if res.Bytes != want || res.Digest != nil {
		t.Fatalf("Close = %+v, want Bytes %d and no digest", res, want)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blocks(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

func opts() Options { return Options{Size: -1, DataSize: -1} }

func TestRegularFile(t *testing.T) {
	tests := []struct {
		name     string
		existing []byte // file content before Open; nil: no file
		ops      []op
	}{
		{name: "new file", ops: []op{w("hello"), w(" world")}},
		{name: "empty stream", ops: nil},
		{name: "empty stream truncates", existing: bytes.Repeat([]byte("x"), 5000)},
		{name: "existing longer file is truncated", existing: bytes.Repeat([]byte("x"), 100000), ops: []op{w("short")}},
		{name: "hole inside", ops: []op{w("a"), z(10000), w("b")}},
		{name: "trailing hole gives the size", ops: []op{w("abc"), z(123457)}},
		{name: "only a hole", ops: []op{z(4096)}},
		{name: "hole over an existing file reads as zeros", existing: bytes.Repeat([]byte{0xff}, 50000), ops: []op{w("a"), z(20000), w("b")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "img")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := Check(path, opts()); err != nil {
				t.Fatalf("Check: %v", err)
			}
			s, err := Open(path, opts())
			if err != nil {
				t.Fatal(err)
			}
			want := run(t, s, tt.ops)
			mustClose(t, s, int64(len(want)))
			if got := readFile(t, path); !bytes.Equal(got, want) {
				t.Fatalf("file has %d bytes, want %d (contents differ: %v)", len(got), len(want), len(got) == len(want))
			}
		})
	}
}

func TestRegularFileStaysSparse(t *testing.T) {
	const size = 200 << 20
	path := filepath.Join(t.TempDir(), "sparse")
	s, err := Open(path, Options{Size: size, DataSize: 8192})
	if err != nil {
		t.Fatal(err)
	}
	a, b := bytes.Repeat([]byte("a"), 4096), bytes.Repeat([]byte("b"), 4096)
	if _, err := s.Write(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Zero(100 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Zero(size - 100<<20 - 8192); err != nil {
		t.Fatal(err)
	}
	mustClose(t, s, size)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("size %d, want %d", fi.Size(), size)
	}
	if n := blocks(t, path); n > 1<<20 {
		t.Fatalf("sparse output takes %d bytes on disk, want well under 1 MiB", n)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		off  int64
		want []byte
	}{
		{0, a},
		{4096, make([]byte, 4096)},
		{4096 + 100<<20, b},
		{size - 4096, make([]byte, 4096)},
	} {
		got := make([]byte, len(c.want))
		if _, err := f.ReadAt(got, c.off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("bytes at %d differ", c.off)
		}
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name     string
		limit    int64
		existing map[string]string // part suffix -> content before Open
		ops      []op
		want     []string // parts _0, _1, ... ; nothing after
	}{
		{name: "empty stream makes an empty first part", limit: 4, want: []string{""}},
		{name: "shorter than a part", limit: 10, ops: []op{w("abc")}, want: []string{"abc"}},
		{name: "exact multiple makes no empty extra part", limit: 3, ops: []op{w("abcdef")}, want: []string{"abc", "def"}},
		{name: "write across boundaries", limit: 4, ops: []op{w("ab"), w("cdefghij")}, want: []string{"abcd", "efgh", "ij"}},
		{name: "holes across boundaries", limit: 4, ops: []op{w("a"), z(6), w("bc"), z(3)}, want: []string{"a\x00\x00\x00", "\x00\x00\x00b", "c\x00\x00\x00"}},
		{name: "hole ends a part", limit: 4, ops: []op{w("ab"), z(2), w("c")}, want: []string{"ab\x00\x00", "c"}},
		{
			name:     "stale parts truncated and removed",
			limit:    4,
			existing: map[string]string{"_0": "zzzzzzzzzz", "_1": "zzzz", "_2": "zz", "_3": "z", "_5": "kept: not contiguous"},
			ops:      []op{w("abcde")},
			want:     []string{"abcd", "e"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "img")
			for suffix, c := range tt.existing {
				if err := os.WriteFile(base+suffix, []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o := opts()
			o.Split = tt.limit
			if err := Check(base, o); err != nil {
				t.Fatalf("Check: %v", err)
			}
			s, err := Open(base, o)
			if err != nil {
				t.Fatal(err)
			}
			stream := run(t, s, tt.ops)
			mustClose(t, s, int64(len(stream)))
			for i, want := range tt.want {
				if got := readFile(t, fmt.Sprintf("%s_%d", base, i)); string(got) != want {
					t.Errorf("part %d = %q, want %q", i, got, want)
				}
			}
			if _, err := os.Stat(fmt.Sprintf("%s_%d", base, len(tt.want))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("part %d exists after the stream's last part (err %v)", len(tt.want), err)
			}
			if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s itself was created", base)
			}
			if _, ok := tt.existing["_5"]; ok {
				if got := readFile(t, base+"_5"); string(got) != tt.existing["_5"] {
					t.Errorf("non-contiguous part _5 changed: %q", got)
				}
			}
		})
	}
}

func TestSplitSparseParts(t *testing.T) {
	base := filepath.Join(t.TempDir(), "img")
	s, err := Open(base, Options{Size: -1, DataSize: -1, Split: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, []op{z(20 << 20), w("end"), z(1 << 20)})
	mustClose(t, s, 21<<20+3)
	sizes := []int64{8 << 20, 8 << 20, 5<<20 + 3}
	for i, want := range sizes {
		name := fmt.Sprintf("%s_%d", base, i)
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != want {
			t.Errorf("%s: size %d, want %d", name, fi.Size(), want)
		}
		if b := blocks(t, name); b > 64<<10 {
			t.Errorf("%s takes %d bytes on disk: holes were written", name, b)
		}
	}
}

func TestStdout(t *testing.T) {
	var buf bytes.Buffer
	s, err := Open("-", Options{Size: -1, DataSize: -1, Stdout: &buf})
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, s, []op{w("ab"), z(3 << 20), w("c")})
	mustClose(t, s, int64(len(want)))
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("standard output differs from the stream")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
}

func TestFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, opts()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			got <- nil
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- b
	}()
	s, err := Open(path, opts())
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, s, []op{w("x"), z(200000), w("y")})
	mustClose(t, s, int64(len(want)))
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("reader got %d bytes, want %d", len(b), len(want))
	}
}

func TestCharDevice(t *testing.T) {
	s, err := Open("/dev/null", opts())
	if err != nil {
		t.Fatal(err)
	}
	want := run(t, s, []op{w("abc"), z(5 << 20)})
	mustClose(t, s, int64(len(want)))
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "img_1"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	huge := int64(1) << 60
	tests := []struct {
		name    string
		path    string
		opts    Options
		wantErr string // "" for success
	}{
		{name: "stdout", path: "-", opts: opts()},
		{name: "stdout split", path: "-", opts: Options{Size: -1, DataSize: -1, Split: 10}, wantErr: "standard output cannot be split"},
		{name: "empty path", path: "", opts: opts(), wantErr: "no output path"},
		{name: "new file", path: filepath.Join(dir, "new"), opts: opts()},
		{name: "existing file", path: existing, opts: opts()},
		{name: "missing directory", path: filepath.Join(dir, "nodir", "img"), opts: opts(), wantErr: "directory " + filepath.Join(dir, "nodir") + " does not exist on this node"},
		{name: "parent is a file", path: filepath.Join(existing, "img"), opts: opts(), wantErr: existing + " is not a directory"},
		{name: "output is a directory", path: filepath.Join(dir, "sub"), opts: opts(), wantErr: "output " + filepath.Join(dir, "sub") + " is a directory"},
		{name: "no space", path: filepath.Join(dir, "big"), opts: Options{Size: huge, DataSize: -1}, wantErr: "not enough space for " + filepath.Join(dir, "big") + ": it needs 1099511627776.0 MiB"},
		{name: "no space for data", path: filepath.Join(dir, "big"), opts: Options{Size: huge, DataSize: huge}, wantErr: "not enough space"},
		{name: "sparse image fits", path: filepath.Join(dir, "big"), opts: Options{Size: huge, DataSize: 4096}},
		{name: "split", path: filepath.Join(dir, "new"), opts: Options{Size: -1, DataSize: -1, Split: 1 << 20}},
		{name: "split missing directory", path: filepath.Join(dir, "nodir", "img"), opts: Options{Size: -1, DataSize: -1, Split: 1 << 20}, wantErr: "does not exist on this node"},
		{name: "split part is a directory", path: filepath.Join(dir, "img"), opts: Options{Size: 3 << 20, DataSize: -1, Split: 1 << 20}, wantErr: "img_1 exists and is not a regular file"},
		{name: "split no space", path: filepath.Join(dir, "img2"), opts: Options{Size: huge, DataSize: -1, Split: 1 << 20}, wantErr: "not enough space"},
		{name: "character device", path: "/dev/null", opts: opts()},
		{name: "socket", path: sock, opts: opts(), wantErr: "output " + sock + " is a socket, not a file or device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadDir(dir)
			err := Check(tt.path, tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Check = %v, want an error containing %q", err, tt.wantErr)
			}
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) {
				t.Fatalf("Check created something: %d entries before, %d after", len(before), len(after))
			}
		})
	}
}

func TestCloseAndAbortTwice(t *testing.T) {
	dir := t.TempDir()
	for _, split := range []int64{0, 4} {
		t.Run(fmt.Sprintf("split=%d", split), func(t *testing.T) {
			o := Options{Size: -1, DataSize: -1, Split: split}
			s, err := Open(filepath.Join(dir, fmt.Sprint("a", split)), o)
			if err != nil {
				t.Fatal(err)
			}
			run(t, s, []op{w("abcdef")})
			r1, err1 := s.Close()
			r2, err2 := s.Close()
			if err1 != nil || err2 != nil || r1.Bytes != 6 || r2.Bytes != 6 {
				t.Fatalf("Close twice = (%+v, %v), (%+v, %v)", r1, err1, r2, err2)
			}
			s.Abort()
			s.Abort()

			path := filepath.Join(dir, fmt.Sprint("b", split))
			s, err = Open(path, o)
			if err != nil {
				t.Fatal(err)
			}
			run(t, s, []op{w("abcdef")})
			s.Abort()
			s.Abort()
			if _, err := s.Close(); !errors.Is(err, ErrAborted) {
				t.Fatalf("Close after Abort = %v, want ErrAborted", err)
			}
			name := path
			if split > 0 {
				name = path + "_0"
			}
			if _, err := os.Stat(name); err != nil {
				t.Fatalf("Abort removed the output: %v", err)
			}
		})
	}
}

func TestWriteErrorNamesPathAndOffset(t *testing.T) {
	err := &OffsetError{Op: "write", Path: "/data/img", Offset: 123456, Err: syscall.ENOSPC}
	want := "write /data/img at offset 123456: no space left on device (the file system is full"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("%q does not start with %q", err, want)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatal("OffsetError does not unwrap to ENOSPC")
	}
}
