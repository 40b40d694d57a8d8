package cook

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/sink"
)

// image returns a disk-image-like payload: data, long zero runs (aligned
// and not), data again, and a zero tail.
func image() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for i := range 300 {
		b.WriteString("block ")
		b.WriteString(itoa(i))
		b.WriteByte(byte(r.Uint32()))
	}
	b.Write(make([]byte, 1<<20+123))
	for range 5000 {
		b.WriteByte(byte(r.Uint32()))
	}
	b.Write(make([]byte, 64<<10))
	return b.Bytes()
}

func TestRawRoundTrip(t *testing.T) {
	img := image()
	gz := func(p []byte) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(p)
		w.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name string
		kind Kind
		in   func(t *testing.T) []byte
		want []byte
	}{
		{"gz", Kind{Compression: "gz"}, func(t *testing.T) []byte { return compress(t, "gz", img) }, img},
		{"zst", Kind{Compression: "zst"}, func(t *testing.T) []byte { return compress(t, "zst", img) }, img},
		{"xz", Kind{Compression: "xz"}, func(t *testing.T) []byte { return compress(t, "xz", img) }, img},
		{"Z", Kind{Compression: "Z"}, func(t *testing.T) []byte { return compress(t, "Z", img) }, img},
		{"gz-multimember", Kind{Compression: "gz"}, func(t *testing.T) []byte {
			return append(gz(img[:100000]), gz(img[100000:])...)
		}, img},
		{"gz-trailing-zeros", Kind{Compression: "gz"}, func(t *testing.T) []byte {
			return append(gz(img), make([]byte, 10240)...)
		}, img},
		{"gz-trailing-garbage", Kind{Compression: "gz"}, func(t *testing.T) []byte {
			return append(gz(img), "garbage"...)
		}, img},
		{"gz-empty", Kind{Compression: "gz"}, func(t *testing.T) []byte { return gz(nil) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in(t)
			out := filepath.Join(t.TempDir(), "disk.img")
			opts, last := rawOpts(t)
			res, err := cook(t, tc.kind, in, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("output differs: %d bytes, want %d", len(got), len(tc.want))
			}
			sum := sha256.Sum256(tc.want)
			if res.Bytes != int64(len(tc.want)) || !bytes.Equal(res.Digest, sum[:]) {
				t.Fatalf("Result %d %x, want %d %x", res.Bytes, res.Digest, len(tc.want), sum)
			}
			fs := last()
			if !fs.closed || fs.aborted {
				t.Fatalf("raw sink closed=%v aborted=%v", fs.closed, fs.aborted)
			}
			// The aligned 4 KiB zero blocks (1 MiB in the middle, 64 KiB
			// at the end, plus whatever the random bytes left) are holes.
			if len(tc.want) > 0 && fs.zeroed < 1<<20 {
				t.Fatalf("only %d bytes went through Zero", fs.zeroed)
			}
		})
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	nodes := tree(isRoot())
	builders := map[string]func(testing.TB, []node) []byte{
		"tar":  tarOf,
		"newc": newcOf,
		"crc":  crcOf,
		"odc":  odcOf,
	}
	for _, format := range []string{"tar", "newc", "crc", "odc"} {
		for _, comp := range []string{"", "gz", "zst", "xz", "Z"} {
			archive := "tar"
			if format != "tar" {
				archive = "cpio"
			}
			k := Kind{Compression: comp, Archive: archive}
			t.Run(format+"/"+k.String(), func(t *testing.T) {
				in := compress(t, comp, builders[format](t, nodes))
				out := filepath.Join(t.TempDir(), "root")
				opts, _ := rawOpts(t)
				if _, err := cook(t, k, in, out, opts); err != nil {
					t.Fatal(err)
				}
				checkTree(t, out, nodes)
			})
		}
	}
}

// TestGNUCpio reads the three formats as GNU cpio writes them (newc puts a
// hard link's data on its last name).
func TestGNUCpio(t *testing.T) {
	nodes := tree(isRoot())
	src := t.TempDir()
	makeTree(t, src, nodes)
	for _, h := range []string{"newc", "crc", "odc"} {
		t.Run(h, func(t *testing.T) {
			in := gnuCpio(t, src, h)
			out := filepath.Join(t.TempDir(), "root")
			opts, _ := rawOpts(t)
			if _, err := cook(t, Kind{Archive: "cpio"}, in, out, opts); err != nil {
				t.Fatal(err)
			}
			checkTree(t, out, nodes)
		})
	}
}

func TestCpioConcatenated(t *testing.T) {
	a := []node{{name: "a", typ: 'f', mode: 0o644, data: "first", mtime: epoch}}
	b := []node{{name: "b", typ: 'f', mode: 0o600, data: "second", mtime: epoch}}
	in := append(newcOf(t, a), make([]byte, 512)...)
	in = append(in, odcOf(t, b)...)
	out := filepath.Join(t.TempDir(), "root")
	opts, _ := rawOpts(t)
	if _, err := cook(t, Kind{Archive: "cpio"}, in, out, opts); err != nil {
		t.Fatal(err)
	}
	checkTree(t, out, append(a, b...))
}

func TestCpioBadCRC(t *testing.T) {
	in := crcOf(t, []node{{name: "a", typ: 'f', mode: 0o644, data: "data", mtime: epoch}})
	i := bytes.Index(in, []byte("data"))
	in[i] = 'D'
	opts, _ := rawOpts(t)
	_, err := cook(t, Kind{Archive: "cpio"}, in, filepath.Join(t.TempDir(), "root"), opts)
	if err == nil || !strings.Contains(err.Error(), "crc mismatch") {
		t.Fatalf("got %v, want a crc mismatch", err)
	}
}

// TestReplace checks that entries replace what is at their path, as tar
// does, and that a directory entry keeps an existing directory.
func TestReplace(t *testing.T) {
	out := filepath.Join(t.TempDir(), "root")
	os.MkdirAll(filepath.Join(out, "dir"), 0o700)
	os.WriteFile(filepath.Join(out, "dir", "keep"), []byte("kept"), 0o600)
	os.WriteFile(filepath.Join(out, "file"), []byte("old"), 0o600)
	os.Symlink("/etc/hostname", filepath.Join(out, "link"))
	os.Symlink("dir", filepath.Join(out, "wasdir"))
	nodes := []node{
		{name: "dir", typ: 'd', mode: 0o755, mtime: epoch},
		{name: "file", typ: 'l', target: "dir", mtime: epoch},
		{name: "link", typ: 'f', mode: 0o644, data: "not through the link", mtime: epoch},
		{name: "wasdir", typ: 'f', mode: 0o644, data: "x", mtime: epoch},
	}
	opts, _ := rawOpts(t)
	if _, err := cook(t, Kind{Archive: "tar"}, tarOf(t, nodes), out, opts); err != nil {
		t.Fatal(err)
	}
	checkTree(t, out, append(nodes, node{name: "dir/keep", typ: 'f', mode: 0o600, data: "kept", mtime: fileMtime(t, filepath.Join(out, "dir", "keep"))}))
}

func fileMtime(t *testing.T, p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// rawTar writes headers as they are, without archive/tar's checks beyond
// the format's.
func rawTar(t testing.TB, hdrs ...*tar.Header) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, h := range hdrs {
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			w.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	w.Close()
	return b.Bytes()
}

func TestRefuse(t *testing.T) {
	reg := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}
	}
	sym := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
	}
	hard := func(name, target string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}
	}
	for _, tc := range []struct {
		name string
		hdrs []*tar.Header
		cpio []node // the same attack as a cpio archive, if any
	}{
		{"dotdot", []*tar.Header{reg("../x")}, []node{{name: "../x", typ: 'f', data: "abc"}}},
		{"dotdot-inside", []*tar.Header{reg("a/../../x")}, []node{{name: "a/../../x", typ: 'f', data: "abc"}}},
		{"abs-dotdot", []*tar.Header{reg("/../x")}, nil},
		{"symlink-abs-then-write", []*tar.Header{sym("link", "/etc"), reg("link/passwd")},
			[]node{{name: "link", typ: 'l', target: "/etc"}, {name: "link/passwd", typ: 'f', data: "abc"}}},
		{"symlink-up-then-write", []*tar.Header{sym("link", "../outside"), reg("link/x")}, nil},
		{"symlink-in-then-write", []*tar.Header{sym("link", "."), reg("link/x")}, nil},
		{"symlink-deep-then-write", []*tar.Header{sym("a/b", "/"), reg("a/b/c/d")}, nil},
		{"symlink-then-hardlink", []*tar.Header{sym("link", "/etc"), hard("h", "link/passwd")}, nil},
		{"hardlink-out", []*tar.Header{hard("h", "../../etc/passwd")}, nil},
		{"hardlink-abs-out", []*tar.Header{hard("h", "/../etc/passwd")}, nil},
		{"symlink-then-dir", []*tar.Header{sym("link", "/tmp"), {Name: "link/d/", Typeflag: tar.TypeDir, Mode: 0o755}}, nil},
	} {
		t.Run("tar/"+tc.name, func(t *testing.T) {
			base := t.TempDir()
			out := filepath.Join(base, "out")
			opts, _ := rawOpts(t)
			_, err := cook(t, Kind{Archive: "tar"}, rawTar(t, tc.hdrs...), out, opts)
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("got %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), "tar entry") || !strings.Contains(err.Error(), out) {
				t.Fatalf("error %q should name the entry and the output", err)
			}
			if extra := outside(t, base); len(extra) > 0 {
				t.Fatalf("created outside the output: %q", extra)
			}
		})
		if tc.cpio != nil {
			t.Run("cpio/"+tc.name, func(t *testing.T) {
				base := t.TempDir()
				out := filepath.Join(base, "out")
				opts, _ := rawOpts(t)
				_, err := cook(t, Kind{Archive: "cpio"}, newcOf(t, tc.cpio), out, opts)
				if !errors.Is(err, ErrUnsafePath) {
					t.Fatalf("got %v, want ErrUnsafePath", err)
				}
				if extra := outside(t, base); len(extra) > 0 {
					t.Fatalf("created outside the output: %q", extra)
				}
			})
		}
	}
}

// TestStripLeading checks that absolute names and "./" land inside.
func TestStripLeading(t *testing.T) {
	base := t.TempDir()
	out := filepath.Join(base, "out")
	in := rawTar(t,
		&tar.Header{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		&tar.Header{Name: "./dot/./x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		&tar.Header{Name: "//a/../b", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
	)
	opts, _ := rawOpts(t)
	if _, err := cook(t, Kind{Archive: "tar"}, in, out, opts); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"abs", "dot/x", "b"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != "xxx" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if extra := outside(t, base); len(extra) > 0 {
		t.Fatalf("created outside the output: %q", extra)
	}
}

// TestSparseTar checks that a GNU sparse member is written with holes.
func TestSparseTar(t *testing.T) {
	// GNU tar 1.x "old GNU" sparse member: 1 MiB logical, 4 KiB of data at
	// 512 KiB. archive/tar cannot write sparse files, so the header is
	// built by hand.
	var hdr [512]byte
	copy(hdr[0:], "sparse")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], "00000010000\x00") // size in the archive: 4096
	copy(hdr[136:], "11262204000\x00")
	hdr[156] = 'S'
	copy(hdr[257:], "ustar  \x00")
	// sparse map at 386: offset 12 bytes, numbytes 12 bytes, 4 entries
	copy(hdr[386:], "00002000000\x00") // offset 512 KiB
	copy(hdr[398:], "00000010000\x00") // 4096 bytes
	copy(hdr[483:], "00004000000\x00") // real size 1 MiB
	for i := 148; i < 156; i++ {
		hdr[i] = ' '
	}
	var sum int
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], []byte(strings.Repeat("0", 6-len(itoaOct(sum)))+itoaOct(sum)+"\x00 "))
	in := append(hdr[:], bytes.Repeat([]byte("D"), 4096)...)
	in = append(in, make([]byte, 1024)...)

	out := filepath.Join(t.TempDir(), "root")
	opts, _ := rawOpts(t)
	if _, err := cook(t, Kind{Archive: "tar"}, in, out, opts); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, "sparse")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 1<<20)
	copy(want[512<<10:], bytes.Repeat([]byte("D"), 4096))
	if !bytes.Equal(b, want) {
		t.Fatalf("sparse file content differs (%d bytes)", len(b))
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if used := fi.Sys().(*syscall.Stat_t).Blocks * 512; used >= 1<<20 {
		t.Fatalf("sparse file takes %d bytes on disk: no holes", used)
	}
}

func itoaOct(n int) string {
	s := ""
	for ; n > 0; n /= 8 {
		s = string(rune('0'+n%8)) + s
	}
	return s
}

// TestZeroFeeding feeds a tar's zero runs (a file of zeros, the end
// padding) through Zero only.
func TestZeroFeeding(t *testing.T) {
	nodes := []node{
		{name: "zeros", typ: 'f', mode: 0o644, data: string(make([]byte, 100000)), mtime: epoch},
		{name: "after", typ: 'f', mode: 0o644, data: "after the zeros", mtime: epoch},
	}
	in := tarOf(t, nodes)
	out := filepath.Join(t.TempDir(), "root")
	opts, _ := rawOpts(t)
	s, err := NewSink(Kind{Archive: "tar"}, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	var zeroed int64
	for off := 0; off < len(in); off += 512 {
		blk := in[off:min(off+512, len(in))]
		if allZero(blk) {
			err = s.Zero(int64(len(blk)))
			zeroed += int64(len(blk))
		} else {
			_, err = s.Write(blk)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Close()
	if err != nil {
		t.Fatal(err)
	}
	if zeroed < 100000 {
		t.Fatalf("only %d bytes went through Zero", zeroed)
	}
	sum := sha256.Sum256(in)
	if res.Bytes != int64(len(in)) || !bytes.Equal(res.Digest, sum[:]) {
		t.Fatalf("Result %d %x, want %d %x", res.Bytes, res.Digest, len(in), sum)
	}
	checkTree(t, out, nodes)
}

// TestAbort stops sinks whose decoder waits for more input, and checks
// that the decoder goroutine ends and every later call is harmless.
func TestAbort(t *testing.T) {
	img := image()
	tr := tarOf(t, tree(false))
	for _, tc := range []struct {
		kind Kind
		in   func(t *testing.T) []byte
	}{
		{Kind{Compression: "gz"}, func(t *testing.T) []byte { return compress(t, "gz", img) }},
		{Kind{Compression: "zst"}, func(t *testing.T) []byte { return compress(t, "zst", img) }},
		{Kind{Compression: "Z"}, func(t *testing.T) []byte { return compress(t, "Z", img) }},
		{Kind{Compression: "xz", Archive: "tar"}, func(t *testing.T) []byte { return compress(t, "xz", tr) }},
		{Kind{Archive: "cpio"}, func(t *testing.T) []byte { return newcOf(t, tree(false)) }},
		{Kind{Compression: "gz"}, func(t *testing.T) []byte { return nil }}, // still in the header
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			in := tc.in(t)
			out := filepath.Join(t.TempDir(), "out")
			opts, last := rawOpts(t)
			s, err := NewSink(tc.kind, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := feed(s, in[:len(in)/2], 5); err != nil {
				t.Fatal(err)
			}
			s.Abort()
			select {
			case <-s.done:
			default:
				t.Fatal("decoder goroutine still running after Abort returned")
			}
			s.Abort()
			if _, err := s.Write([]byte("x")); !errors.Is(err, ErrAborted) {
				t.Fatalf("Write after Abort: %v", err)
			}
			if err := s.Zero(10); !errors.Is(err, ErrAborted) {
				t.Fatalf("Zero after Abort: %v", err)
			}
			if _, err := s.Close(); !errors.Is(err, ErrAborted) {
				t.Fatalf("Close after Abort: %v", err)
			}
			if tc.kind.Archive == "" && !last().aborted {
				t.Fatal("raw sink not aborted")
			}
		})
	}
}

// gateSink is a raw sink whose Write waits until the gate opens.
type gateSink struct {
	*fileSink
	gate chan struct{}
}

func (g gateSink) Write(p []byte) (int, error) {
	<-g.gate
	return g.fileSink.Write(p)
}

// TestAbortUnblocksWrite aborts while the node's writer is blocked in
// Write (the decoder is stuck on a slow output): the Write returns at
// once, and Abort returns once the output write does.
func TestAbortUnblocksWrite(t *testing.T) {
	in := compress(t, "gz", image())
	gate := make(chan struct{})
	var gs gateSink
	opts := Options{OpenRaw: func(path string) (sink.Sink, error) {
		fs, err := openFileSink(path)
		gs = gateSink{fs, gate}
		return gs, err
	}}
	s, err := NewSink(Kind{Compression: "gz"}, filepath.Join(t.TempDir(), "disk"), opts)
	if err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() { werr <- feed(s, in, 7) }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-werr:
		t.Fatalf("feed returned before the output took anything: %v", err)
	default:
	}
	aborted := make(chan struct{})
	go func() { s.Abort(); close(aborted) }()
	select {
	case err := <-werr:
		if !errors.Is(err, ErrAborted) {
			t.Fatalf("blocked Write returned %v, want ErrAborted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Abort did not unblock Write")
	}
	close(gate)
	select {
	case <-aborted:
	case <-time.After(5 * time.Second):
		t.Fatal("Abort did not return once the output write did")
	}
	<-s.done
	if !gs.aborted {
		t.Fatal("raw sink not aborted")
	}
}

func TestAbortAfterClose(t *testing.T) {
	out := filepath.Join(t.TempDir(), "disk")
	opts, last := rawOpts(t)
	in := compress(t, "gz", []byte("hello"))
	s, err := NewSink(Kind{Compression: "gz"}, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	s.Abort()
	if last().aborted {
		t.Fatal("Abort after Close aborted the raw sink")
	}
	if _, err := s.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

// TestDecodeError checks that a corrupt stream fails Write or Close with
// the output and the cause, and aborts the raw sink.
func TestDecodeError(t *testing.T) {
	img := image()
	for _, tc := range []struct {
		name string
		kind Kind
		in   func(t *testing.T) []byte
		want string
	}{
		{"gz-corrupt", Kind{Compression: "gz"}, func(t *testing.T) []byte {
			b := compress(t, "gz", img)
			for i := 100; i < 200; i++ {
				b[i] ^= 0x55
			}
			return b
		}, "gzip"},
		{"gz-truncated", Kind{Compression: "gz"}, func(t *testing.T) []byte { b := compress(t, "gz", img); return b[:len(b)/2] }, "unexpected EOF"},
		{"not-gz", Kind{Compression: "gz"}, func(t *testing.T) []byte { return img }, "gzip"},
		{"zst-truncated", Kind{Compression: "zst"}, func(t *testing.T) []byte { b := compress(t, "zst", img); return b[:len(b)-10] }, "zstd"},
		{"xz-garbage", Kind{Compression: "xz"}, func(t *testing.T) []byte { return []byte("this is not xz at all") }, "xz"},
		{"Z-garbage", Kind{Compression: "Z"}, func(t *testing.T) []byte { return []byte("not compress") }, "unixz"},
		{"tar-truncated", Kind{Archive: "tar"}, func(t *testing.T) []byte { b := tarOf(t, tree(false)); return b[:1000] }, "tar"},
		{"cpio-garbage", Kind{Archive: "cpio"}, func(t *testing.T) []byte { return []byte("070701zzzz") }, "cpio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			opts, last := rawOpts(t)
			s, err := NewSink(tc.kind, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			err = feed(s, tc.in(t), 3)
			if err == nil {
				_, err = s.Close()
			} else {
				s.Abort()
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), out) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name %s and %q", err, out, tc.want)
			}
			if tc.kind.Archive == "" && !last().aborted {
				t.Fatal("raw sink not aborted")
			}
			// Digest checks the compression only, not the archive.
			if _, _, derr := Digest(tc.kind, bytes.NewReader(tc.in(t)), digest.SHA256); derr == nil && tc.kind.Archive == "" {
				t.Fatal("Digest accepted what the sink refused")
			}
		})
	}
}

func TestNewSinkErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewSink(Kind{Compression: "gz"}, filepath.Join(dir, "x"), Options{}); err == nil {
		t.Error("raw kind without OpenRaw accepted")
	}
	if _, err := NewSink(Kind{}, filepath.Join(dir, "x"), Options{}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("zero kind: %v", err)
	}
	if _, err := NewSink(Kind{Compression: "bz2"}, filepath.Join(dir, "x"), Options{}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("bz2: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	if _, err := NewSink(Kind{Archive: "tar"}, filepath.Join(dir, "file"), Options{}); err == nil {
		t.Error("archive into a regular file accepted")
	}
	if _, _, err := Digest(Kind{Archive: "zip"}, bytes.NewReader(nil), digest.SHA256); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("Digest zip: %v", err)
	}
}

// FuzzTarCook unpacks arbitrary bytes as a tar archive and checks that
// nothing appears outside the output directory. Each input touches the
// file system, so minimizing takes long: run it with
// -fuzzminimizetime=200x.
func FuzzTarCook(f *testing.F) {
	f.Add(rawTar(f,
		&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"},
		&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "a"},
	))
	f.Add(rawTar(f, &tar.Header{Name: "../x", Typeflag: tar.TypeReg, Size: 3}))
	f.Add(rawTar(f, &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."},
		&tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Size: 3}))
	f.Add(rawTar(f, &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o555},
		&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Size: 3},
		&tar.Header{Name: "p", Typeflag: tar.TypeFifo, Mode: 0o600}))
	f.Fuzz(func(t *testing.T, in []byte) {
		// A sparse member may declare terabytes of holes from a few
		// bytes: correct, but not for a fuzzer's disk and time.
		tr := tar.NewReader(bytes.NewReader(in))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Size > 1<<20 {
				return
			}
		}
		fuzzCook(t, Kind{Archive: "tar"}, in)
	})
}

// FuzzCpioCook is FuzzTarCook for the cpio reader.
func FuzzCpioCook(f *testing.F) {
	f.Add(newcOf(f, []node{
		{name: "a", typ: 'f', mode: 0o644, data: "abc"},
		{name: "l", typ: 'l', target: "/"},
		{name: "h", typ: 'h', target: "a"},
	}))
	f.Add(odcOf(f, []node{{name: "l", typ: 'l', target: ".."}, {name: "l/x", typ: 'f', data: "x"}}))
	f.Add(crcOf(f, []node{{name: "d", typ: 'd', mode: 0o555}, {name: "d/f", typ: 'f', data: "x"}, {name: "p", typ: 'p'}}))
	f.Fuzz(func(t *testing.T, in []byte) {
		fuzzCook(t, Kind{Archive: "cpio"}, in)
	})
}

func fuzzCook(t *testing.T, k Kind, in []byte) {
	base := t.TempDir()
	out := filepath.Join(base, "out")
	t.Cleanup(func() { unlock(out) })
	s, err := NewSink(k, out, Options{SameOwner: isRoot()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(in); err != nil {
		s.Abort()
	} else {
		s.Close()
	}
	if extra := outside(t, base); len(extra) > 0 {
		t.Fatalf("created outside the output: %q", extra)
	}
}

// unlock makes every directory under dir writable again, for the test's
// cleanup when not root.
func unlock(dir string) {
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}

var _ io.Writer = (*Sink)(nil)

// TestRawDigests: a raw image decoded through a Sink has, in each
// algorithm, the digest of its decoded bytes, whether they went through
// as data or as holes (zero blocks, leaves of zeros, an unaligned tail).
func TestRawDigests(t *testing.T) {
	img := make([]byte, 5<<20+4097)
	fillPattern := func(off, n int) {
		for i := off; i < off+n; i++ {
			img[i] = byte(i*31 + 7)
		}
	}
	fillPattern(1000, 5000)   // data in the first leaf, zeros around it
	fillPattern(3<<20, 1<<20) // one whole leaf of data
	fillPattern(5<<20+4000, 97)
	in := compress(t, "zst", img)
	for _, alg := range digest.Algs {
		t.Run(string(alg), func(t *testing.T) {
			opts, _ := rawOpts(t)
			opts.Digest = alg
			res, err := cook(t, Kind{Compression: "zst"}, in, filepath.Join(t.TempDir(), "disk.img"), opts)
			if err != nil {
				t.Fatal(err)
			}
			h := digest.New(alg)
			h.Write(img)
			if w := h.Sum(nil); res.Bytes != int64(len(img)) || !bytes.Equal(res.Digest, w) {
				t.Fatalf("Result %d %x, want %d %x", res.Bytes, res.Digest, len(img), w)
			}
		})
	}
}
