package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herdproject/herd/agent/hostsys"
	"github.com/herdproject/herd/kickstart"
)

// scriptTimeout bounds one %pre or %post script.
const scriptTimeout = 30 * time.Minute

// scriptTail is how much of the scripts' output goes into the report.
const scriptTail = 4 << 10

// scriptEnv is the environment of %pre and %post: the node's identity as
// Anaconda's scripts see it through the network, and herd's own names.
func (a *agent) scriptEnv(target string) []string {
	ip := ""
	if a.id.Addr.IsValid() {
		ip = a.id.Addr.Addr().String()
	}
	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TERM=dumb",
		"HOSTNAME=" + a.id.Hostname,
		"IPADDR=" + ip,
		"MAC=" + a.id.MAC.String(),
		"HERD_NAME=" + a.id.Name,
		"HERD_SERVER=" + a.id.Server,
	}
	if a.id.Domain != "" {
		env = append(env, "DOMAIN="+a.id.Domain)
	}
	if target != "" {
		env = append(env, "ANA_INSTALL_PATH="+target, "HERD_TARGET="+target)
	}
	if a.id.Interface != "" {
		env = append(env, "INTERFACE="+a.id.Interface)
	}
	return env
}

// tailWriter keeps the last n bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = t.buf[len(t.buf)-t.n:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// runScript runs one %pre or %post section: in the installer, or -- root
// set -- chrooted into root (with /proc, /sys and /dev bound into it).
// Every output line goes to the console prefixed by what; the tail is
// returned for the report. A non-zero exit is an error quoting that tail.
func (a *agent) runScript(ctx context.Context, what string, s kickstart.Script, root, target string) (string, error) {
	interp := s.Interpreter
	if interp == "" {
		interp = "/bin/sh"
	}
	// The script goes to a file the interpreter reads: inside the chroot
	// when there is one, so that it sees it at /tmp.
	dir := os.TempDir()
	if root != "" {
		dir = filepath.Join(root, "tmp")
		if err := os.MkdirAll(dir, 0o1777); err != nil {
			return "", err
		}
	}
	f, err := os.CreateTemp(dir, "herd-script-*.sh")
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.WriteString(f, s.Body); err != nil {
		f.Close()
		return "", err
	}
	f.Close()
	scriptPath := f.Name()
	if _, err := os.Stat(filepath.Join(root, interp)); err != nil {
		where := "the installer"
		if root != "" {
			where = "the installed system"
		}
		return "", fmt.Errorf("%s: interpreter %s not found in %s: give --interpreter= or put %s in the image", what, interp, where, interp)
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if root != "" {
		undo, err := hostsys.BindSystem(root, nil)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		defer func() {
			if err := undo(); err != nil {
				a.con.printf("  warning: %s: %v", what, err)
			}
		}()
		scriptPath = "/" + strings.TrimPrefix(scriptPath, root+"/")
		attr.Chroot = root
	}
	sctx, cancel := context.WithTimeout(ctx, scriptTimeout)
	defer cancel()
	// exec.Cmd with Path set directly: with Chroot the interpreter is
	// found inside the new root, not on the installer's PATH.
	cmd := &exec.Cmd{Path: interp, Args: []string{interp, scriptPath}, Env: a.scriptEnv(target), Dir: "/", SysProcAttr: attr}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	tail := &tailWriter{n: scriptTail}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			a.con.printf("  %s: %s", what, sc.Text())
			fmt.Fprintln(tail, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	start := time.Now()
	err = cmd.Start()
	if err == nil {
		stop := context.AfterFunc(sctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		err = cmd.Wait()
		stop()
	}
	pw.Close()
	<-done
	out := tail.String()
	switch {
	case sctx.Err() != nil && ctx.Err() == nil:
		return out, fmt.Errorf("%s: still running after %v: killed", what, scriptTimeout)
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("%s exited with status %d after %v; its last output:\n%s", what, ee.ExitCode(), time.Since(start).Round(time.Millisecond), lastLines(out, 5))
		}
		return out, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
