package debimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Tool is a host program Build runs.
type Tool struct {
	// Name is the program, looked up in PATH and the sbin directories.
	Name string
	// Package is the Debian package that has it.
	Package string
}

// Tools are what Build needs from the host.
var Tools = []Tool{
	{"mmdebstrap", "mmdebstrap"},
	{"sfdisk", "fdisk"},
	{"mkfs.fat", "dosfstools"},
	{"mcopy", "mtools"},
	{"mmd", "mtools"},
	{"mke2fs", "e2fsprogs"},
	{"chroot", "coreutils"},
}

// lookTool finds a tool in PATH or in the sbin directories (which an
// ordinary user's PATH may lack).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// CheckTools returns an error naming every missing tool and the Debian
// packages to install, nil when all are there.
func CheckTools() error {
	var missing []string
	pkgs := map[string]bool{}
	for _, t := range Tools {
		if _, err := lookTool(t.Name); err != nil {
			missing = append(missing, t.Name)
			pkgs[t.Package] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list := make([]string, 0, len(pkgs))
	for p := range pkgs {
		list = append(list, p)
	}
	sort.Strings(list)
	return fmt.Errorf("missing %s: install them: apt-get install %s", strings.Join(missing, ", "), strings.Join(list, " "))
}

// command makes a command that ends, with every process it started, when
// ctx ends: it runs in its own process group, which gets SIGTERM (so that
// mmdebstrap can unmount what it mounted in the chroot), then SIGKILL
// after a grace period.
func command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	path, err := lookTool(name)
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
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeWork removes a work directory unless something is mounted in
// it, which is left (and said) for an administrator to unmount.
func removeWork(dir string, logf func(string, ...any)) {
	if m := mountsUnder(dir); len(m) > 0 {
		logf("warning: not removing %s: %s still mounted there (umount them, then remove it)", dir, strings.Join(m, ", "))
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		logf("warning: remove %s: %v", dir, err)
	}
}

// copyFile copies the regular file src to dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}
