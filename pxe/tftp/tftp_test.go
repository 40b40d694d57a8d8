package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/internal/logging"
)

// tree is a boot tree beside a directory that must stay unreachable.
type tree struct {
	root, outside string
	files         map[string][]byte // relative to root
}

const bigSize = 30 << 20

func newTree(t testing.TB) *tree {
	t.Helper()
	dir := t.TempDir()
	tr := &tree{root: filepath.Join(dir, "boot"), outside: filepath.Join(dir, "secret"), files: map[string][]byte{}}
	for _, d := range []string{tr.root, tr.outside, filepath.Join(tr.root, "pxelinux.cfg"), filepath.Join(tr.root, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	put := func(name string, data []byte) {
		tr.files[name] = data
		if err := os.WriteFile(filepath.Join(tr.root, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("pxelinux.0", randBytes(t, 42_000))
	put("pxelinux.cfg/default", []byte("DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"))
	put("empty", nil)
	put("exact", randBytes(t, 4*512)) // a multiple of the block size: ends with an empty block
	put("x", randBytes(t, 100_000))   // a short name for a long tsize: see longOACK
	put("images/medium.img", randBytes(t, 4<<20))
	put("images/big.img", randBytes(t, bigSize))
	if err := os.WriteFile(filepath.Join(tr.outside, "secret.txt"), []byte("do not serve\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"link-in":      "pxelinux.0",                               // stays inside: served
		"link-out":     filepath.Join(tr.outside, "secret.txt"),    // absolute, outside
		"link-up":      "../secret/secret.txt",                     // relative, outside
		"link-dir-out": tr.outside,                                 // a directory outside
		"images/up":    filepath.Join("..", "..", "secret"),        // climbs from a subdirectory
		"link-passwd":  "/etc/passwd",                              // the classic
		"link-loop":    "link-loop",                                // loops
		"link-missing": filepath.Join(tr.outside, "no-such-thing"), // outside, dangling
	} {
		if err := os.Symlink(target, filepath.Join(tr.root, link)); err != nil {
			t.Fatal(err)
		}
	}
	tr.files["link-in"] = tr.files["pxelinux.0"]
	return tr
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// logger collects log lines for failing tests.
type logger struct {
	mu    sync.Mutex
	lines []string
}

func (l *logger) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// logger is a slog.Logger (every level) that collects into l.
func (l *logger) logger() *slog.Logger { return logging.Func(l.add) }

func (l *logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// start serves cfg on 127.0.0.1 (an ephemeral port unless cfg.Addr is
// set) until the test ends, and checks Serve returns nil on cancel.
func start(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	log := &logger{}
	if cfg.Log == nil {
		cfg.Log = log.logger()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", log)
		}
	})
	return s, s.Addr().String()
}

// result is what get received.
type result struct {
	data []byte
	oack map[string]string // nil when the server sent no OACK
	from *net.UDPAddr      // the server's transfer ID
}

// get fetches name from addr over RFC 1350 with the options of RFC 2347
// ("blksize", "1468", ...), one block per ACK; it is the test's own
// client, strict where servers may not be: the OACK must come first and
// only once, blocks must not be longer than negotiated, a TID change is
// an error. A server ERROR is returned as "code N: message".
func get(addr, name string, opts ...string) (*result, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	if _, err := c.WriteToUDP(rrq(name, opts...), to); err != nil {
		return nil, err
	}
	res := &result{}
	blksize, next := 512, uint16(1)
	buf := make([]byte, 65536)
	ack := func(block uint16) error {
		_, err := c.WriteToUDP([]byte{0, 4, byte(block >> 8), byte(block)}, res.from)
		return err
	}
	for {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return res, err
		}
		pkt := buf[:n]
		if res.from == nil {
			res.from = from
		} else if from.String() != res.from.String() {
			return res, fmt.Errorf("datagram from %s during a transfer from %s", from, res.from)
		}
		if n < 4 {
			return res, fmt.Errorf("short datagram %q", pkt)
		}
		switch binary.BigEndian.Uint16(pkt) {
		case 5:
			return res, errors.New(tftpError(pkt))
		case 6:
			if res.oack != nil || next != 1 {
				return res, fmt.Errorf("OACK %q after the transfer started", pkt)
			}
			res.oack = parseOACK(pkt)
			if v, ok := res.oack["blksize"]; ok {
				if _, err := fmt.Sscan(v, &blksize); err != nil {
					return res, fmt.Errorf("OACK blksize %q", v)
				}
			}
			if err := ack(0); err != nil {
				return res, err
			}
		case 3:
			block, data := binary.BigEndian.Uint16(pkt[2:]), pkt[4:]
			if len(data) > blksize {
				return res, fmt.Errorf("block %d of %d bytes, blksize %d", block, len(data), blksize)
			}
			if block != next { // a retransmission: ACK it again
				if err := ack(block); err != nil {
					return res, err
				}
				continue
			}
			res.data = append(res.data, data...)
			if err := ack(block); err != nil {
				return res, err
			}
			next++
			if len(data) < blksize {
				return res, nil
			}
		default:
			return res, fmt.Errorf("unexpected datagram %q", pkt)
		}
	}
}

// parseOACK returns an OACK's options.
func parseOACK(pkt []byte) map[string]string {
	m := map[string]string{}
	f := strings.Split(string(bytes.TrimSuffix(pkt[2:], []byte{0})), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}

func TestGet(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	size := func(name string) string { return fmt.Sprint(len(tr.files[name])) }
	for _, tc := range []struct {
		name string
		file string
		opts []string
		oack map[string]string
	}{
		{"no options", "pxelinux.0", nil, nil},
		{"tsize", "pxelinux.0", []string{"tsize", "0"}, map[string]string{"tsize": size("pxelinux.0")}},
		{"leading slash", "/pxelinux.0", []string{"tsize", "0"}, map[string]string{"tsize": size("pxelinux.0")}},
		{"subdirectory", "pxelinux.cfg/default", nil, nil},
		{"symlink inside", "link-in", nil, nil},
		// The library drops tsize 0 from the OACK (it takes "0" for "not answered").
		{"empty file", "empty", []string{"tsize", "0"}, nil},
		{"multiple of blksize", "exact", nil, nil},
		{"blksize 1468", "images/medium.img", []string{"blksize", "1468", "tsize", "0"}, map[string]string{"blksize": "1468", "tsize": size("images/medium.img")}},
		// RFC 7440 windowsize is not negotiated: the transfer is lockstep.
		{"windowsize ignored", "images/medium.img", []string{"blksize", "1468", "windowsize", "16"}, map[string]string{"blksize": "1468"}},
		{"big blksize", "images/big.img", []string{"blksize", "8192"}, map[string]string{"blksize": "8192"}},
		{"largest blksize", "images/medium.img", []string{"blksize", "65464"}, map[string]string{"blksize": "65464"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := get(addr, tc.file, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			want := tr.files[strings.TrimPrefix(tc.file, "/")]
			if !bytes.Equal(res.data, want) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(res.data), len(want))
			}
			if d := cmp.Diff(tc.oack, res.oack); d != "" {
				t.Errorf("OACK (-want +got):\n%s", d)
			}
		})
	}
}

// rrq builds a read request datagram.
func rrq(name string, opts ...string) []byte {
	b := []byte{0, 1}
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, "octet"...)
	b = append(b, 0)
	for _, o := range opts {
		b = append(b, o...)
		b = append(b, 0)
	}
	return b
}

// exchange sends pkt to addr and returns the first datagram that comes
// back (from whichever port) with its source, or nil after wait. A
// transfer the reply starts is ended with an ERROR, so that the server
// does not wait for ACKs.
func exchange(t testing.TB, addr string, pkt []byte, wait time.Duration) ([]byte, *net.UDPAddr) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDP(pkt, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil, nil
	}
	if op := binary.BigEndian.Uint16(buf); n >= 2 && (op == 3 || op == 6) {
		c.WriteToUDP([]byte("\x00\x05\x00\x00test done\x00"), from)
	}
	return buf[:n], from
}

// tftpError decodes an ERROR datagram as "code N: message".
func tftpError(b []byte) string {
	if len(b) < 5 || binary.BigEndian.Uint16(b) != 5 {
		return fmt.Sprintf("not an error: %q", b)
	}
	return fmt.Sprintf("code %d: %s", binary.BigEndian.Uint16(b[2:]), bytes.TrimRight(b[4:], "\x00"))
}

// describe sums up a server's reply: "none", "code N: message", "DATA
// block N, M bytes" or "OACK name=value ..." (sorted).
func describe(b []byte) string {
	switch {
	case b == nil:
		return "none"
	case len(b) >= 4 && binary.BigEndian.Uint16(b) == 3:
		return fmt.Sprintf("DATA block %d, %d bytes", binary.BigEndian.Uint16(b[2:]), len(b)-4)
	case len(b) >= 2 && binary.BigEndian.Uint16(b) == 6:
		var kv []string
		for k, v := range parseOACK(b) {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		return "OACK " + strings.Join(kv, " ")
	}
	return tftpError(b)
}

func TestRefused(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	secret := filepath.Join(tr.outside, "secret.txt")
	// The library sends every error with code 1; the message tells.
	const access, notFound = "code 1: access violation", "code 1: file not found"
	for _, tc := range []struct{ name, file, want string }{
		{"dotdot", "../secret/secret.txt", access},
		{"dotdot after slash", "/../secret/secret.txt", access},
		{"dotdot inside", "images/../../secret/secret.txt", access},
		{"dotdot that stays inside", "images/../pxelinux.0", access},
		{"absolute outside", "/" + secret, access},
		{"absolute after one slash", secret, notFound}, // = <root>/<secret path>
		{"etc passwd", "/etc/passwd", notFound},
		{"symlink absolute outside", "link-out", access},
		{"symlink relative outside", "link-up", access},
		{"symlink dir outside", "link-dir-out/secret.txt", access},
		{"symlink from subdir", "images/up/secret.txt", access},
		{"symlink passwd", "link-passwd", access},
		{"symlink loop", "link-loop", access},
		{"symlink dangling outside", "link-missing", access},
		{"missing", "nothing-here", notFound},
		{"directory", "images", notFound},
		{"root", "/", notFound},
		{"empty name", "", notFound},
		{"through a file", "pxelinux.0/x", notFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply, _ := exchange(t, addr, rrq(tc.file), 3*time.Second)
			if got := describe(reply); got != tc.want {
				t.Errorf("RRQ %q: %s, want %s", tc.file, got, tc.want)
			}
		})
	}
}

func TestWriteRefused(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	wrq := []byte("\x00\x02new.bin\x00octet\x00")
	reply, _ := exchange(t, addr, wrq, 3*time.Second)
	if got, want := describe(reply), "code 1: write requests are not allowed"; got != want {
		t.Errorf("WRQ: %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(tr.root, "new.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new.bin exists after a refused write: %v", err)
	}
}

// hostile are datagrams that crashed, or would exhaust, a TFTP server
// library, with what github.com/pin/tftp/v3 v3.1.0 answers to them (see
// the package comment). TestHostileRequests checks the answers;
// FuzzDatagram starts from them.
var hostile = []struct {
	name string
	pkt  []byte
	want string // describe's summary of the first reply
}{
	// pack.ag/tftp panicked on a read request without NUL.
	{"bare RRQ opcode", []byte{0, 1}, "none"},
	{"RRQ without NUL", []byte("\x00\x01pxelinux.0"), "none"},
	{"RRQ of three bytes", []byte("\x00\x01\x00"), "none"},
	{"RRQ of four bytes", []byte("\x00\x01ab"), "none"},
	// The library serves a request without a mode, or whose mode lacks
	// its NUL, in octet mode.
	{"RRQ without mode", []byte("\x00\x01pxelinux.0\x00"), "DATA block 1, 512 bytes"},
	{"mode without NUL", []byte("\x00\x01pxelinux.0\x00octet"), "DATA block 1, 512 bytes"},
	{"option without value", []byte("\x00\x01pxelinux.0\x00octet\x00blksize\x00"), "DATA block 1, 512 bytes"},
	// pack.ag/tftp divided by windowsize 0 and sent empty blocks forever
	// at blksize 0. The library ignores windowsize and timeout and any
	// blksize outside 512..65464: no OACK, 512-byte blocks.
	{"windowsize 0", rrq("pxelinux.0", "windowsize", "0"), "DATA block 1, 512 bytes"},
	{"windowsize 65536", rrq("pxelinux.0", "windowsize", "65536"), "DATA block 1, 512 bytes"},
	{"blksize 0", rrq("pxelinux.0", "blksize", "0"), "DATA block 1, 512 bytes"},
	{"blksize 7", rrq("pxelinux.0", "blksize", "7"), "DATA block 1, 512 bytes"},
	{"blksize -1", rrq("pxelinux.0", "blksize", "-1"), "DATA block 1, 512 bytes"},
	{"blksize 65465", rrq("pxelinux.0", "blksize", "65465"), "DATA block 1, 512 bytes"},
	{"blksize overflows", rrq("pxelinux.0", "blksize", "99999999999999999999"), "DATA block 1, 512 bytes"},
	{"blksize x", rrq("pxelinux.0", "blksize", "x", "tsize", "0"), "OACK tsize=42000"},
	{"timeout 0", rrq("pxelinux.0", "timeout", "0"), "DATA block 1, 512 bytes"},
	{"huge window", rrq("pxelinux.0", "blksize", "65464", "windowsize", "65535"), "OACK blksize=65464"},
	{"blksize twice", rrq("pxelinux.0", "blksize", "0", "blksize", "1468"), "OACK blksize=1468"},
	// tsize is answered with the file's size whatever the client sent.
	{"tsize not a number", rrq("pxelinux.0", "tsize", "x"), "OACK tsize=42000"},
	{"tsize 5", rrq("pxelinux.0", "tsize", "5"), "OACK tsize=42000"},
	// The library builds the OACK in a buffer of blksize+4 bytes, and
	// the tsize it answers can be longer than the one asked for: see
	// longOACK.
	{"OACK longer than the request", longOACK(), "none"},
	{"oversized request", append(rrq(strings.Repeat("a", 600)), "blksize\x001468\x00"...), "none"},
	{"empty name", rrq(""), "code 1: file not found"},
	{"write request", []byte("\x00\x02x\x00octet\x00"), "code 1: write requests are not allowed"},
	{"stray ACK", []byte{0, 4, 0, 1}, "none"},
	{"stray DATA", []byte{0, 3, 0, 1, 'x'}, "none"},
	{"stray ERROR", []byte("\x00\x05\x00\x00x\x00"), "none"},
	{"stray OACK", []byte("\x00\x06blksize\x00512\x00"), "none"},
	{"unknown opcode", []byte{0, 9, 0, 0}, "none"},
	{"one byte", []byte{0}, "none"},
	{"empty datagram", []byte{}, "none"},
}

// longOACK is a 516-byte read request (the most the library reads) for
// "x", 100000 bytes, with an empty mode, a blksize of 512 written with
// leading zeros (echoed as sent) and an empty tsize: answered with
// tsize=100000, the OACK would be 519 bytes, 3 more than its buffer.
func longOACK() []byte {
	head, tail := "\x00\x01x\x00\x00blksize\x00", "512\x00tsize\x00\x00"
	return []byte(head + strings.Repeat("0", 516-len(head)-len(tail)) + tail)
}

// TestHostileRequests sends the datagrams in hostile and checks the
// answers, and that the server still serves afterwards (a panic in the
// library's goroutines would end the test binary).
func TestHostileRequests(t *testing.T) {
	tr := newTree(t)
	log := &logger{}
	_, addr := start(t, Config{Root: tr.root, Log: log.logger()})
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			wait := 3 * time.Second
			if tc.want == "none" {
				wait = 300 * time.Millisecond
			}
			reply, _ := exchange(t, addr, tc.pkt, wait)
			if got := describe(reply); got != tc.want {
				t.Errorf("answered %s, want %s", got, tc.want)
			}
		})
	}
	res, err := get(addr, "pxelinux.0")
	if err != nil || !bytes.Equal(res.data, tr.files["pxelinux.0"]) {
		t.Fatalf("after the hostile requests: %v", err)
	}
	if !strings.Contains(log.String(), ` x: aborted after 0 of 100000 bytes: tftp library panicked: runtime error: index out of range`) {
		t.Errorf("no recovered panic for longOACK in the log:\n%s", log)
	}
}

// FuzzDatagram sends arbitrary datagrams to a server: the library must
// not crash, and what it answers must be an ERROR, an OACK or the first
// DATA block. The server's parser is the library's; this is its fuzz
// target here.
func FuzzDatagram(f *testing.F) {
	for _, tc := range hostile {
		f.Add(tc.pkt)
	}
	f.Add(rrq("pxelinux.0", "blksize", "1468", "tsize", "0"))
	tr := newTree(f)
	_, addr := start(f, Config{Root: tr.root})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		reply, _ := exchange(t, addr, pkt, 100*time.Millisecond)
		if reply == nil {
			return
		}
		switch d := describe(reply); {
		case strings.HasPrefix(d, "code "), strings.HasPrefix(d, "OACK "), strings.HasPrefix(d, "DATA block 1,"):
		default:
			t.Fatalf("%q answered with %s", pkt, d)
		}
	})
}

func TestObserveAndGenerate(t *testing.T) {
	tr := newTree(t)
	type seen struct{ Remote, File string }
	var (
		mu   sync.Mutex
		got  []seen
		gens []string
	)
	_, addr := start(t, Config{
		Root: tr.root,
		Observe: func(remote net.Addr, file string) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, seen{remote.(*net.UDPAddr).IP.String(), file})
		},
		Generate: func(remote net.Addr, file string) ([]byte, bool) {
			mu.Lock()
			defer mu.Unlock()
			gens = append(gens, file)
			if file == "pxelinux.cfg/01-52-54-00-00-00-01" {
				return []byte("DEFAULT install\n"), true
			}
			return nil, false
		},
	})
	res, err := get(addr, "/pxelinux.cfg/01-52-54-00-00-00-01", "tsize", "0")
	if err != nil || string(res.data) != "DEFAULT install\n" || res.oack["tsize"] != "16" {
		t.Fatalf("generated file: %+v, %v", res, err)
	}
	if _, err := get(addr, "pxelinux.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(addr, "missing"); err == nil {
		t.Fatal("missing file served")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []seen{{"127.0.0.1", "pxelinux.cfg/01-52-54-00-00-00-01"}, {"127.0.0.1", "pxelinux.0"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Observe calls (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"pxelinux.cfg/01-52-54-00-00-00-01", "pxelinux.0", "missing"}, gens); d != "" {
		t.Errorf("Generate calls (-want +got):\n%s", d)
	}
}

func TestServeLifecycle(t *testing.T) {
	tr := newTree(t)
	if _, err := New(Config{Root: filepath.Join(tr.root, "nope"), Addr: "127.0.0.1:0"}); err == nil {
		t.Error("New with a missing root: no error")
	}
	if _, err := New(Config{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("New without a root: no error")
	}
	s, err := New(Config{Root: tr.root, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Root: tr.root, Addr: s.Addr().String()}); err == nil {
		t.Error("second server on the same port: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if _, err := get(s.Addr().String(), "pxelinux.0"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Serve: %v", err)
	}
	if err := s.Serve(context.Background()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v, want ErrServerClosed", err)
	}
	// The port is free again.
	s2, err := New(Config{Root: tr.root, Addr: s.Addr().String()})
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Error(err)
	}
	if err := s2.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestShutdownDuringTransfer cancels Serve while a client is reading
// big.img: the client gets an ERROR at its next ACK and Serve returns.
func TestShutdownDuringTransfer(t *testing.T) {
	tr := newTree(t)
	log := &logger{}
	s, err := New(Config{Root: tr.root, Addr: "127.0.0.1:0", Log: log.logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", log)
		}
	}()

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(rrq("images/big.img"), s.Addr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	var last string
	for i := range 200 {
		if i == 3 {
			cancel()
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("after %d blocks: %v", i, err)
		}
		if last = describe(buf[:n]); !strings.HasPrefix(last, "DATA ") {
			break
		}
		c.WriteToUDP([]byte{0, 4, buf[2], buf[3]}, from)
	}
	if want := "code 1: server shutting down"; last != want {
		t.Errorf("client got %s, want %s", last, want)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(shutdownGrace + 2*time.Second):
		t.Fatal("Serve did not return")
	}
	if !strings.Contains(log.String(), "images/big.img: stopped after ") {
		t.Errorf("no stopped transfer in the log")
	}
}

// Tests with the Debian clients: curl (tftp://), tftp-hpa, atftp. Each
// is skipped when its binary is missing; `apt-get install curl tftp-hpa
// atftp` provides them.

func needBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

func run(t *testing.T, dir, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, want %d (content differs)", path, len(got), len(want))
	}
}

func TestCurl(t *testing.T) {
	curl := needBinary(t, "curl", "curl")
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	out := t.TempDir()
	t.Run("30MiB blksize 1468", func(t *testing.T) {
		dst := filepath.Join(out, "big")
		if o, err := run(t, out, curl, "-sS", "--tftp-blksize", "1468", "-o", dst, "tftp://"+addr+"/images/big.img"); err != nil {
			t.Fatalf("curl: %v\n%s", err, o)
		}
		sameFile(t, dst, tr.files["images/big.img"])
	})
	t.Run("refused", func(t *testing.T) {
		for _, p := range []string{"../secret/secret.txt", "link-out", "link-up", "/" + filepath.Join(tr.outside, "secret.txt")} {
			dst := filepath.Join(out, "refused")
			o, err := run(t, out, curl, "-sS", "--path-as-is", "-o", dst, "tftp://"+addr+"/"+p)
			// curl exits 68 on a TFTP error of code 1 (CURLE_TFTP_NOTFOUND),
			// the one code the library sends.
			if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 68 {
				t.Errorf("curl %s: %v, want exit status 68 (TFTP error code 1)\n%s", p, err, o)
			}
			if b, _ := os.ReadFile(dst); bytes.Contains(b, []byte("do not serve")) {
				t.Errorf("curl %s: got the secret", p)
			}
		}
	})
}

// TestConcurrentClients runs eight curl downloads at once, each from a
// client address of its own (127.0.7.1–8).
func TestConcurrentClients(t *testing.T) {
	curl := needBinary(t, "curl", "curl")
	tr := newTree(t)
	var mu sync.Mutex
	remotes := map[string]bool{}
	_, addr := start(t, Config{Root: tr.root, Addr: "127.0.7.100:0", Observe: func(remote net.Addr, file string) {
		mu.Lock()
		defer mu.Unlock()
		remotes[remote.(*net.UDPAddr).IP.String()] = true
	}})
	out := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			dst := filepath.Join(out, fmt.Sprint(i))
			o, err := run(t, out, curl, "-sS", "--interface", fmt.Sprintf("127.0.7.%d", i+1), "--tftp-blksize", "1468", "-o", dst, "tftp://"+addr+"/images/medium.img")
			if err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, o)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("download %d: %v", i, err)
			continue
		}
		sameFile(t, filepath.Join(out, fmt.Sprint(i)), tr.files["images/medium.img"])
	}
	if len(remotes) != 8 {
		t.Errorf("clients seen from %d addresses, want 8: %v", len(remotes), remotes)
	}
}

func TestTFTPHPA(t *testing.T) {
	bin := needBinary(t, "tftp", "tftp-hpa")
	tr := newTree(t)
	s, _ := start(t, Config{Root: tr.root})
	port := fmt.Sprint(s.Addr().(*net.UDPAddr).Port)
	out := t.TempDir()
	// tftp-hpa's client asks for no options: blksize 512.
	for _, name := range []string{"pxelinux.0", "/pxelinux.cfg/default", "images/medium.img", "empty"} {
		o, err := run(t, out, bin, "127.0.0.1", port, "-m", "binary", "-c", "get", name, "got")
		if err != nil || strings.Contains(o, "Error") {
			t.Fatalf("get %s: %v\n%s", name, err, o)
		}
		sameFile(t, filepath.Join(out, "got"), tr.files[strings.TrimPrefix(name, "/")])
	}
	for _, name := range []string{"../secret/secret.txt", "link-out", "images/up/secret.txt"} {
		o, _ := run(t, out, bin, "127.0.0.1", port, "-m", "binary", "-c", "get", name, "refused")
		if !strings.Contains(o, "Error code 1: access violation") {
			t.Errorf("get %s: %q, want access violation", name, o)
		}
	}
}

func TestAtftp(t *testing.T) {
	bin := needBinary(t, "atftp", "atftp")
	tr := newTree(t)
	s, _ := start(t, Config{Root: tr.root})
	port := fmt.Sprint(s.Addr().(*net.UDPAddr).Port)
	out := t.TempDir()
	for _, tc := range []struct {
		name string
		opts []string
	}{
		{"blksize 1468 tsize", []string{"--option", "blksize 1468", "--option", "tsize 0"}},
		{"blksize 1468 windowsize 8", []string{"--option", "blksize 1468", "--option", "windowsize 8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(out, "big")
			args := append(append([]string{}, tc.opts...), "-g", "-r", "images/big.img", "-l", dst, "127.0.0.1", port)
			if o, err := run(t, out, bin, args...); err != nil {
				t.Fatalf("atftp %v: %v\n%s", tc.opts, err, o)
			}
			sameFile(t, dst, tr.files["images/big.img"])
		})
	}
}
