package agent

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPTY opens a pseudo-terminal pair and returns its master and the
// name of its slave under /dev/pts.
func newPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock the pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	return m, strconv.Itoa(n)
}

// readFor reads from m until want has come or d has passed.
func readFor(t *testing.T, m *os.File, want string, d time.Duration) string {
	t.Helper()
	if err := m.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatalf("deadline: %v", err)
	}
	var got bytes.Buffer
	buf := make([]byte, 256)
	for !strings.Contains(got.String(), want) {
		n, err := m.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return got.String()
}

func TestTTYsWriteAndDrain(t *testing.T) {
	m1, n1 := newPTY(t)
	m2, n2 := newPTY(t)
	// A repeated name is opened once; a missing one is skipped while
	// others opened.
	tt, err := OpenTTYs("/dev/pts", []string{n1, n2, n1, "no-such-tty"})
	if err != nil {
		t.Fatalf("OpenTTYs: %v", err)
	}
	defer tt.Close()
	if len(tt.files) != 2 {
		t.Fatalf("opened %d consoles, want 2 (a repeat is opened once, a missing one skipped)", len(tt.files))
	}
	if n, err := tt.Write([]byte("== herd: report done done in 12ms\n")); err != nil || n != 34 {
		t.Fatalf("Write = %d, %v; want 34, nil", n, err)
	}
	tt.Drain(2 * time.Second)
	for i, m := range []*os.File{m1, m2} {
		if got := readFor(t, m, "12ms", 5*time.Second); !strings.Contains(got, "== herd: report done done in 12ms") {
			t.Errorf("console %d received %q", i+1, got)
		}
	}
}

func TestOpenTTYsNone(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenTTYs(dir, []string{"ttyS0", "tty0"})
	if err == nil {
		t.Fatal("OpenTTYs of missing devices: no error")
	}
	for _, name := range []string{"ttyS0", "tty0"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
	// No console= given: dir/console.
	if _, err := OpenTTYs(dir, nil); err == nil || !strings.Contains(err.Error(), "console") {
		t.Errorf("OpenTTYs without names: %v; want an error naming %s/console", err, dir)
	}
}
