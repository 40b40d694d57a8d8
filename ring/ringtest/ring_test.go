//go:build ringtest

package ringtest

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRingRandom sends a 256 MiB random file through chains of 1, 2, 5 and
// 8 herd recv processes with herd send: the sender exits 0, its summary
// has one line per node, done and verified, with the whole file's bytes,
// and dolly's totals; every node exits 0 and its output (a relative path,
// so in the node's own working directory) is byte-identical to the input.
func TestRingRandom(t *testing.T) {
	const size = 256 << 20
	in := randomFile(t, size, 1)
	inputSHA(t, in)
	for _, n := range []int{1, 2, 5, 8} {
		t.Run(fmt.Sprintf("N=%d", n), func(t *testing.T) {
			dir := workDir(t)
			nodes := startNodes(t, dir, addrs(seq(1, n)...), nodeOpts{})
			r := send(t, dir, 0, "herd", "send", "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
			wantExit(t, r, 0)
			for _, l := range checkSummary(t, r, nodeAddrs(nodes), nil) {
				if l.bytes != size {
					t.Errorf("summary: node %s BYTES %d, want %d", l.name, l.bytes, size)
				}
			}
			waitExit(t, nodes, 0)
			for _, nd := range nodes {
				sameFile(t, in, filepath.Join(nd.dir, "out.img"))
			}
			t.Logf("%d node(s), 256 MiB: sender ran %v", n, r.elapsed.Round(time.Millisecond))
		})
	}
}

// extent is a run of data in a sparse test file.
type extent struct{ off, len int64 }

// makeSparse writes a file of size bytes with random data at the extents
// and holes elsewhere (the end is a hole when the last extent ends before
// size).
func makeSparse(t *testing.T, path string, size int64, exts []extent) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, e := range exts {
		if _, err := f.Seek(e.off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if err := writeRandom(f, e.len, byte(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// allocated is what a file takes on disk.
func allocated(t *testing.T, path string) (size, alloc int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size(), fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestRingSparse sends a 64 MiB file holding about 4 MiB of data at
// scattered (some unaligned) offsets between holes, ending in a hole: every
// output is identical to the input and still sparse (less than a quarter of
// its size allocated), and an existing longer output on a node is
// truncated, not left with a stale tail.
func TestRingSparse(t *testing.T) {
	const size = 64 << 20
	dir := workDir(t)
	in := filepath.Join(dir, "sparse.img")
	makeSparse(t, in, size, []extent{
		{0, 1 << 20},
		{5<<20 + 123, 300 << 10},
		{20 << 20, 2 << 20},
		{40<<20 + 4096, 512 << 10},
		{50<<20 - 7, 100},
	})
	if _, alloc := allocated(t, in); alloc > size/4 {
		t.Fatalf("the input itself is not sparse here (%d bytes allocated): cannot test sparseness", alloc)
	}
	nodes := startNodes(t, dir, addrs(1, 2, 3), nodeOpts{})
	// Node 2 has a longer output already, node 3 a shorter one.
	f, err := os.Create(filepath.Join(nodes[1].dir, "out.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeRandom(f, 80<<20, 9); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(nodes[2].dir, "out.img"), []byte("old short content\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	r := send(t, dir, 0, "herd", "send", "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
	wantExit(t, r, 0)
	allDone(t, r, nodeAddrs(nodes))
	waitExit(t, nodes, 0)
	for _, nd := range nodes {
		out := filepath.Join(nd.dir, "out.img")
		sameFile(t, in, out)
		if sz, alloc := allocated(t, out); alloc > size/4 {
			t.Errorf("node %s: output of %d bytes has %d bytes allocated: not sparse", nd.addr, sz, alloc)
		} else {
			t.Logf("node %s: %d bytes, %d allocated", nd.addr, sz, alloc)
		}
	}
}

// treeEntry is one entry of a test directory tree.
type treeEntry struct {
	path string
	kind byte // 'd' directory, 'f' file, 'l' symlink
	mode os.FileMode
	data string // file contents, or the link target
	size int64  // > 0: that many random bytes instead of data
}

// makeTree creates the entries under root (a new directory), sets their
// modes and gives every file and directory its own whole-second mtime.
func makeTree(t *testing.T, root string, entries []treeEntry) {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.kind {
		case 'd':
			err = os.Mkdir(p, 0o755)
		case 'f':
			if e.size > 0 {
				var f *os.File
				if f, err = os.Create(p); err == nil {
					err = writeRandom(f, e.size, byte(200+i))
					f.Close()
				}
			} else {
				err = os.WriteFile(p, []byte(e.data), 0o644)
			}
		case 'l':
			err = os.Symlink(e.data, p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// Modes and times last, deepest first: creating an entry changes its
	// directory's mtime.
	var all []string
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			all = append(all, p)
		}
		return err
	})
	modes := map[string]os.FileMode{}
	for _, e := range entries {
		if e.kind != 'l' {
			modes[filepath.Join(root, e.path)] = e.mode
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(all)))
	for i, p := range all {
		if m, ok := modes[p]; ok {
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
		}
		mt := time.Unix(1600000000+int64(i)*3600, 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

// rootfsTree is a small root file system: modes (setuid, sticky, private),
// relative and absolute symlinks, an empty file and a larger one.
var rootfsTree = []treeEntry{
	{path: "etc", kind: 'd', mode: 0o755},
	{path: "etc/hosts", kind: 'f', mode: 0o644, data: "127.0.0.1 localhost\n"},
	{path: "etc/shadow", kind: 'f', mode: 0o600, data: "root:*:19000:0:99999:7:::\n"},
	{path: "etc/localtime", kind: 'l', data: "/usr/share/zoneinfo/UTC"},
	{path: "usr", kind: 'd', mode: 0o755},
	{path: "usr/bin", kind: 'd', mode: 0o755},
	{path: "usr/bin/tool", kind: 'f', mode: 0o755, size: 1<<20 + 17},
	{path: "usr/bin/su", kind: 'f', mode: 0o755 | os.ModeSetuid, data: "#!/bin/sh\n"},
	{path: "usr/bin/tool-link", kind: 'l', data: "tool"},
	{path: "var", kind: 'd', mode: 0o755},
	{path: "var/empty", kind: 'd', mode: 0o700},
	{path: "var/lib", kind: 'd', mode: 0o755},
	{path: "var/lib/empty-file", kind: 'f', mode: 0o640},
	{path: "tmp", kind: 'd', mode: 0o777 | os.ModeSticky},
}

// tarGz writes root's entries (not root itself) as a gzip-compressed tar.
func tarGz(t *testing.T, root, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			if _, err := io.Copy(tw, src); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("tar.gz of %s: %v", root, err)
	}
}

// cpioGz writes root as 'find . | cpio -o -H newc | gzip' does; it returns
// false when cpio(1) is not installed.
func cpioGz(t *testing.T, root, out string) bool {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		return false
	}
	var names strings.Builder
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			names.WriteString(".\n")
		} else {
			names.WriteString("./" + filepath.ToSlash(rel) + "\n")
		}
		return nil
	})
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	cmd := exec.Command("cpio", "--quiet", "-o", "-H", "newc")
	cmd.Dir, cmd.Stdin, cmd.Stdout = root, strings.NewReader(names.String()), zw
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -o -H newc in %s: %v\n%s", root, err, stderr.String())
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return true
}

// compareTree asserts that got holds exactly want's entries (below the
// roots) with the same types, permission and special mode bits, symlink
// targets, file contents, and file and directory mtimes.
func compareTree(t *testing.T, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	err := filepath.Walk(want, func(p string, wfi os.FileInfo, err error) error {
		if err != nil || p == want {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		gp := filepath.Join(got, rel)
		gfi, err := os.Lstat(gp)
		if err != nil {
			t.Errorf("%s: missing: %v", gp, err)
			return nil
		}
		const bits = os.ModeType | os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky
		if wm, gm := wfi.Mode()&bits, gfi.Mode()&bits; wm != gm {
			t.Errorf("%s: mode %v, want %v", gp, gm, wm)
			return nil
		}
		switch {
		case wfi.Mode()&os.ModeSymlink != 0:
			wl, _ := os.Readlink(p)
			gl, _ := os.Readlink(gp)
			if wl != gl {
				t.Errorf("%s: link to %q, want %q", gp, gl, wl)
			}
			return nil
		case wfi.Mode().IsRegular():
			if wfi.Size() != gfi.Size() {
				t.Errorf("%s: %d bytes, want %d", gp, gfi.Size(), wfi.Size())
			} else if ws, gs := sha256File(t, p), sha256File(t, gp); ws != gs {
				t.Errorf("%s: contents differ (SHA-256 %s, want %s)", gp, gs, ws)
			}
		}
		if wt, gt := wfi.ModTime().Unix(), gfi.ModTime().Unix(); wt != gt {
			t.Errorf("%s: mtime %v, want %v", gp, time.Unix(gt, 0).UTC(), time.Unix(wt, 0).UTC())
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", want, err)
	}
	err = filepath.Walk(got, func(p string, _ os.FileInfo, err error) error {
		if err != nil || p == got {
			return err
		}
		if rel, _ := filepath.Rel(got, p); !seen[rel] {
			t.Errorf("%s: not in the source tree", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", got, err)
	}
}

// TestDollyPlusSession runs dolly+'s 'dollyS -v -f CONFIG' against three
// 'dollyC -v' nodes with 'iofiles 3': a raw file ('> out.raw'), a .tar.gz
// and a .cpio.gz unpacked ('>>') under treeA and treeB: the sender exits
// 0, every node is done and verified, the raw output is identical to its
// input and both trees equal the source tree (types, modes, symlinks,
// contents, mtimes) on every node.
func TestDollyPlusSession(t *testing.T) {
	dir := workDir(t)
	src := filepath.Join(dir, "src")
	makeTree(t, src, rootfsTree)
	raw := randomFile(t, 8<<20, 3)
	tgz := filepath.Join(dir, "rootfs.tar.gz")
	tarGz(t, src, tgz)
	cgz := filepath.Join(dir, "rootfs.cpio.gz")
	haveCpio := cpioGz(t, src, cgz)

	files := []string{raw + " > out.raw", tgz + " >> treeA"}
	if haveCpio {
		files = append(files, cgz+" >> treeB")
	}
	cfg := filepath.Join(dir, "dollyplus.cfg")
	text := fmt.Sprintf("iofiles %d\n%s\nserver mgmt\nfirstclient node31\nlastclient node33\nclients 3\nnode31\nnode32\nnode33\nendconfig\n",
		len(files), strings.Join(files, "\n"))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, dir, addrs(31, 32, 33), nodeOpts{prog: "dollyC"})
	r := send(t, dir, 0, "dollyS", "-vf", cfg) // as the dolly+ page writes it
	wantExit(t, r, 0)
	allDone(t, r, []string{"node31", "node32", "node33"})
	waitExit(t, nodes, 0)
	for _, nd := range nodes {
		sameFile(t, raw, filepath.Join(nd.dir, "out.raw"))
		compareTree(t, src, filepath.Join(nd.dir, "treeA"))
		if haveCpio {
			compareTree(t, src, filepath.Join(nd.dir, "treeB"))
		}
	}
	if !haveCpio {
		t.Skip("cpio(1) is not installed: the .cpio.gz part of the session was not run (the raw and .tar.gz parts passed); apt-get install cpio")
	}
}

// TestStdoutOutput sends with 'dolly -s -H ADDR -I IN -O -' to one 'dolly
// -v' client: the client's standard output is byte-identical to the input
// (random data with zero runs, which travel as holes) and holds nothing
// else.
func TestStdoutOutput(t *testing.T) {
	dir := workDir(t)
	in := filepath.Join(dir, "in.img")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, part := range []struct {
		zero bool
		n    int64
	}{{false, 8 << 20}, {true, 2 << 20}, {false, 3<<20 + 5}, {true, 3000}, {false, 5 << 20}, {true, 1 << 20}} {
		if part.zero {
			_, err = f.Write(make([]byte, part.n))
		} else {
			err = writeRandom(f, part.n, byte(50+i))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	nodes := startNodes(t, dir, addrs(40), nodeOpts{prog: "dolly"})
	r := send(t, dir, 0, "dolly", "-s", "-H", addr(40), "-I", in, "-O", "-")
	wantExit(t, r, 0)
	allDone(t, r, addrs(40))
	waitExit(t, nodes, 0)
	sameFile(t, in, nodes[0].outPath)
	emptyDir(t, nodes[0].dir)
}

// TestFanout2 builds a binary tree of 5 nodes, once with 'herd send
// --fanout 2' and once with a dolly configuration file saying 'fanout 2':
// the sender says it built a fanout-2 ring, exits 0, every node is done
// and verified and every output equals the input.
func TestFanout2(t *testing.T) {
	in := randomFile(t, 32<<20, 4)
	t.Run("herd-send", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, addrs(seq(1, 5)...), nodeOpts{})
		r := send(t, dir, 0, "herd", "send", "-v", "--fanout", "2", "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
		wantExit(t, r, 0)
		containsAll(t, "sender's standard error", r.stderr, "fanout 2")
		allDone(t, r, nodeAddrs(nodes))
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
	})
	t.Run("dolly-config", func(t *testing.T) {
		dir := workDir(t)
		names := []string{"node1", "node2", "node3", "node4", "node5"}
		cfg := filepath.Join(dir, "fanout.cfg")
		text := fmt.Sprintf("infile %s\noutfile out.img\nfanout 2\nserver mgmt\nfirstclient node1\nlastclient node5\nclients 5\n%s\nendconfig\n", in, strings.Join(names, "\n"))
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		nodes := startNodes(t, dir, addrs(seq(1, 5)...), nodeOpts{prog: "dolly"})
		r := send(t, dir, 0, "dolly", "-v", "-S", "herdtest", "-f", cfg)
		wantExit(t, r, 0)
		containsAll(t, "sender's standard error", r.stderr, "fanout 2")
		allDone(t, r, names)
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
	})
}

// readmeDollytab is the configuration file of dolly's README ("EXAMPLE":
// node0 clones /dev/sda5 to node1..node15); the test replaces the infile
// and outfile lines.
const readmeDollytab = `infile /dev/sda5
outfile /dev/sda5
server node0
firstclient node1
lastclient node15
clients 15
node1
node2
node3
node4
node5
node6
node7
node8
node9
node10
node11
node12
node13
node14
node15
endconfig
`

// TestReadmeDollytab runs the README's dollytab.cfg as a real session: 15
// 'dolly -v' clients on 127.0.1.1..15, named node1..node15 through the
// sender's /etc/hosts, and 'dolly -v -S -f dollytab.cfg' with a 16 MiB
// infile and a relative outfile: exit 0, all 15 done and verified, 15
// identical outputs.
func TestReadmeDollytab(t *testing.T) {
	dir := workDir(t)
	in := randomFile(t, 16<<20, 5)
	text := strings.Replace(readmeDollytab, "infile /dev/sda5", "infile "+in, 1)
	text = strings.Replace(text, "outfile /dev/sda5", "outfile sda5.img", 1)
	if err := os.WriteFile(filepath.Join(dir, "dollytab.cfg"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 1; i <= 15; i++ {
		names = append(names, "node"+strconv.Itoa(i))
	}
	nodes := startNodes(t, dir, addrs(seq(1, 15)...), nodeOpts{prog: "dolly"})
	r := send(t, dir, 0, "dolly", "-v", "-S", "herdtest", "-f", "dollytab.cfg")
	wantExit(t, r, 0)
	allDone(t, r, names)
	waitExit(t, nodes, 0)
	for _, nd := range nodes {
		sameFile(t, in, filepath.Join(nd.dir, "sda5.img"))
	}
}

// TestDollyCommandLine exercises dolly's own options against real clients.
func TestDollyCommandLine(t *testing.T) {
	in := randomFile(t, 16<<20, 6)
	hosts := addrs(20, 21, 22)

	// -I - reads standard input, here a pipe ("-I [FILE|-]" in dolly's
	// messages): the image arrives whole on every client, verified.
	t.Run("stdin", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, hosts, nodeOpts{prog: "dolly"})
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(filepath.Join(binDir, "dolly"), "-S", "herdtest", "-H", strings.Join(hosts, ","), "-I", "-", "-O", "out.img")
		cmd.Stdin = struct{ io.Reader }{f} // not an *os.File: exec makes a pipe
		start := time.Now()
		r := finish(t, startCmd(t, dir, "sender-stdin", dir, cmd), start, 0)
		wantExit(t, r, 0)
		allDone(t, r, hosts)
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
	})

	// -H with an address range, and -o LOGFILE appending dolly's lines:
	// once with -v (with the Nr of hosts, MBytes/s and Aggregate lines),
	// once without.
	t.Run("range-and-log", func(t *testing.T) {
		dir := workDir(t)
		logFile := filepath.Join(dir, "dolly.log")
		if err := os.WriteFile(logFile, []byte("earlier line\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for run, verbose := range []bool{true, false} {
			rdir := filepath.Join(dir, fmt.Sprintf("run%d", run+1))
			if err := os.Mkdir(rdir, 0o755); err != nil {
				t.Fatal(err)
			}
			nodes := startNodes(t, rdir, hosts, nodeOpts{prog: "dolly"})
			args := []string{"-S", "herdtest", "-H", "127.0.1.20-22", "-I", in, "-O", "out.img", "-o", logFile}
			if verbose {
				args = append([]string{"-v"}, args...)
			}
			r := send(t, dir, 0, "dolly", args...)
			wantExit(t, r, 0)
			allDone(t, r, hosts)
			waitExit(t, nodes, 0)
			for _, nd := range nodes {
				sameFile(t, in, filepath.Join(nd.dir, "out.img"))
			}
		}
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		// dolly 0.72's lines (transmit.c): verbose, then the statistics
		// line whose columns scripts split: 1460 (always), clients,
		// seconds, MB/s, aggregate MB/s.
		num := `[0-9]+\.[0-9]+`
		stats := ` {5}1460 {8}3 *` + num + `  ` + num + `  ` + num + `  `
		want := []string{
			`earlier line`,
			`outfile = 'out\.img'`, `Standard TCP segment size : 1460 Bytes \(1514 Byte eth\)`, `Server : 'herdtest'`,
			`Nr of childs = 1`, `Nr of hosts = 3`, `Time: ` + num + ` sec`, `MBytes/s: ` + num, `Aggregate MBytes/s: ` + num,
			`outfile = 'out\.img'`, stats,
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("log file has %d lines, want %d (two appended blocks after the earlier line):\n%s", len(lines), len(want), b)
		}
		for i, w := range want {
			if !regexp.MustCompile("^" + w + "$").MatchString(lines[i]) {
				t.Errorf("log line %d is %q, want /^%s$/", i+1, lines[i], w)
			}
		}
		// Aggregate = MB/s x 3 verified clients, on the stats line and
		// in the verbose lines.
		value := func(l string) float64 {
			v, _ := strconv.ParseFloat(l[strings.LastIndex(l, " ")+1:], 64)
			return v
		}
		f := strings.Fields(lines[10])
		for _, p := range [][2]float64{{value(lines[7]), value(lines[8])}, {parseF(f[3]), parseF(f[4])}} {
			rate, agg := p[0], p[1]
			if rate <= 0 || agg < 3*rate-0.01 || agg > 3*rate+0.01 {
				t.Errorf("aggregate %v is not 3 x %v", agg, rate)
			}
		}
	})

	// -t 2: dummy mode ends in bounded time, every client verified, and
	// nothing is written on the clients.
	t.Run("dummy", func(t *testing.T) {
		dir := workDir(t)
		nodes := startNodes(t, dir, hosts, nodeOpts{prog: "dolly"})
		r := send(t, dir, 30*time.Second, "dolly", "-v", "-S", "herdtest", "-t", "2", "-H", "127.0.1.20-22")
		wantExit(t, r, 0)
		for _, l := range checkSummary(t, r, hosts, nil) {
			if l.bytes <= 0 {
				t.Errorf("dummy mode: node %s received %d bytes", l.name, l.bytes)
			}
		}
		if r.elapsed < 1500*time.Millisecond {
			t.Errorf("dummy mode with -t 2 ended after %v", r.elapsed)
		}
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			emptyDir(t, nd.dir)
		}
		t.Logf("dolly -t 2 took %v", r.elapsed.Round(time.Millisecond))
	})

	// dollyC with the dolly+ page's --report 12000 --cntlport 12001
	// --dataport 12002 and dollyS with -P 12000, which means the same, and
	// nothing on dolly's default ports.
	t.Run("dollyplus-portbase", func(t *testing.T) {
		dir := workDir(t)
		pb := addrs(23, 24)
		nodes := startNodes(t, dir, pb, nodeOpts{prog: "dollyC", args: []string{"--report", "12000", "--cntlport", "12001", "--dataport", "12002"}, reportPort: 12000})
		for _, a := range pb {
			if _, err := reportLine(a + ":9996"); err == nil {
				t.Errorf("dollyC -P 12000 answers on %s:9996 too", a)
			}
		}
		cfg := filepath.Join(dir, "pb.cfg")
		text := fmt.Sprintf("iofiles 1\n%s > out.img\nserver mgmt\nfirstclient node23\nlastclient node24\nclients 2\nnode23\nnode24\nendconfig\n", in)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		r := send(t, dir, 0, "dollyS", "-v", "-P", "12000", "-f", cfg)
		wantExit(t, r, 0)
		allDone(t, r, []string{"node23", "node24"})
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			sameFile(t, in, filepath.Join(nd.dir, "out.img"))
		}
	})

	// -D DIR -X PATTERNS -O TARGET copies a tree, leaving out the
	// excluded names wherever they are.
	t.Run("dirs-exclude", func(t *testing.T) {
		dir := workDir(t)
		keep := []treeEntry{
			{path: "keep.txt", kind: 'f', mode: 0o644, data: "keep\n"},
			{path: "sub", kind: 'd', mode: 0o750},
			{path: "sub/keep2.txt", kind: 'f', mode: 0o600, data: "keep too\n"},
			{path: "sub/link", kind: 'l', data: "keep2.txt"},
			{path: "sub/big", kind: 'f', mode: 0o644, size: 3 << 20},
		}
		skip := []treeEntry{
			{path: "skip.tmp", kind: 'f', mode: 0o644, data: "skip\n"},
			{path: "sub/deep.tmp", kind: 'f', mode: 0o644, data: "skip\n"},
			{path: "skipme", kind: 'd', mode: 0o755},
			{path: "skipme/inside", kind: 'f', mode: 0o644, data: "skip\n"},
			{path: "sub/skipme", kind: 'f', mode: 0o644, data: "skip\n"},
		}
		src := filepath.Join(dir, "data")
		makeTree(t, src, append(append([]treeEntry{}, keep...), skip...))
		// The expected tree: the source without the excluded entries, with
		// the source's modes and times.
		want := filepath.Join(dir, "want")
		makeTree(t, want, keep)
		copyMeta(t, src, want)

		nodes := startNodes(t, dir, addrs(25, 26), nodeOpts{prog: "dolly"})
		r := send(t, dir, 0, "dolly", "-v", "-S", "herdtest", "-H", addr(25)+","+addr(26), "-D", src, "-X", "*.tmp,skipme", "-O", "target")
		wantExit(t, r, 0)
		allDone(t, r, addrs(25, 26))
		waitExit(t, nodes, 0)
		for _, nd := range nodes {
			compareTree(t, want, filepath.Join(nd.dir, "target", "data"))
		}
	})
}

// copyMeta gives every entry of dst the mode and mtime of the same entry
// in src (deepest first).
func copyMeta(t *testing.T, src, dst string) {
	t.Helper()
	var all []string
	_ = filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink == 0 {
			all = append(all, p)
		}
		return err
	})
	sort.Sort(sort.Reverse(sort.StringSlice(all)))
	for _, p := range all {
		rel, _ := filepath.Rel(dst, p)
		fi, err := os.Stat(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInactivityTimeout freezes the middle node of three (SIGSTOP, by its
// PID) as soon as its output is non-empty during a 256 MiB transfer: with
// '-a 3' (dolly) or '-a 3s' (herd send) the sender exits non-zero within
// 60 s and reports that node failed.
func TestInactivityTimeout(t *testing.T) {
	in := randomFile(t, 256<<20, 1)
	for _, tc := range []struct {
		name, node, prog string
		args             []string
	}{
		{"dolly", "dolly", "dolly", []string{"-S", "herdtest", "-a", "3"}},
		{"herd-send", "herd", "herd", []string{"send", "-a", "3s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := workDir(t)
			nodes := startNodes(t, dir, addrs(1, 2, 3), nodeOpts{prog: tc.node})
			frozen := nodes[1]
			args := append(append([]string{}, tc.args...), "-H", strings.Join(nodeAddrs(nodes), ","), "-I", in, "-O", "out.img")
			start := time.Now()
			p := startSend(t, dir, tc.prog, args...)
			out := filepath.Join(frozen.dir, "out.img")
			deadline := time.Now().Add(30 * time.Second)
			for {
				if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
					break
				}
				if p.exited() || time.Now().After(deadline) {
					t.Fatalf("node %s's output never grew before the sender ended or 30 s passed:\n%s", frozen.addr, p.dump())
				}
				time.Sleep(2 * time.Millisecond)
			}
			if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped := time.Now()
			fi, _ := os.Stat(out)
			t.Logf("stopped node %s after %v with %d bytes written", frozen.addr, stopped.Sub(start).Round(time.Millisecond), fi.Size())
			r := finish(t, p, stopped, 60*time.Second)
			if r.code == 0 {
				t.Fatalf("sender exited 0 with node %s frozen:\n%v", frozen.addr, r)
			}
			var found bool
			for _, l := range parseSummary(t, r) {
				if l.name == frozen.addr {
					found = true
					if l.state != "failed" || l.verified != "no" {
						t.Errorf("frozen node %s is %s, VERIFIED %s; want failed, no\n%v", l.name, l.state, l.verified, r)
					}
					t.Logf("frozen node reported: %s (%s)", l.state, l.reason)
				}
			}
			if !found {
				t.Errorf("the summary does not list the frozen node %s:\n%v", frozen.addr, r)
			}
			t.Logf("sender exited %d %v after the node froze; its summary:\n%s", r.code, r.elapsed.Round(time.Millisecond), r.stdout)
		})
	}
}

func parseF(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// TestSameConfigEverywhere: as Deploy_SLE_cluster does, the server and
// every client are started with the same configuration file ('dolly -v -f
// dolly.cfg' on the clients, '-S NAME' on the server), in the classic
// format (whose server is called "server", a keyword) and in dolly 0.72's
// (infile, outfile, the clients, endconfig). The file's infile is
// relative and exists only in the server's directory: the clients do not
// look for it. Clients say dolly 0.72's "I am a dolly client, waiting for
// a server..." once they listen and its "Total Transferred MB: 8, MB/s:
// R" then "All data Transmitted." at the end, and the server "Transfert
// to all client nodes done." once every client verified its data, then
// "All data Transmitted.", as side-by-side runs of dolly 0.72 print them. A client the file
// does not list refuses to start (exit 2), naming the file.
func TestSameConfigEverywhere(t *testing.T) {
	in := randomFile(t, 8<<20, 9)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	hosts := addrs(30, 31, 32)
	for _, tt := range []struct{ name, text string }{
		{"classic", "infile in.img\noutfile out.img\nserver server\nfirstclient " + hosts[0] + "\nlastclient " + hosts[2] +
			"\nclients 3\n" + strings.Join(hosts, "\n") + "\nendconfig\n"},
		{"dolly 0.72", "infile in.img\noutfile out.img\n" + strings.Join(hosts, "\n") + "\nendconfig\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := workDir(t)
			if err := os.WriteFile(filepath.Join(dir, "in.img"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "dolly.cfg")
			if err := os.WriteFile(cfg, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			nodes := startNodes(t, dir, hosts, nodeOpts{prog: "dolly", args: []string{"-f", cfg}})
			for _, nd := range nodes {
				if !strings.Contains(nd.stderr(), "I am a dolly client, waiting for a server...\n") {
					t.Errorf("node %s, listening, has not said dolly's line:\n%s", nd.addr, nd.stderr())
				}
			}
			r := send(t, dir, 0, "dolly", "-v", "-S", "server", "-f", cfg)
			wantExit(t, r, 0)
			allDone(t, r, hosts)
			waitExit(t, nodes, 0)
			for _, nd := range nodes {
				sameFile(t, in, filepath.Join(nd.dir, "out.img"))
				if !regexp.MustCompile(`\nTotal Transferred MB: 8, MB/s: [0-9]+\.[0-9]{3} \n\nAll data Transmitted\.\n$`).MatchString(nd.stderr()) {
					t.Errorf("node %s has not ended with dolly's totals line:\n%s", nd.addr, nd.stderr())
				}
			}
			if !strings.Contains(r.stderr, "\nTransfert to all client nodes done.\nAll data Transmitted.\n") {
				t.Errorf("the server has not said dolly's last line:\n%s", r.stderr)
			}
		})
	}

	// A machine the file does not list.
	cfg := filepath.Join(t.TempDir(), "dolly.cfg")
	if err := os.WriteFile(cfg, []byte("infile in.img\noutfile out.img\n"+strings.Join(hosts, "\n")+"\nendconfig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "dolly"), "-f", cfg, "--listen", addr(39)).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), cfg) || !strings.Contains(string(out), "not among the file's clients") {
		t.Errorf("a client the file does not list: %v\n%s", err, out)
	}
}

// TestSystemdActivation: openSUSE's dolly.socket and dolly.service, as
// shipped: systemd listens on each client's port 9996 and, when the server
// started with -d connects there, starts "dolly -v -P ${PASS} -a
// ${TIMEOUT}" with HOSTNAME=%H and the socket as LISTEN_FDS.
// systemd-socket-activate plays systemd. No client runs before the
// server's -d reaches it; then every client writes the image, verified.
func TestSystemdActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate (Debian package systemd) is needed: %v", err)
	}
	dir := workDir(t)
	in := randomFile(t, 4<<20, 11)
	hosts := addrs(40, 41, 42)
	var nodes []*node
	for i, a := range hosts {
		nd := filepath.Join(dir, "node-"+a)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(activate, "-l", net.JoinHostPort(a, "9996"), "-E", fmt.Sprintf("HOSTNAME=client%d", i+1),
			filepath.Join(binDir, "dolly"), "-v", "-P", "opensuse", "-a", "180", "--listen", a)
		nodes = append(nodes, &node{proc: startCmd(t, dir, "node-"+a, nd, cmd), addr: a, dir: nd})
	}
	for _, n := range nodes {
		deadline := time.Now().Add(readyTimeout)
		for !strings.Contains(n.stderr(), "Listening on") {
			if n.exited() || time.Now().After(deadline) {
				t.Fatalf("systemd-socket-activate for %s is not listening:\n%s", n.addr, n.dump())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Contains(n.stderr(), "I am a dolly client") {
			t.Fatalf("dolly on %s started before the server asked for it:\n%s", n.addr, n.dump())
		}
	}
	r := send(t, dir, 0, "dolly", "-d", "-v", "-P", "opensuse", "-S", "server", "-H", strings.Join(hosts, ","), "-I", in, "-O", "out.img")
	wantExit(t, r, 0)
	allDone(t, r, hosts)
	waitExit(t, nodes, 0)
	for _, n := range nodes {
		sameFile(t, in, filepath.Join(n.dir, "out.img"))
		if !strings.Contains(n.stderr(), "I am a dolly client, waiting for a server...") {
			t.Errorf("node %s: no client was started:\n%s", n.addr, n.dump())
		}
	}
}
