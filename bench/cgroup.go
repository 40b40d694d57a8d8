package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroup2Roots are where a cgroup v2 hierarchy may be mounted: alone, or
// beside v1 controllers (the "hybrid" layout).
var cgroup2Roots = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// Cgroup is a cgroup v2 directory the lab made to account the CPU time
// of one role's processes (the sender, the nodes). cpu.stat's usage
// counters exist in every v2 group, without enabling any controller.
type Cgroup struct {
	// Path is the group's directory.
	Path string
}

// cgroup2Root finds the mounted cgroup v2 hierarchy.
func cgroup2Root() (string, error) {
	for _, r := range cgroup2Roots {
		if _, err := os.Stat(filepath.Join(r, "cgroup.controllers")); err == nil {
			return r, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy (looked at /sys/fs/cgroup and /sys/fs/cgroup/unified): mount one with 'mount -t cgroup2 none /sys/fs/cgroup/unified'")
}

// NewCgroupRoot makes the top group name under the v2 root.
func NewCgroupRoot(name string) (*Cgroup, error) {
	r, err := cgroup2Root()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(r, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup: %w", err)
	}
	return &Cgroup{Path: p}, nil
}

// Child makes the sub-group name.
func (g *Cgroup) Child(name string) (*Cgroup, error) {
	p := filepath.Join(g.Path, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup: %w", err)
	}
	return &Cgroup{Path: p}, nil
}

// Place makes cmd start inside the group (clone3 with
// CLONE_INTO_CGROUP), so every CPU cycle of it and of its children is
// counted. The returned function closes the group's descriptor; call it
// once cmd has started.
func (g *Cgroup) Place(cmd *exec.Cmd) (func(), error) {
	f, err := os.Open(g.Path)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return func() { f.Close() }, nil
}

// CPU is user and system time.
type CPU struct {
	User, System time.Duration
}

// Total is user + system.
func (c CPU) Total() time.Duration { return c.User + c.System }

// Sub is c - o.
func (c CPU) Sub(o CPU) CPU { return CPU{c.User - o.User, c.System - o.System} }

// Usage reads the CPU time of every process that ran in the group and
// its sub-groups, also those that ended.
func (g *Cgroup) Usage() (CPU, error) {
	f, err := os.Open(filepath.Join(g.Path, "cpu.stat"))
	if err != nil {
		return CPU{}, fmt.Errorf("cgroup usage: %w", err)
	}
	defer f.Close()
	var c CPU
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		us, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "user_usec":
			c.User = time.Duration(us) * time.Microsecond
		case "system_usec":
			c.System = time.Duration(us) * time.Microsecond
		}
	}
	return c, sc.Err()
}

// Remove deletes the group and its sub-groups, deepest first. Groups
// with processes left cannot be removed; their error is returned.
func (g *Cgroup) Remove() error {
	var dirs []string
	_ = filepath.WalkDir(g.Path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var first error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && first == nil {
			first = fmt.Errorf("remove cgroup: %w", err)
		}
	}
	return first
}
