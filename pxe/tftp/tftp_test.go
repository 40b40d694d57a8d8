package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pack.ag/tftp"
)

// tree is a boot tree beside a directory that must stay unreachable.
type tree struct {
	root, outside string
	files         map[string][]byte // relative to root
}

const bigSize = 30 << 20

func newTree(t *testing.T) *tree {
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

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// logger collects Logf lines for failing tests.
type logger struct {
	mu    sync.Mutex
	lines []string
}

func (l *logger) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// start serves cfg on 127.0.0.1 (an ephemeral port unless cfg.Addr is
// set) until the test ends, and checks Serve returns nil on cancel.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	log := &logger{}
	if cfg.Logf == nil {
		cfg.Logf = log.logf
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

// goGet fetches name with pack.ag/tftp's client.
func goGet(addr, name string, opts ...tftp.ClientOpt) ([]byte, int64, error) {
	c, err := tftp.NewClient(append([]tftp.ClientOpt{tftp.ClientMode(tftp.ModeOctet), tftp.ClientTransferSize(true)}, opts...)...)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.Get(addr + "/" + name)
	if err != nil {
		return nil, 0, err
	}
	size, _ := resp.Size()
	data, err := io.ReadAll(resp)
	return data, size, err
}

func TestGoClient(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	for _, tc := range []struct {
		name string
		file string
		opts []tftp.ClientOpt
	}{
		{"default options", "pxelinux.0", nil},
		{"leading slash", "/pxelinux.0", nil},
		{"subdirectory", "pxelinux.cfg/default", nil},
		{"symlink inside", "link-in", nil},
		{"empty file", "empty", nil},
		{"multiple of blksize", "exact", nil},
		{"blksize 1468", "images/medium.img", []tftp.ClientOpt{tftp.ClientBlocksize(1468)}},
		{"windowsize 16", "images/medium.img", []tftp.ClientOpt{tftp.ClientBlocksize(1468), tftp.ClientWindowsize(16)}},
		{"big blksize", "images/big.img", []tftp.ClientOpt{tftp.ClientBlocksize(8192), tftp.ClientWindowsize(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, size, err := goGet(addr, tc.file, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			want := tr.files[strings.TrimPrefix(tc.file, "/")]
			if !bytes.Equal(data, want) {
				t.Fatalf("got %d bytes, want %d (content differs)", len(data), len(want))
			}
			if size != int64(len(want)) {
				t.Errorf("tsize %d, want %d", size, len(want))
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
// back (from whichever port), or nil after wait.
func exchange(t *testing.T, addr string, pkt []byte, wait time.Duration) []byte {
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
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// tftpError decodes an ERROR datagram as "code N: message".
func tftpError(b []byte) string {
	if len(b) < 5 || binary.BigEndian.Uint16(b) != 5 {
		return fmt.Sprintf("not an error: %q", b)
	}
	return fmt.Sprintf("code %d: %s", binary.BigEndian.Uint16(b[2:]), bytes.TrimRight(b[4:], "\x00"))
}

func TestRefused(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	secret := filepath.Join(tr.outside, "secret.txt")
	for _, tc := range []struct{ name, file, want string }{
		{"dotdot", "../secret/secret.txt", "code 2: access violation"},
		{"dotdot after slash", "/../secret/secret.txt", "code 2: access violation"},
		{"dotdot inside", "images/../../secret/secret.txt", "code 2: access violation"},
		{"dotdot that stays inside", "images/../pxelinux.0", "code 2: access violation"},
		{"absolute outside", "/" + secret, "code 2: access violation"},
		{"absolute after one slash", secret, "code 1: file not found"}, // = <root>/<secret path>
		{"etc passwd", "/etc/passwd", "code 1: file not found"},
		{"symlink absolute outside", "link-out", "code 2: access violation"},
		{"symlink relative outside", "link-up", "code 2: access violation"},
		{"symlink dir outside", "link-dir-out/secret.txt", "code 2: access violation"},
		{"symlink from subdir", "images/up/secret.txt", "code 2: access violation"},
		{"symlink passwd", "link-passwd", "code 2: access violation"},
		{"symlink loop", "link-loop", "code 2: access violation"},
		{"symlink dangling outside", "link-missing", "code 2: access violation"},
		{"missing", "nothing-here", "code 1: file not found"},
		{"directory", "images", "code 1: file not found"},
		{"root", "/", "code 1: file not found"},
		{"through a file", "pxelinux.0/x", "code 1: file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tftpError(exchange(t, addr, rrq(tc.file), 3*time.Second))
			if got != tc.want {
				t.Errorf("RRQ %q: %s, want %s", tc.file, got, tc.want)
			}
		})
	}
}

func TestWriteRefused(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	c, err := tftp.NewClient(tftp.ClientMode(tftp.ModeOctet))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Put(addr+"/new.bin", strings.NewReader("data"), 4)
	if err == nil || !strings.Contains(err.Error(), "ILLEGAL_OPERATION") {
		t.Errorf("Put: %v, want an illegal operation error", err)
	}
	if _, err := os.Stat(filepath.Join(tr.root, "new.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new.bin exists after a refused write: %v", err)
	}
}

// TestHostileRequests sends the datagrams that crash or exhaust an
// unguarded pack.ag/tftp and checks the server still serves afterwards.
func TestHostileRequests(t *testing.T) {
	tr := newTree(t)
	_, addr := start(t, Config{Root: tr.root})
	for _, tc := range []struct {
		name string
		pkt  []byte
		want string // "" = no answer
	}{
		{"bare RRQ opcode", []byte{0, 1}, ""},
		{"RRQ without NUL", []byte("\x00\x01pxelinux.0"), ""},
		{"RRQ of three bytes", []byte("\x00\x01\x00"), ""},
		{"windowsize 0", rrq("pxelinux.0", "windowsize", "0"), "code 8: windowsize \"0\" outside 1..65535"},
		{"blksize 0", rrq("pxelinux.0", "blksize", "0"), "code 8: blksize \"0\" outside 8..65464"},
		{"blksize 7", rrq("pxelinux.0", "blksize", "7"), "code 8: blksize \"7\" outside 8..65464"},
		{"blksize too big", rrq("pxelinux.0", "blksize", "65465"), "code 8: blksize \"65465\" outside 8..65464"},
		{"timeout 0", rrq("pxelinux.0", "timeout", "0"), "code 8: timeout \"0\" outside 1..255"},
		{"huge window", rrq("pxelinux.0", "blksize", "65464", "windowsize", "65535"), "code 8: window of 65535 × 65464 bytes above 1048576: ask for a smaller windowsize"},
		{"tsize not a number", rrq("pxelinux.0", "tsize", "x"), "code 8: tsize \"x\" is not a number"},
		{"write request", []byte("\x00\x02x\x00octet\x00"), "code 4: Server does not support write requests."},
		{"stray ACK", []byte{0, 4, 0, 1}, "code 5: Unexpected TID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait := 3 * time.Second
			if tc.want == "" {
				wait = 300 * time.Millisecond
			}
			reply := exchange(t, addr, tc.pkt, wait)
			switch {
			case tc.want == "" && reply != nil:
				t.Errorf("answered %q, want no answer", reply)
			case tc.want != "" && tftpError(reply) != tc.want:
				t.Errorf("answered %s, want %s", tftpError(reply), tc.want)
			}
		})
	}
	data, _, err := goGet(addr, "pxelinux.0")
	if err != nil || !bytes.Equal(data, tr.files["pxelinux.0"]) {
		t.Fatalf("after the hostile requests: %d bytes, %v", len(data), err)
	}
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
	data, size, err := goGet(addr, "/pxelinux.cfg/01-52-54-00-00-00-01")
	if err != nil || string(data) != "DEFAULT install\n" || size != int64(len(data)) {
		t.Fatalf("generated file: %q (tsize %d), %v", data, size, err)
	}
	if _, _, err := goGet(addr, "pxelinux.0"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := goGet(addr, "missing"); err == nil {
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
	if _, _, err := goGet(s.Addr().String(), "pxelinux.0"); err != nil {
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
			// curl exits 69 on a TFTP access violation (CURLE_TFTP_PERM).
			if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 69 {
				t.Errorf("curl %s: %v, want exit status 69 (access violation)\n%s", p, err, o)
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
		if !strings.Contains(o, "Error code 2: access violation") {
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
