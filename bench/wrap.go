package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Wrap is what the wrapper process does around one measured program
// (herd recv, herd send, herd pxe, curl) inside a lab host: it runs in
// the host's namespaces (started by "ip netns exec", which also gives it
// a mount namespace of its own), mounts the host's private tmpfs, starts
// the program, tells the harness when the program is ready, and after
// the program ended reports its peak RSS and the SHA-256
// of what it wrote, as JSON lines on standard output.
type Wrap struct {
	// Tmpfs, when set, is where a tmpfs of TmpfsSize is mounted first.
	Tmpfs, TmpfsSize string
	// Ready, when set, is a TCP address polled until it accepts (the
	// program's listening socket).
	Ready string
	// Gate makes the wrapper report ready, then wait for a line on
	// standard input before it starts the program, so that the harness
	// starts many programs at once.
	Gate bool
	// Hash is the file whose SHA-256 is reported after the program ended.
	Hash string
	// Hold makes the wrapper report the program's end, then wait for a
	// line on standard input before it hashes: the harness reads the
	// role's CPU time in between, so hashing is not counted.
	Hold bool
	// Argv is the program and its arguments; its output goes to the
	// wrapper's standard error.
	Argv []string
}

// WrapEvent is one JSON line of the wrapper: first {"ready":true}, then
// the result.
type WrapEvent struct {
	Ready bool `json:"ready,omitempty"`
	// Ended marks the program's end (with Hold); Done the result.
	Ended bool `json:"ended,omitempty"`
	Done  bool `json:"done,omitempty"`
	Exit  int  `json:"exit"`
	// MaxRSSKiB is the program's peak resident set (ru_maxrss).
	MaxRSSKiB int64  `json:"maxrss_kib,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Bytes     int64  `json:"bytes,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Args is the wrapper's command line ("herd-bench wrap ARGS...").
func (w *Wrap) Args() []string {
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, flag, v)
		}
	}
	add("--tmpfs", w.Tmpfs)
	add("--tmpfs-size", w.TmpfsSize)
	add("--ready", w.Ready)
	add("--hash", w.Hash)
	if w.Gate {
		a = append(a, "--gate")
	}
	if w.Hold {
		a = append(a, "--hold")
	}
	return append(append(a, "--"), w.Argv...)
}

// ParseWrap reads a wrapper's command line (what Args writes).
func ParseWrap(args []string) (*Wrap, error) {
	w := &Wrap{}
	fs := flag.NewFlagSet("wrap", flag.ContinueOnError)
	fs.StringVar(&w.Tmpfs, "tmpfs", "", "mount a private tmpfs on `DIR`")
	fs.StringVar(&w.TmpfsSize, "tmpfs-size", "", "tmpfs `SIZE` (mount option)")
	fs.StringVar(&w.Ready, "ready", "", "report ready once `ADDRESS` accepts TCP connections")
	fs.StringVar(&w.Hash, "hash", "", "report the SHA-256 of `FILE` after the program")
	fs.BoolVar(&w.Hold, "hold", false, "report the program's end, then hash at a line on standard input")
	fs.BoolVar(&w.Gate, "gate", false, "report ready, then start the program at a line on standard input")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	w.Argv = fs.Args()
	if len(w.Argv) == 0 {
		return nil, errors.New("wrap: no program given after --")
	}
	return w, nil
}

// readyTimeout bounds the wait for a program's listening socket.
const readyTimeout = 30 * time.Second

// Run carries the wrap out; stdin and stdout are the harness's pipe.
func (w *Wrap) Run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	enc := json.NewEncoder(stdout)
	res := WrapEvent{Done: true, Exit: -1}
	defer func() { _ = enc.Encode(res) }()
	fail := func(err error) error {
		res.Error = err.Error()
		return err
	}
	if len(w.Argv) == 0 {
		return fail(errors.New("no program to run"))
	}
	if w.Tmpfs != "" {
		if err := mountTmpfs(w.Tmpfs, w.TmpfsSize); err != nil {
			return fail(err)
		}
	}
	in := bufio.NewReader(stdin)
	if w.Gate {
		if err := enc.Encode(WrapEvent{Ready: true}); err != nil {
			return fail(err)
		}
		if _, err := in.ReadString('\n'); err != nil {
			return fail(fmt.Errorf("wait for the start: %w", err))
		}
	}
	cmd := exec.CommandContext(ctx, w.Argv[0], w.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start %s: %w", w.Argv[0], err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if w.Ready != "" {
		if err := pollTCP(ctx, w.Ready, exited); err != nil {
			_ = cmd.Process.Kill()
			return fail(err)
		}
		if err := enc.Encode(WrapEvent{Ready: true}); err != nil {
			_ = cmd.Process.Kill()
			return fail(err)
		}
	}
	werr := <-exited
	if st := cmd.ProcessState; st != nil {
		res.Exit = st.ExitCode()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			res.MaxRSSKiB = ru.Maxrss
		}
	}
	if w.Hold {
		ended := res
		ended.Done, ended.Ended = false, true
		if err := enc.Encode(ended); err != nil {
			return fail(err)
		}
		if _, err := in.ReadString('\n'); err != nil {
			return fail(fmt.Errorf("wait for the verification: %w", err))
		}
	}
	if res.Exit != 0 {
		return fail(fmt.Errorf("%s: %v", w.Argv[0], werr))
	}
	if w.Hash != "" {
		sum, n, err := hashFile(w.Hash)
		if err != nil {
			return fail(err)
		}
		res.SHA256, res.Bytes = sum, n
	}
	return nil
}

// mountTmpfs mounts a private tmpfs at dir. The wrapper runs in a mount
// namespace of its own (ip netns exec made it, with / a slave of the
// host's), so the mount is invisible outside and goes with the process.
func mountTmpfs(dir, size string) error {
	opts := "mode=0755"
	if size != "" {
		opts += ",size=" + size
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// pollTCP waits until addr accepts a connection, the program exits, or
// readyTimeout passes.
func pollTCP(ctx context.Context, addr string, exited <-chan error) error {
	deadline := time.Now().Add(readyTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the program exited before it listened on %s: %v", addr, err)
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listened on %s within %v", addr, readyTimeout)
}

// hashFile returns the SHA-256 and size of path.
func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return "", n, fmt.Errorf("verify %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
