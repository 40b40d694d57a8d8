package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/pxe/bootlayout"
)

// The standalone boot tree: `herd build boot` run by a herd built as make
// build builds it (the busybox built in, static), copied out of the
// source tree and run in an empty directory with a PATH that has no Go
// toolchain. Built once per test binary; the QEMU test boots it.
var standalone struct {
	once   sync.Once
	dir    string // removed by TestMain
	herd   string // the copied herd that built the tree
	plain  string // a static herd built without the busybox (no tag)
	kernel string
	tree   string
	bb     Manifest
	stdout string
	stderr string
	err    error
	skip   string
}

// cleanEnv is an environment without the Go toolchain: PATH holds only
// the system directories (none may have a go), no GOROOT, GOPATH or
// GOFLAGS; HOME is home.
func cleanEnv(t *testing.T, home string) []string {
	t.Helper()
	dirs := []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "go")); err == nil {
			t.Skipf("%s/go exists: cannot make a PATH without the Go toolchain", d)
		}
	}
	return []string{"PATH=" + strings.Join(dirs, ":"), "HOME=" + home, "LC_ALL=C"}
}

// buildStandalone makes the shared standalone tree on first use.
func buildStandalone(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the standalone boot tree (compiles u-root's busybox and herd, a minute or two)")
	}
	env := cleanEnv(t, os.TempDir())
	standalone.once.Do(func() {
		k, why := installedKernel()
		if k == "" {
			standalone.skip = why
			return
		}
		standalone.kernel = k
		standalone.err = makeStandalone(env)
	})
	if standalone.skip != "" {
		t.Skip(standalone.skip)
	}
	if standalone.err != nil {
		t.Fatalf("standalone boot tree: %v\nherd build boot's output:\n%s%s", standalone.err, standalone.stdout, standalone.stderr)
	}
}

func makeStandalone(env []string) error {
	s := &standalone
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "herd-standalone-test-")
	if err != nil {
		return err
	}
	s.dir = dir
	src, err := ModuleRoot("")
	if err != nil {
		return err
	}
	// The busybox, as make build's mkbb makes it, in a directory of the
	// test's; an overlay puts it where embed.go looks (the source
	// tree's own initramfs/prebuilt is neither read nor written).
	bin := filepath.Join(dir, "bb")
	s.bb, err = BuildBusybox(src, bin, "", filepath.Join(dir, "bbsrc"), nil)
	if err != nil {
		return err
	}
	pre := filepath.Join(dir, "prebuilt")
	if err := WritePrebuilt(pre, bin, s.bb); err != nil {
		return err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {
		filepath.Join(src, "initramfs", PrebuiltDir, PrebuiltBusybox):  filepath.Join(pre, PrebuiltBusybox),
		filepath.Join(src, "initramfs", PrebuiltDir, PrebuiltManifest): filepath.Join(pre, PrebuiltManifest),
	}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "overlay.json"), overlay, 0o644); err != nil {
		return err
	}
	// herd as make build builds it, and one without the busybox; both
	// are copied out of the build directory to where they run.
	for _, b := range []struct {
		out  *string
		name string
		args []string
	}{
		{&s.herd, "embed", []string{"-tags", BuiltinTag, "-overlay", filepath.Join(dir, "overlay.json")}},
		{&s.plain, "plain", nil},
	} {
		built := filepath.Join(dir, "build-"+b.name, "herd")
		args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", built}, b.args...)
		cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/herd")...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return &buildError{args: cmd.Args, err: err, out: out}
		}
		*b.out = filepath.Join(dir, "installed-"+b.name, "herd")
		if err := os.MkdirAll(filepath.Dir(*b.out), 0o755); err != nil {
			return err
		}
		raw, err := os.ReadFile(built)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*b.out, raw, 0o755); err != nil {
			return err
		}
	}
	// herd build boot in an empty directory, no go.mod above it, no go
	// on PATH.
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	s.tree = filepath.Join(work, "tree")
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, s.herd, "build", "boot", "--kernel", s.kernel, "-o", s.tree)
	cmd.Dir, cmd.Env = work, env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	s.stdout, s.stderr = stdout.String(), stderr.String()
	return err
}

type buildError struct {
	args []string
	err  error
	out  []byte
}

func (e *buildError) Error() string {
	return strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + string(e.out)
}

// TestStandaloneBootTree: a herd built as make build builds it makes a
// complete boot tree from a copy of it outside the source tree, without
// the Go toolchain: the kernel, the iPXE and pxelinux files, and an
// initramfs whose agent is that very herd and whose busybox is the one
// built in.
func TestStandaloneBootTree(t *testing.T) {
	buildStandalone(t)
	s := &standalone
	t.Logf("herd build boot:\n%s%s", s.stdout, s.stderr)
	for _, w := range []string{"u-root commands built into herd", "agent this herd, " + s.herd} {
		if !strings.Contains(s.stdout, w) {
			t.Errorf("standard output does not say %q", w)
		}
	}
	for _, f := range []string{bootlayout.Kernel, bootlayout.InitramfsBase + ".gz", bootlayout.IPXEScript, bootlayout.PxelinuxDefault} {
		if _, err := os.Stat(filepath.Join(s.tree, f)); err != nil {
			t.Errorf("boot tree: %v", err)
		}
	}
	for _, f := range []string{"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/PXELINUX/pxelinux.0"} {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.tree, filepath.Base(f))); err != nil {
			t.Errorf("boot tree: %v (the host has %s)", err, f)
		}
	}
	k, _ := os.ReadFile(s.kernel)
	if b, _ := os.ReadFile(filepath.Join(s.tree, bootlayout.Kernel)); !bytes.Equal(k, b) {
		t.Errorf("%s differs from %s", bootlayout.Kernel, s.kernel)
	}

	a := archive(t, filepath.Join(s.tree, bootlayout.InitramfsBase+".gz"))
	herd, _ := os.ReadFile(s.herd)
	if r, ok := a["bin/herd"]; !ok || !bytes.Equal(content(t, r), herd) {
		t.Errorf("the initramfs's bin/herd is not the herd that built it (%d bytes)", len(herd))
	}
	if r, ok := a["bbin/bb"]; !ok {
		t.Error("no bbin/bb")
	} else {
		sum := sha256.Sum256(content(t, r))
		if got := hex.EncodeToString(sum[:]); got != s.bb.SHA256 {
			t.Errorf("bbin/bb has SHA-256 %s, the built-in busybox %s", got, s.bb.SHA256)
		}
	}
	links := map[string]string{}
	for name, r := range a {
		if kind(r) == "link" && (strings.HasPrefix(name, "bbin/") || name == "init" || strings.HasPrefix(name, "bin/")) {
			links[name] = string(content(t, r))
		}
	}
	want := map[string]string{"init": "bbin/init", "bin/sh": "../bbin/gosh", "bin/defaultsh": "../bbin/gosh", "bin/uinit": "herd"}
	for _, c := range baseNames(Commands) {
		want["bbin/"+c] = "bb"
	}
	if d := cmp.Diff(want, links); d != "" {
		t.Errorf("links (-want +got):\n%s", d)
	}
	if flags := string(content(t, a["etc/uinit.flags"])); !strings.Contains(flags, "agent") {
		t.Errorf("etc/uinit.flags = %q: the uinit would not run `herd agent`", flags)
	}
}

// TestStandaloneWithoutBusybox: a herd built without the busybox (go
// build, no tag), outside the source tree and without Go, says what to
// do.
func TestStandaloneWithoutBusybox(t *testing.T) {
	buildStandalone(t)
	s := &standalone
	work := t.TempDir()
	cmd := exec.Command(s.plain, "build", "boot", "--kernel", s.kernel, "-o", filepath.Join(work, "tree"))
	cmd.Dir, cmd.Env = work, cleanEnv(t, work)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("herd build boot without the busybox and without Go succeeded:\n%s", out)
	}
	for _, w := range []string{"make build", "--source DIR", "no Go toolchain"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("the error does not say %q:\n%s", w, out)
		}
	}
	if _, err := os.Stat(filepath.Join(work, "tree", bootlayout.InitramfsBase+".gz")); err == nil {
		t.Error("an initramfs was written anyway")
	}
}
