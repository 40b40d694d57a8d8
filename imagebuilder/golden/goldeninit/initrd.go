package goldeninit

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/herdproject/herd/agent/customize"
	"github.com/herdproject/herd/agent/modalias"
	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// Modules loaded by name in the initrd stage: no device asks for a file
// system.
var fsModules = []string{"ext4"}

// initrdStage mounts the root file system and switches to it.
func initrdStage(ctx context.Context, c *console) error {
	start := time.Now()
	if err := mountPseudo(false); err != nil {
		return err
	}
	c.attach()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	c.printf("initrd: kernel %s", release)
	if err := loadModules(ctx, c, filepath.Join("/lib/modules", release)); err != nil {
		return err
	}
	words, err := readCmdline()
	if err != nil {
		return err
	}
	rs, err := parseRoot(words)
	if err != nil {
		return err
	}
	dev, err := waitRoot(ctx, rs, RootWait)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(NewRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NewRoot, err)
	}
	var flags uintptr
	if rs.readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, NewRoot, rs.fstype, flags, ""); err != nil {
		return fmt.Errorf("mount the root file system %s (%s) on %s: %w", dev, rs.fstype, NewRoot, err)
	}
	if st, err := os.Stat(filepath.Join(NewRoot, RootInit)); err != nil || st.Mode()&0o111 == 0 {
		_ = unix.Unmount(NewRoot, 0)
		return fmt.Errorf("the root file system on %s has no executable %s: not a herd golden root", dev, RootInit)
	}
	c.printf("initrd: root %s (%s) mounted after %v; switching to it", dev, rs.fstype, time.Since(start).Round(time.Millisecond))
	// Moves /dev, /proc and /sys, makes NewRoot the root, frees the
	// initrd's files and executes the root's init: returns only on error.
	// It logs its steps with package log: on the console, like ours.
	log.SetFlags(0)
	log.SetPrefix("herd-init: ")
	if err := mount.SwitchRoot(NewRoot, RootInit); err != nil {
		return fmt.Errorf("switch to the root file system: %w", err)
	}
	return errors.New("switch_root returned")
}

// loadModules loads the modules for the present hardware and the root's
// file system from dir (the initrd's /lib/modules/<release>).
func loadModules(ctx context.Context, c *console, dir string) error {
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if os.IsNotExist(err) {
		if _, derr := os.Stat("/lib/modules"); derr == nil {
			return fmt.Errorf("kernel modules: %w (the initrd was built for another kernel? rebuild the image with herd image golden --kernel)", err)
		}
		c.printf("initrd: no kernel modules in the initrd: the kernel must have its drivers built in")
		return nil
	}
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	aliases, err := modalias.ParseAliases(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	var soft map[string][]string
	if sf, err := os.Open(filepath.Join(dir, "modules.softdep")); err == nil {
		soft, _ = modalias.ParseSoftdeps(sf)
		sf.Close()
	}
	l, err := modalias.NewKernelLoader(dir)
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	extra := modalias.ExtraSoftdeps()
	// Failures only: a summary line tells what loaded.
	failures := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); strings.Contains(msg, "skipped") {
			c.printf("warning: %s", msg)
		}
	}
	loaded, err := modalias.LoadAll(ctx, "/sys", aliases, soft, extra, l, failures)
	if err != nil {
		return fmt.Errorf("load modules for the hardware: %w", err)
	}
	fs, err := modalias.LoadModules(ctx, fsModules, aliases, soft, extra, l, failures)
	if err != nil {
		return fmt.Errorf("load file system modules: %w", err)
	}
	var names []string
	seen := map[string]bool{}
	for _, m := range append(loaded, fs...) {
		if !seen[m] {
			seen[m] = true
			names = append(names, m)
		}
	}
	c.printf("initrd: loaded %d module(s): %s", len(names), strings.Join(names, " "))
	return nil
}

// rootSpec is what the kernel command line says about the root.
type rootSpec struct {
	// uuid (lower case) or path names the device.
	uuid, path string
	fstype     string
	readOnly   bool
}

// parseRoot reads root=UUID=..., root=/dev/..., rootfstype= (default
// ext4) and ro/rw (default rw; the last wins).
func parseRoot(words []string) (rootSpec, error) {
	rs := rootSpec{fstype: "ext4"}
	for _, w := range words {
		switch {
		case strings.HasPrefix(w, "root="):
			v := strings.TrimPrefix(w, "root=")
			switch {
			case strings.HasPrefix(v, "UUID="):
				rs.uuid, rs.path = strings.ToLower(strings.TrimPrefix(v, "UUID=")), ""
			case strings.HasPrefix(v, "/dev/"):
				rs.path, rs.uuid = v, ""
			default:
				return rs, fmt.Errorf("root=%s: want root=UUID=<uuid> or root=/dev/<name>", v)
			}
		case strings.HasPrefix(w, "rootfstype="):
			rs.fstype = strings.TrimPrefix(w, "rootfstype=")
		case w == "ro":
			rs.readOnly = true
		case w == "rw":
			rs.readOnly = false
		}
	}
	if rs.uuid == "" && rs.path == "" {
		return rs, errors.New("no root= on the kernel command line: want root=UUID=<uuid> (see the boot partition's syslinux.cfg)")
	}
	return rs, nil
}

// waitRoot waits up to limit for the root device to appear.
func waitRoot(ctx context.Context, rs rootSpec, limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	for {
		if rs.path != "" {
			if st, err := os.Stat(rs.path); err == nil && st.Mode()&os.ModeDevice != 0 {
				return rs.path, nil
			}
		} else if dev := findUUID(rs.uuid); dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			want := rs.path
			if want == "" {
				want = "UUID=" + rs.uuid
			}
			return "", fmt.Errorf("no root device %s after %v; block devices: %s (a disk driver missing from the initrd?)", want, limit, strings.Join(blockDevices(), " "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// findUUID returns the device node holding the file system with uuid,
// "" when none does (yet).
func findUUID(uuid string) string {
	for _, name := range blockDevices() {
		dev := "/dev/" + name
		if u, err := customize.FindUUID(dev); err == nil && strings.EqualFold(u, uuid) {
			return dev
		}
	}
	return ""
}

// blockDevices lists the block devices with a size, partitions included.
func blockDevices() []string {
	entries, _ := os.ReadDir("/sys/class/block")
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/sys/class/block", e.Name(), "size"))
		if err != nil || strings.TrimSpace(string(b)) == "0" {
			continue
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}
