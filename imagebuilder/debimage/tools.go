package debimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/internal/mountinfo"
)

// Tool is a host program Build runs.
type Tool = buildutil.Tool

// Tools are what Build needs from the host.
var Tools = []Tool{
	{Name: "mmdebstrap", Package: "mmdebstrap"},
	{Name: "sfdisk", Package: "fdisk"},
	{Name: "mkfs.fat", Package: "dosfstools"},
	{Name: "mcopy", Package: "mtools"},
	{Name: "mmd", Package: "mtools"},
	{Name: "mke2fs", Package: "e2fsprogs"},
	{Name: "chroot", Package: "coreutils"},
}

// CheckTools returns an error naming every missing tool and the Debian
// packages to install, nil when all are there.
func CheckTools() error { return buildutil.CheckTools(Tools) }

// command makes a command that ends, with every process it started, when
// ctx ends: it runs in its own process group, which gets SIGTERM (so that
// mmdebstrap can unmount what it mounted in the chroot), then SIGKILL
// after a grace period.
func command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	path, err := buildutil.LookTool(name)
	if err != nil {
		return nil, fmt.Errorf("%s not found: %w (see CheckTools)", name, err)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		pid := cmd.Process.Pid
		syscall.Kill(-pid, syscall.SIGTERM)
		go func() {
			time.Sleep(killGrace)
			syscall.Kill(-pid, syscall.SIGKILL) // the group, if it is still there
		}()
		return nil
	}
	cmd.WaitDelay = killGrace + 5*time.Second
	// mtools refuses images whose FAT geometry it finds odd unless told
	// not to check; C locale for messages we quote.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	return cmd, nil
}

// killGrace is how long a cancelled command's process group has between
// SIGTERM and SIGKILL.
const killGrace = 20 * time.Second

// run runs a tool; its output goes into the error when it fails.
func run(ctx context.Context, name string, args ...string) error {
	return runIn(ctx, nil, name, args...)
}

// runIn is run with stdin.
func runIn(ctx context.Context, stdin []byte, name string, args ...string) error {
	cmd, err := command(ctx, name, args...)
	if err != nil {
		return err
	}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// runLines runs a tool and hands every line of its output (standard
// output and error together) to line as it comes; the last lines go
// into the error when it fails.
func runLines(ctx context.Context, line func(string), name string, args ...string) error {
	cmd, err := command(ctx, name, args...)
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	pw.Close()
	var tail []string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		tail = append(tail, l)
		if len(tail) > 40 {
			tail = tail[1:]
		}
		line(l)
	}
	io.Copy(io.Discard, pr) // a line too long for the scanner
	pr.Close()
	err = cmd.Wait()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		return fmt.Errorf("%s: %w\n%s", name, err, strings.Join(tail, "\n"))
	}
	return nil
}

// shellQuote quotes s for sh (and for mmdebstrap's special hooks, which
// split words as a shell does).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// mountsUnder returns the mount points at or below dir (from
// /proc/self/mountinfo): a work directory with any is not removed, since
// removing it would reach into what is mounted (a chroot's /dev, /proc).
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		e, ok := mountinfo.Parse(l)
		if ok && (e.Point == dir || strings.HasPrefix(e.Point, dir+"/")) {
			out = append(out, e.Point)
		}
	}
	return out
}

// removeWork removes a work directory unless something is mounted in
// it, which is left (and said) for an administrator to unmount.
func removeWork(dir string, log *slog.Logger) {
	if m := mountsUnder(dir); len(m) > 0 {
		log.Warn(fmt.Sprintf("not removing %s: %s still mounted there (umount them, then remove it)", dir, strings.Join(m, ", ")))
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		log.Warn(fmt.Sprintf("remove %s: %v", dir, err))
	}
}
