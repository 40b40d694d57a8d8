package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// TTYs is the machine's consoles, opened by the agent itself, as a
// Config.Console.
//
// u-root's init does not hand its uinit the consoles: it hands it a pipe
// and copies what comes out of it to every console= device. A pipe cannot
// be drained, and what init has not copied when the agent reboots is lost:
// the serial console then ends before "report done ... done" and the
// "reboot" step, the lines an administrator (and herd's QEMU tests) read
// to know a node finished. Written directly, the ttys can be drained
// (tcdrain) before the reboot, so the console shows every line the agent
// wrote.
type TTYs struct {
	files []*os.File
}

// OpenTTYs opens the devices named (console= names such as "ttyS0" or
// "tty0") under dir for writing, without making any of them the
// controlling terminal; no names opens dir/console. A device that will not
// open is skipped; the error names every one, and is non-nil only when
// none opened.
func OpenTTYs(dir string, names []string) (*TTYs, error) {
	if len(names) == 0 {
		names = []string{"console"}
	}
	t := &TTYs{}
	var errs []error
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_WRONLY|unix.O_NOCTTY, 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.files = append(t.files, f)
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("open the consoles: %w", errors.Join(errs...))
	}
	return t, nil
}

// Write writes p to every console. It fails only when every console
// failed: one broken console must not silence the others.
func (t *TTYs) Write(p []byte) (int, error) {
	var errs []error
	for _, f := range t.files {
		if _, err := f.Write(p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(t.files) {
		return 0, errors.Join(errs...)
	}
	return len(p), nil
}

// Drain waits, at most d in all, until every console has sent what was
// written to it.
func (t *TTYs) Drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for _, f := range t.files {
		drainFile(f, time.Until(deadline))
	}
}

// Close closes the consoles.
func (t *TTYs) Close() error {
	var errs []error
	for _, f := range t.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// drainFile waits at most d until the terminal f has sent its output
// (tcdrain: TCSBRK with a non-zero argument drains and sends no break).
// It returns at once when f is not a terminal.
func drainFile(f *os.File, d time.Duration) {
	if d <= 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}
