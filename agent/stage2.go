package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/agent/modalias"
	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/wire"
	"golang.org/x/sys/unix"
)

// DefaultStage2Mount is where a stage2 sent to a brd ramdisk (/dev/ramN, as
// the Mandriva guide's "outfile /dev/ram3") is mounted when the session
// does not say.
const DefaultStage2Mount = "/stage2"

// Stage2Hook is the program a stage2 may carry, relative to its root: the
// agent runs it once the stage2 is mounted (the Mandriva guide's "third
// step"), with HERD_* variables describing the node.
const Stage2Hook = "herd/run"

// stage2HookTimeout bounds the hook.
const stage2HookTimeout = 30 * time.Minute

var ramdisk = regexp.MustCompile(`^/dev/ram([0-9]{1,3})$`)

// ramIndex returns N for /dev/ramN, else -1.
func ramIndex(output string) int {
	m := ramdisk.FindStringSubmatch(output)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// isStage2 says whether a file of the session is a stage2.
func isStage2(f wire.SetupFile) bool { return f.Mount != "" }

// prepare is the relay's set-up hook: a stage2 (Mount set, or any output
// /dev/ramN) must fit in RAM, and its ramdisk must exist and be large
// enough -- the agent loads brd sized for it. It writes nothing.
func (a *agent) prepare(f *wire.SetupFile) error {
	ram := ramIndex(f.Output)
	if f.Mount == "" && ram < 0 {
		return nil
	}
	if f.Mount == "" {
		f.Mount = DefaultStage2Mount
	}
	if f.Cooked && ram >= 0 {
		return fmt.Errorf("stage2 %s: a ramdisk is sized before the stream arrives, so its image must be sent raw ('>'), not decoded on the way ('>>'); squashfs is compressed already", f.InputName)
	}
	if f.Size > 0 {
		if avail, ok := memAvailable(); ok && f.Size+stage2Slack > avail {
			return fmt.Errorf("stage2 %s needs %d MiB of RAM but the node has %d MiB available: use a smaller stage2 or nodes with more memory", f.InputName, f.Size>>20, avail>>20)
		}
	}
	if ram < 0 {
		// A file (on the initramfs's tmpfs): its directory may not exist yet.
		if dir := filepath.Dir(f.Output); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("stage2: %w", err)
			}
		}
		return nil
	}
	if f.Size < 0 {
		return fmt.Errorf("stage2 %s: size unknown, so the ramdisk %s cannot be sized; send a regular file", f.InputName, f.Output)
	}
	if _, err := os.Stat(f.Output); errors.Is(err, os.ErrNotExist) {
		if !a.cfg.AsInit {
			return fmt.Errorf("%s does not exist: load brd first (modprobe brd rd_nr=%d rd_size=%d) or send the stage2 to a file", f.Output, ram+1, kib(f.Size))
		}
		if err := a.loadBrd(ram+1, f.Size); err != nil {
			return err
		}
	}
	size, err := deviceSize(f.Output)
	if err != nil {
		return fmt.Errorf("stage2 ramdisk: %w", err)
	}
	if size < f.Size {
		return fmt.Errorf("ramdisk %s holds %d KiB but stage2 %s is %d KiB: brd was loaded before with a smaller rd_size; send the stage2 to a file on tmpfs instead (e.g. /run/herd/stage2.img)", f.Output, size>>10, f.InputName, kib(f.Size))
	}
	return nil
}

// stage2Slack is RAM kept free beyond the stage2 itself.
const stage2Slack = 64 << 20

func kib(n int64) int64 { return (n + 1023) / 1024 }

// loadBrd loads the ramdisk driver with n disks of at least size bytes
// and waits (bounded) for the device nodes.
func (a *agent) loadBrd(n int, size int64) error {
	l, err := modalias.NewKernelLoader(a.modulesDir())
	if err != nil {
		return fmt.Errorf("load brd for the stage2: %w", err)
	}
	params := fmt.Sprintf("rd_nr=%d rd_size=%d max_part=0", n, kib(size))
	if err := l.LoadParams("brd", params); err != nil {
		return fmt.Errorf("load brd for the stage2: %w", err)
	}
	a.con.printf("  loaded brd %s", params)
	dev := fmt.Sprintf("/dev/ram%d", n-1)
	for range 50 {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		time.Sleep(40 * time.Millisecond)
	}
	return fmt.Errorf("brd loaded but %s did not appear within 2s", dev)
}

func deviceSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := blockdev.Size(f)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dev, err)
	}
	return n, nil
}

// memAvailable reads MemAvailable from /proc/meminfo.
func memAvailable() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// hostPath maps an absolute path of the node's view onto the agent's
// root: itself when the agent is the machine's init, else under the
// working directory (herd agent --root-dir).
func (a *agent) hostPath(p string) string {
	if a.cfg.AsInit || !filepath.IsAbs(p) {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return filepath.Join(wd, p)
}

// mountStage2 mounts every stage2 of the last session (verified by the
// sender) read-only, puts its tool directories first in PATH and runs its
// hook.
func (a *agent) mountStage2(ctx context.Context) error {
	for _, f := range a.files {
		if !isStage2(f) || f.Discard {
			continue
		}
		mnt := a.hostPath(f.Mount)
		if err := mountImage(f.Output, mnt); err != nil {
			return fmt.Errorf("stage2 %s: %w", f.InputName, err)
		}
		a.mounts = append(a.mounts, mnt)
		a.con.printf("  stage2 %s mounted read-only at %s", f.Output, mnt)
		if dirs := addToolDirs(mnt); len(dirs) > 0 {
			a.con.printf("  its tools come first in PATH: %s", strings.Join(dirs, ":"))
		}
		if err := a.runHook(ctx, mnt); err != nil {
			return err
		}
	}
	return nil
}

// mountImage mounts a filesystem image (block device, or a file through
// a loop device) read-only on dir.
func mountImage(src, dir string) error {
	fstype, err := probeFS(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	dev := src
	if st.Mode().IsRegular() {
		l, err := attachLoop(src)
		if err != nil {
			return err
		}
		// Autoclear detaches the device at its last close: hold it open
		// until the mount holds it.
		defer l.Close()
		dev = l.Name()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", dev, fstype, dir, err)
	}
	return nil
}

// probeFS names the filesystem of a stage2 image by its magic.
func probeFS(src string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, _ := f.ReadAt(b, 0)
	return fsOf(b[:n], src)
}

func fsOf(b []byte, name string) (string, error) {
	switch {
	case len(b) >= 4 && string(b[:4]) == "hsqs":
		return "squashfs", nil
	case len(b) >= 1082 && b[1080] == 0x53 && b[1081] == 0xEF:
		return "ext4", nil
	case len(b) >= 4 && string(b[:4]) == "XFSB":
		return "xfs", nil
	case len(b) >= 32774 && string(b[32769:32774]) == "CD001":
		return "iso9660", nil
	case len(b) >= 4 && string(b[:4]) == "\x28\xb5\x2f\xfd":
		return "", fmt.Errorf("%s is zstd-compressed: send the stage2 cooked ('>>') to a file so it arrives decoded, or send a squashfs", name)
	}
	return "", fmt.Errorf("%s holds no filesystem herd mounts as a stage2 (squashfs, ext2/3/4, xfs, ISO 9660)", name)
}

// attachLoop puts file on a free loop device, read-only, detached by the
// kernel at its last close once unmounted (autoclear). The caller closes
// the returned device after mounting it.
func attachLoop(file string) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices: %w (is the loop module loaded?)", err)
	}
	defer ctl.Close()
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	for range 8 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		l, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], filepath.Base(file))
		err = unix.IoctlLoopConfigure(int(l.Fd()), &cfg)
		if err == nil {
			return l, nil
		}
		l.Close()
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s to %s: %w", file, dev, err)
		}
	}
	return nil, fmt.Errorf("attach %s: every free loop device was taken first", file)
}

// addToolDirs puts mnt's binary and library directories first in the
// agent's PATH and LD_LIBRARY_PATH, which the later steps' programs
// inherit; it returns the binary directories added.
func addToolDirs(mnt string) []string {
	var bins, libs []string
	for _, d := range []string{"usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"} {
		if st, err := os.Stat(filepath.Join(mnt, d)); err == nil && st.IsDir() {
			bins = append(bins, filepath.Join(mnt, d))
		}
	}
	for _, d := range []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib", "usr/lib"} {
		if st, err := os.Stat(filepath.Join(mnt, d)); err == nil && st.IsDir() {
			libs = append(libs, filepath.Join(mnt, d))
		}
	}
	prepend := func(key string, dirs []string) {
		if len(dirs) == 0 {
			return
		}
		v := strings.Join(dirs, ":")
		if old := os.Getenv(key); old != "" {
			v += ":" + old
		}
		os.Setenv(key, v)
	}
	prepend("PATH", bins)
	prepend("LD_LIBRARY_PATH", libs)
	return bins
}

// runHook runs the stage2's hook, when it has one, with the node's
// identity in its environment and its output on the console.
func (a *agent) runHook(ctx context.Context, mnt string) error {
	hook := filepath.Join(mnt, Stage2Hook)
	st, err := os.Stat(hook)
	if err != nil || st.IsDir() {
		return nil
	}
	if st.Mode()&0o111 == 0 {
		return fmt.Errorf("stage2 hook %s is not executable", hook)
	}
	hctx, cancel := context.WithTimeout(ctx, stage2HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, hook)
	cmd.Dir = mnt
	cmd.Stdout, cmd.Stderr = a.cfg.Console, a.cfg.Console
	cmd.Env = append(os.Environ(),
		"HERD_NAME="+a.id.Name, "HERD_HOSTNAME="+a.id.Hostname, "HERD_DOMAIN="+a.id.Domain,
		"HERD_IP="+a.id.Addr.String(), "HERD_INTERFACE="+a.id.Interface, "HERD_MAC="+a.id.MAC.String(),
		"HERD_SERVER="+a.id.Server, "HERD_STAGE2="+mnt)
	a.con.printf("  running the stage2 hook %s", hook)
	if err := cmd.Run(); err != nil {
		if hctx.Err() != nil {
			return fmt.Errorf("stage2 hook %s: still running after %v", hook, stage2HookTimeout)
		}
		return fmt.Errorf("stage2 hook %s: %w", hook, err)
	}
	return nil
}
