package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/agent/customize"
	"github.com/herdproject/herd/agent/hostsys"
	"github.com/herdproject/herd/ring/blockdev"
	"golang.org/x/sys/unix"
)

// customize makes every written system this node's own: the outputs that
// are block devices are searched for a root filesystem (the device itself,
// or its partitions after re-reading the table), which is mounted, edited
// and unmounted; cooked outputs (trees) are edited in place.
func (a *agent) customize() error {
	id := a.identity()
	done := 0
	for _, f := range a.files {
		if f.Discard || f.Output == "-" || isStage2(f) {
			continue
		}
		st, err := os.Stat(f.Output)
		if err != nil {
			continue
		}
		switch {
		case st.IsDir():
			if isRootTree(f.Output) {
				if err := a.apply(f.Output, id); err != nil {
					return err
				}
				done++
			}
		case blockdev.IsBlock(st.Mode()):
			n, err := a.customizeDevice(f.Output, id)
			if err != nil {
				return err
			}
			done += n
		}
	}
	if done == 0 {
		a.con.printf("no installed system found among the outputs: nothing to customize")
	}
	return nil
}

// identity is the node's identity as customize takes it.
func (a *agent) identity() customize.Identity {
	return customize.Identity{
		Hostname: a.id.Hostname, Domain: a.id.Domain, MAC: a.id.MAC, Interface: a.id.Interface,
		IP: a.id.Addr, Gateway: a.id.Gateway, DNS: a.id.DNS, DHCP: true,
	}
}

// sshKeygenTimeout bounds the installed system's `ssh-keygen -A`: an RSA
// key takes seconds on a slow CPU, and minutes under emulation.
const sshKeygenTimeout = 5 * time.Minute

// sshKeygen makes the installed system's SSH host keys with its own
// ssh-keygen, chrooted into root: the key types and formats are the ones
// its sshd expects.
func (a *agent) sshKeygen(root string) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sshKeygenTimeout)
	defer cancel()
	bin := hostsys.FindIn(root, "ssh-keygen")
	if bin == "" {
		return errors.New("the image has sshd but no ssh-keygen (/usr/bin/ssh-keygen): install openssh-client in it")
	}
	// ssh-keygen opens /dev/null; a root unpacked from a tarball has no
	// device nodes: the running system's are bound there meanwhile.
	undo, err := hostsys.BindSystem(root, nil)
	if err != nil {
		return fmt.Errorf("for ssh-keygen: %w", err)
	}
	defer func() { err = errors.Join(err, undo()) }()
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "-A")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("chroot %s %s -A: %w: %s", root, bin, err, strings.TrimSpace(string(out)))
	}
	a.con.printf("  %s -A in the installed system: %s (%.1fs)", bin, strings.Join(strings.Fields(string(out)), " "), time.Since(start).Seconds())
	return nil
}

// isRootTree says whether dir looks like an installed system's root.
func isRootTree(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, "etc"))
	return err == nil && st.IsDir()
}

func (a *agent) apply(root string, id customize.Identity) error {
	// Apply logs each change (Logf) as it makes it.
	_, err := customize.Apply(customize.Options{Root: root, Identity: id, SSHKeygen: a.sshKeygen,
		Logf: func(f string, args ...any) { a.con.printf("  "+f, args...) }})
	if err != nil {
		return fmt.Errorf("customize %s: %w", root, err)
	}
	return nil
}

// customizeDevice mounts each filesystem of dev (its partitions, or dev
// itself) that holds /etc, customizes it and unmounts it.
func (a *agent) customizeDevice(dev string, id customize.Identity) (int, error) {
	rereadPartitions(dev)
	cands := append(partitions(dev), dev)
	n := 0
	for _, c := range cands {
		fstype := detectFS(c)
		if fstype == "" {
			continue
		}
		mnt, err := os.MkdirTemp("", "herd-root-")
		if err != nil {
			return n, err
		}
		if err := unix.Mount(c, mnt, fstype, 0, ""); err != nil {
			os.Remove(mnt)
			a.con.printf("  %s (%s): cannot mount: %v", c, fstype, err)
			continue
		}
		var aerr error
		if isRootTree(mnt) {
			a.con.printf("  root filesystem on %s (%s)", c, fstype)
			aerr = a.apply(mnt, id)
			if aerr == nil {
				n++
				if a.cfg.Settings.Kexec {
					if err := a.loadKexec(mnt, c); err != nil {
						a.con.printf("  kexec: %v (will reboot instead)", err)
					}
				}
			}
		}
		unix.Sync()
		if err := unix.Unmount(mnt, 0); err != nil && aerr == nil {
			aerr = fmt.Errorf("unmount %s: %w", c, err)
		}
		os.Remove(mnt)
		if aerr != nil {
			return n, aerr
		}
		if len(cands) > 1 && c == dev {
			break
		}
	}
	return n, nil
}

// rereadPartitions asks the kernel to re-read dev's partition table
// (BLKRRPART) and waits briefly for the partition nodes.
func rereadPartitions(dev string) {
	f, err := os.Open(dev)
	if err != nil {
		return
	}
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0)
	f.Close()
	for range 20 {
		if len(partitions(dev)) > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// partitions lists dev's partition device nodes from sysfs.
func partitions(dev string) []string {
	name := filepath.Base(dev)
	ents, err := os.ReadDir(filepath.Join("/sys/class/block", name))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/sys/class/block", name, e.Name(), "partition")); err == nil {
			out = append(out, filepath.Join(filepath.Dir(dev), e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// detectFS recognises the filesystems an installed root uses, by magic.
func detectFS(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, 0); err != nil {
		return ""
	}
	// ext2/3/4 (the ext4 driver mounts all three) or XFS; not the
	// read-only kinds a stage2 may be.
	switch t, _ := fsOf(b, dev); t {
	case "ext4", "xfs":
		return t
	}
	return ""
}

// ErrNoKexec is returned when the installed system has no kernel to kexec.
var ErrNoKexec = errors.New("no kernel found under /boot")
