package cook

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"github.com/herdproject/herd/ring/sink"
)

// fileSink is a minimal raw sink for the tests: a regular file that Zero
// seeks over, and a count of what went through Write and Zero.
type fileSink struct {
	f       *os.File
	n       int64
	zeroed  int64
	closed  bool
	aborted bool
}

func openFileSink(path string) (*fileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileSink{f: f}, nil
}

func (s *fileSink) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *fileSink) Zero(n int64) error {
	if _, err := s.f.Seek(n, io.SeekCurrent); err != nil {
		return err
	}
	s.n += n
	s.zeroed += n
	return nil
}

func (s *fileSink) Close() (sink.Result, error) {
	s.closed = true
	if err := s.f.Truncate(s.n); err != nil {
		return sink.Result{}, err
	}
	return sink.Result{Bytes: s.n}, s.f.Close()
}

func (s *fileSink) Abort() {
	if !s.aborted && !s.closed {
		s.f.Close()
	}
	s.aborted = true
}

// rawOpts returns Options whose OpenRaw makes fileSinks, and a function
// that returns the last one opened.
func rawOpts(t *testing.T) (Options, func() *fileSink) {
	var last *fileSink
	return Options{
		OpenRaw: func(path string) (sink.Sink, error) {
			s, err := openFileSink(path)
			last = s
			return s, err
		},
		SameOwner: os.Geteuid() == 0,
		Logf:      t.Logf,
	}, func() *fileSink { return last }
}

// feed pushes in into s in odd-sized pieces chosen by seed; aligned runs
// of 512 zero bytes or more go through Zero, as a relay passes holes.
func feed(s *Sink, in []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 1))
	for len(in) > 0 {
		n := min(len(in), 1+2*r.IntN(4000))
		p := in[:n]
		if n >= 512 && allZero(p) {
			if err := s.Zero(int64(n)); err != nil {
				return err
			}
		} else if _, err := s.Write(p); err != nil {
			return err
		}
		in = in[n:]
	}
	return nil
}

// cook runs in through a Sink of kind k into output, and checks that the
// Result matches Digest.
func cook(t *testing.T, k Kind, in []byte, output string, opts Options) (sink.Result, error) {
	t.Helper()
	s, err := NewSink(k, output, opts)
	if err != nil {
		return sink.Result{}, err
	}
	if err := feed(s, in, uint64(len(in))); err != nil {
		s.Abort()
		return sink.Result{}, err
	}
	res, err := s.Close()
	if err != nil {
		return res, err
	}
	n, sum, err := Digest(k, bytes.NewReader(in), opts.Digest)
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	if n != res.Bytes || !bytes.Equal(sum, res.Digest) {
		t.Fatalf("Result %d %x, Digest %d %x", res.Bytes, res.Digest, n, sum)
	}
	return res, nil
}

// compress encodes in with compression c; it skips the test when c is "Z"
// and the compress program is missing.
func compress(t *testing.T, c string, in []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	switch c {
	case "":
		return in
	case "gz":
		w := gzip.NewWriter(&b)
		w.Write(in)
		w.Close()
	case "zst":
		w, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(in)
		w.Close()
	case "xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(in)
		w.Close()
	case "Z":
		if _, err := exec.LookPath("compress"); err != nil {
			t.Skip("compress binary not installed (apt-get install ncompress)")
		}
		cmd := exec.Command("compress", "-c", "-f")
		cmd.Stdin = bytes.NewReader(in)
		cmd.Stdout = &b
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("compress: %v", err)
			}
		}
	default:
		t.Fatalf("no compressor for %q", c)
	}
	return b.Bytes()
}

// node is one file of a test tree.
type node struct {
	name   string
	typ    byte // 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char, 'b' block, 'p' FIFO
	mode   uint32
	data   string
	target string // symlink target, or hard link target's name
	uid    int
	gid    int
	mtime  time.Time
	major  uint32
	minor  uint32
}

var epoch = time.Date(2009, 11, 10, 23, 0, 0, 0, time.UTC)

// tree is the sample tree: every type, special mode bits, owners, times.
func tree(withDevices bool) []node {
	big := bytes.Repeat([]byte("herd "), 20000)
	nodes := []node{
		{name: "etc", typ: 'd', mode: 0o755, mtime: epoch},
		{name: "etc/hostname", typ: 'f', mode: 0o644, data: "node1\n", uid: 1000, gid: 100, mtime: epoch.Add(time.Hour)},
		{name: "etc/shadow", typ: 'f', mode: 0o600, data: "root:*:1::::::\n", mtime: epoch.Add(2 * time.Hour)},
		{name: "usr", typ: 'd', mode: 0o755, mtime: epoch.Add(3 * time.Hour)},
		{name: "usr/bin", typ: 'd', mode: 0o750, uid: 0, gid: 10, mtime: epoch.Add(4 * time.Hour)},
		{name: "usr/bin/su", typ: 'f', mode: 0o4755, data: "#!/bin/true\n", mtime: epoch.Add(5 * time.Hour)},
		{name: "usr/bin/wall", typ: 'f', mode: 0o2755, data: string(big), gid: 5, mtime: epoch.Add(6 * time.Hour)},
		{name: "usr/bin/sudo", typ: 'h', target: "usr/bin/su"},
		{name: "usr/lib", typ: 'd', mode: 0o755, mtime: epoch.Add(7 * time.Hour)},
		{name: "usr/lib/zeros", typ: 'f', mode: 0o644, data: string(make([]byte, 3*4096+5)), mtime: epoch},
		{name: "usr/lib/empty", typ: 'f', mode: 0o444, mtime: epoch},
		{name: "lib", typ: 'l', target: "usr/lib", uid: 1, gid: 2, mtime: epoch.Add(8 * time.Hour)},
		{name: "abs", typ: 'l', target: "/etc/passwd", mtime: epoch.Add(9 * time.Hour)},
		{name: "tmp", typ: 'd', mode: 0o1777, mtime: epoch.Add(10 * time.Hour)},
		{name: "tmp/fifo", typ: 'p', mode: 0o620, uid: 7, gid: 8, mtime: epoch.Add(11 * time.Hour)},
		{name: "deep/a/b/c", typ: 'f', mode: 0o640, data: "no parent entries", mtime: epoch},
	}
	if withDevices {
		nodes = append(nodes,
			node{name: "dev", typ: 'd', mode: 0o755, mtime: epoch},
			node{name: "dev/null", typ: 'c', mode: 0o666, major: 1, minor: 3, mtime: epoch.Add(12 * time.Hour)},
			node{name: "dev/sda", typ: 'b', mode: 0o660, major: 8, minor: 0, gid: 6, mtime: epoch.Add(13 * time.Hour)},
		)
	}
	return nodes
}

func isRoot() bool { return os.Geteuid() == 0 }

// tarOf writes nodes as a tar archive; names get a leading "./" as
// `tar -C dir .` writes them.
func tarOf(t testing.TB, nodes []node) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch})
	for _, n := range nodes {
		h := &tar.Header{Name: "./" + n.name, Mode: int64(n.mode), Uid: n.uid, Gid: n.gid, ModTime: n.mtime,
			Devmajor: int64(n.major), Devminor: int64(n.minor), Linkname: n.target, Format: tar.FormatPAX}
		switch n.typ {
		case 'f':
			h.Typeflag, h.Size = tar.TypeReg, int64(len(n.data))
		case 'd':
			h.Typeflag = tar.TypeDir
		case 'l':
			h.Typeflag = tar.TypeSymlink
		case 'h':
			h.Typeflag, h.Linkname = tar.TypeLink, "./"+n.target
		case 'c':
			h.Typeflag = tar.TypeChar
		case 'b':
			h.Typeflag = tar.TypeBlock
		case 'p':
			h.Typeflag = tar.TypeFifo
		}
		if err := w.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, n.data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// cpioMode returns the cpio mode word of n.
func cpioMode(n node) uint64 {
	m := uint64(n.mode)
	switch n.typ {
	case 'f', 'h':
		m |= unix.S_IFREG
	case 'd':
		m |= unix.S_IFDIR
	case 'l':
		m |= unix.S_IFLNK
	case 'c':
		m |= unix.S_IFCHR
	case 'b':
		m |= unix.S_IFBLK
	case 'p':
		m |= unix.S_IFIFO
	}
	return m
}

// cpioRecords turns nodes into cpio records; hard links share the inode
// and mode of their target, and the data rides with the first name (as
// the Linux kernel's gen_init_cpio writes them).
func cpioRecords(nodes []node) []cpio.Info {
	byName := map[string]int{}
	var infos []cpio.Info
	links := map[string]uint64{}
	for i, n := range nodes {
		if n.typ == 'h' {
			links[n.target]++
		}
		byName[n.name] = i
	}
	for i, n := range nodes {
		info := cpio.Info{Ino: uint64(1000 + i), Mode: cpioMode(n), UID: uint64(n.uid), GID: uint64(n.gid),
			NLink: 1, MTime: uint64(n.mtime.Unix()), Rmajor: uint64(n.major), Rminor: uint64(n.minor), Name: n.name}
		switch n.typ {
		case 'f':
			info.FileSize = uint64(len(n.data))
			info.NLink += links[n.name]
		case 'l':
			info.FileSize = uint64(len(n.target))
		case 'h':
			tg := nodes[byName[n.target]]
			info.Ino, info.Mode, info.UID, info.GID = uint64(1000+byName[n.target]), cpioMode(tg), uint64(tg.uid), uint64(tg.gid)
			info.MTime, info.NLink = uint64(tg.mtime.Unix()), 1+links[n.target]
		}
		infos = append(infos, info)
	}
	return infos
}

func cpioData(n node) []byte {
	switch n.typ {
	case 'f':
		return []byte(n.data)
	case 'l':
		return []byte(n.target)
	}
	return nil
}

// newcOf writes nodes as a newc archive with u-root's writer.
func newcOf(t testing.TB, nodes []node) []byte {
	t.Helper()
	var b bytes.Buffer
	w := cpio.Newc.Writer(&b)
	if err := w.WriteRecord(cpio.StaticRecord(nil, cpio.Info{Ino: 1, Mode: unix.S_IFDIR | 0o755, NLink: 2, MTime: uint64(epoch.Unix()), Name: "."})); err != nil {
		t.Fatal(err)
	}
	for i, info := range cpioRecords(nodes) {
		if err := w.WriteRecord(cpio.StaticRecord(cpioData(nodes[i]), info)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// crcOf and odcOf write the formats u-root's writer has not; the tests
// also read archives of all three formats made by GNU cpio when installed.
func crcOf(t testing.TB, nodes []node) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	write := func(info cpio.Info, data []byte) {
		var sum uint32
		if info.Mode&unix.S_IFMT == unix.S_IFREG {
			for _, c := range data {
				sum += uint32(c)
			}
		}
		fmt.Fprintf(&b, "070702%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			info.Ino, info.Mode, info.UID, info.GID, info.NLink, info.MTime, len(data),
			0, 0, info.Rmajor, info.Rminor, len(info.Name)+1, sum)
		b.WriteString(info.Name + "\x00")
		pad()
		b.Write(data)
		pad()
	}
	for i, info := range cpioRecords(nodes) {
		write(info, cpioData(nodes[i]))
	}
	write(cpio.Info{Name: "TRAILER!!!"}, nil)
	for b.Len()%512 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func odcOf(t testing.TB, nodes []node) []byte {
	var b bytes.Buffer
	write := func(info cpio.Info, data []byte) {
		rdev := unix.Mkdev(uint32(info.Rmajor), uint32(info.Rminor))
		fmt.Fprintf(&b, "070707%06o%06o%06o%06o%06o%06o%06o%011o%06o%011o",
			0o1234, info.Ino, info.Mode, info.UID, info.GID, info.NLink, rdev, info.MTime, len(info.Name)+1, len(data))
		b.WriteString(info.Name + "\x00")
		b.Write(data)
	}
	// odc carries the data with every name of a hard link.
	for i, info := range cpioRecords(nodes) {
		data := cpioData(nodes[i])
		if nodes[i].typ == 'h' {
			for _, n := range nodes {
				if n.name == nodes[i].target {
					data = []byte(n.data)
				}
			}
		}
		write(info, data)
	}
	write(cpio.Info{Name: "TRAILER!!!"}, nil)
	return b.Bytes()
}

// checkTree compares the tree under dir with nodes: types, contents, modes,
// times, owners (as root), device numbers, symlink targets, hard links.
func checkTree(t *testing.T, dir string, nodes []node) {
	t.Helper()
	want := map[string]bool{".": true}
	for _, n := range nodes {
		for p := n.name; p != "."; p = filepath.Dir(p) {
			want[p] = true
		}
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk: %v", err)
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if !want[rel] {
			got = append(got, rel)
		}
		return nil
	})
	if len(got) > 0 {
		sort.Strings(got)
		t.Errorf("unexpected files: %q", got)
	}
	for _, n := range nodes {
		p := filepath.Join(dir, n.name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", n.name, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		wantType := map[byte]uint32{'f': unix.S_IFREG, 'h': unix.S_IFREG, 'd': unix.S_IFDIR, 'l': unix.S_IFLNK,
			'c': unix.S_IFCHR, 'b': unix.S_IFBLK, 'p': unix.S_IFIFO}[n.typ]
		if st.Mode&unix.S_IFMT != wantType {
			t.Errorf("%s: type %#o, want %#o", n.name, st.Mode&unix.S_IFMT, wantType)
			continue
		}
		switch n.typ {
		case 'h':
			tfi, err := os.Lstat(filepath.Join(dir, n.target))
			if err != nil || !os.SameFile(fi, tfi) {
				t.Errorf("%s: not a hard link of %s", n.name, n.target)
			}
			continue
		case 'l':
			if tg, err := os.Readlink(p); err != nil || tg != n.target {
				t.Errorf("%s: symlink to %q, %v; want %q", n.name, tg, err, n.target)
			}
		case 'f':
			if b, err := os.ReadFile(p); err != nil || string(b) != n.data {
				t.Errorf("%s: content differs (%d bytes, want %d), %v", n.name, len(b), len(n.data), err)
			}
		case 'c', 'b':
			if unix.Major(st.Rdev) != n.major || unix.Minor(st.Rdev) != n.minor {
				t.Errorf("%s: device %d:%d, want %d:%d", n.name, unix.Major(st.Rdev), unix.Minor(st.Rdev), n.major, n.minor)
			}
		}
		if n.typ != 'l' && st.Mode&0o7777 != n.mode {
			t.Errorf("%s: mode %#o, want %#o", n.name, st.Mode&0o7777, n.mode)
		}
		if mt := time.Unix(st.Mtim.Unix()); !mt.Equal(n.mtime) {
			t.Errorf("%s: mtime %v, want %v", n.name, mt, n.mtime)
		}
		if isRoot() && (int(st.Uid) != n.uid || int(st.Gid) != n.gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", n.name, st.Uid, st.Gid, n.uid, n.gid)
		}
	}
}

// gnuCpio archives dir with GNU cpio in format h ("newc", "crc", "odc"),
// or skips the test when cpio is missing.
func gnuCpio(t *testing.T, dir, h string) []byte {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio binary not installed")
	}
	var names bytes.Buffer
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, p)
		names.WriteString(rel + "\n")
		return nil
	})
	cmd := exec.Command("cpio", "-o", "--quiet", "-H", h)
	cmd.Dir = dir
	cmd.Stdin = &names
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -o -H %s: %v: %s", h, err, stderr.String())
	}
	return out.Bytes()
}

// makeTree creates nodes under dir with the system calls, for GNU cpio to
// archive.
func makeTree(t *testing.T, dir string, nodes []node) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		p := filepath.Join(dir, n.name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		switch n.typ {
		case 'f':
			must(os.WriteFile(p, []byte(n.data), 0o600))
		case 'd':
			must(os.Mkdir(p, 0o700))
		case 'l':
			must(os.Symlink(n.target, p))
		case 'h':
			must(os.Link(filepath.Join(dir, n.target), p))
			continue
		case 'c':
			must(unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(n.major, n.minor))))
		case 'b':
			must(unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(n.major, n.minor))))
		case 'p':
			must(unix.Mkfifo(p, 0o600))
		}
		if isRoot() {
			must(os.Lchown(p, n.uid, n.gid))
		}
		if n.typ != 'l' {
			must(os.Chmod(p, fileMode(n.mode)))
		}
	}
	// Times last, deepest first, so that creating entries does not move
	// a directory's mtime.
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		if n.typ == 'h' {
			continue
		}
		ts := []unix.Timespec{unix.NsecToTimespec(n.mtime.UnixNano()), unix.NsecToTimespec(n.mtime.UnixNano())}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, n.name), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// outside lists what exists in base besides the output directory "out",
// to prove nothing escaped.
func outside(t *testing.T, base string) []string {
	t.Helper()
	var extra []string
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(base, p)
		if rel == "." {
			return nil
		}
		if rel == "out" {
			return filepath.SkipDir
		}
		extra = append(extra, rel)
		return nil
	})
	return extra
}

func itoa(i int) string { return strconv.Itoa(i) }
