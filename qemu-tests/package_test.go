//go:build qemu

package qemutests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Bounds of the package test.
const (
	aptTimeout       = 10 * time.Minute // apt-get update and install, downloads included
	buildBootTimeout = 10 * time.Minute // herd build boot inside the root
)

// TestPackageInstall installs herd's .deb (make packages) into a fresh
// Debian 12 root made with mmdebstrap (the root tarball of the Debian
// tests' herd image build, from the cache when they ran first) as an
// administrator would: apt-get install ./herd_*.deb, which pulls herd's
// dependencies from the apt sources this host has. There, in a root with
// no Go toolchain and no herd source tree, herd build boot makes a boot
// tree for that root's own kernel, herd serve --help answers, and the
// package's files are where Debian wants them.
func TestPackageInstall(t *testing.T) {
	// No VM: it runs beside the one-VM scenarios, after the Debian ones
	// (whose image build it takes from the cache).
	t.Parallel()
	deb := packagedDeb(t)
	c := NewCluster(t, Options{Nodes: 1})
	tar := debianRootTar(t, c)
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runBounded(5*time.Minute, "", nil, "tar", "--zstd", "-xpf", tar, "-C", root); err != nil {
		t.Fatalf("unpack the root: %v\n%s", err, out)
	}
	// The root's apt sources are the host's (mmdebstrap wrote them); the
	// host's way to them: names, resolver, apt settings (a proxy).
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/apt/apt.conf.d"} {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		if out, err := runBounded(time.Minute, "", nil, "cp", "-a", "--remove-destination", "-T", f, filepath.Join(root, f)); err != nil {
			t.Fatalf("copy %s into the root: %v\n%s", f, err, out)
		}
	}
	// herd image build keeps man pages and documentation out of its
	// images (dpkg path-exclude): a fresh Debian root has them.
	excl, _ := filepath.Glob(filepath.Join(root, "etc/dpkg/dpkg.cfg.d/*"))
	for _, f := range excl {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "path-exclude") {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := runBounded(time.Minute, "", nil, "cp", deb, filepath.Join(root, "tmp", filepath.Base(deb))); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/herd")); err == nil {
		t.Fatalf("the fresh root already has /usr/bin/herd")
	}

	start := time.Now()
	inRoot(t, root, aptTimeout, "apt-get", "update")
	out := inRoot(t, root, aptTimeout, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "--no-install-recommends", "/tmp/"+filepath.Base(deb))
	t.Logf("%.0fs: apt-get install ./%s:\n%s", time.Since(start).Seconds(), filepath.Base(deb), lastLines(out, 8))

	// The package's version is the one its herd prints.
	ver := strings.TrimSpace(inRoot(t, root, time.Minute, "dpkg-query", "-W", "-f", "${Version}", "herd"))
	hv := inRoot(t, root, time.Minute, "herd", "version")
	if f := strings.Fields(hv); len(f) < 2 || !strings.HasPrefix(ver, strings.ReplaceAll(strings.TrimPrefix(f[1], "v"), "-", "+")) {
		t.Errorf("package version %q, herd version %q: want the same version", ver, strings.TrimSpace(hv))
	}
	t.Logf("dpkg: herd %s; herd version: %s", ver, strings.TrimSpace(hv))
	for _, f := range []string{
		"usr/bin/herd", "etc/herd/herd.conf", "lib/systemd/system/herd-serve.service",
		"lib/systemd/system/herd-recv.socket", "lib/systemd/system/herd-recv.service",
		"usr/share/doc/herd/examples/inventory", "usr/share/man/man1/herd.1.gz",
		"usr/share/man/man8/herd-serve.8.gz", "usr/share/man/man1/dolly.1.gz",
		"usr/share/bash-completion/completions/herd", "usr/share/zsh/vendor-completions/_herd",
	} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the package did not install /%s: %v", f, err)
		}
	}
	for _, l := range []string{"dolly", "dollyS", "dollyC"} {
		if dst, err := os.Readlink(filepath.Join(root, "usr/bin", l)); err != nil || dst != "herd" {
			t.Errorf("/usr/bin/%s -> %q (%v), want a link to herd", l, dst, err)
		}
	}
	// dpkg keeps an administrator's herd.conf: it is a conffile.
	if conf := inRoot(t, root, time.Minute, "dpkg-query", "-W", "-f", "${Conffiles}", "herd"); !strings.Contains(conf, "/etc/herd/herd.conf") {
		t.Errorf("/etc/herd/herd.conf is not a conffile: %q", conf)
	}
	if out := inRoot(t, root, time.Minute, "herd", "serve", "--help"); !strings.Contains(out, "Usage: herd serve") {
		t.Errorf("herd serve --help:\n%s", out)
	}
	if out := inRoot(t, root, time.Minute, "dolly", "-V"); !strings.Contains(out, "Dolly version 0.72") {
		t.Errorf("dolly -V through the package's link:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/local/go")); err == nil {
		t.Fatalf("the root has a Go toolchain")
	}

	// herd build boot for the root's own kernel, from the installed
	// binary alone: no go on PATH, no go.mod, no source tree.
	kernels, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		t.Fatalf("the root has no kernel in /boot")
	}
	kernel := "/" + strings.TrimPrefix(kernels[len(kernels)-1], root+"/")
	start = time.Now()
	out = inRoot(t, root, buildBootTimeout, "env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "sh", "-c",
		`! command -v go && cd /tmp && herd build boot --kernel "$1" -o /srv/herd/boot`, "sh", kernel)
	t.Logf("%.0fs: herd build boot --kernel %s:\n%s", time.Since(start).Seconds(), kernel, lastLines(out, 12))
	for f, min := range map[string]int64{"vmlinuz": 1 << 20, "initramfs.cpio.gz": 1 << 20, "undionly.kpxe": 1 << 10, "pxelinux.0": 1 << 10, "snponly.efi": 1 << 10, "boot.ipxe": 1} {
		st, err := os.Stat(filepath.Join(root, "srv/herd/boot", f))
		if err != nil || st.Size() < min {
			t.Errorf("the boot tree's %s: %v (want at least %d bytes)", f, err, min)
		}
	}
}

// packagedDeb is make packages' .deb: $HERD_PACKAGES, else bin/packages
// of the module.
func packagedDeb(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HERD_PACKAGES")
	if dir == "" {
		mod, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(mod, "bin", "packages")
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "herd_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one herd_*.deb in %s, found %d: run make packages first (make test does)", dir, len(debs))
	}
	return debs[0]
}

// inRoot runs a command chrooted in root, with /proc, /sys and /dev
// mounted in a mount namespace of its own (gone when it exits), bounded
// by d; it fails the test when the command fails.
func inRoot(t *testing.T, root string, d time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	script := `set -e; r="$1"; shift
mount -t proc proc "$r/proc"; mount -t sysfs sys "$r/sys"; mount --rbind /dev "$r/dev"
exec chroot "$r" "$@"`
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--fork", "--pid", "--mount-proc", "sh", "-c", script, "sh", root}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in the root: %s: %v\n%s", strings.Join(args, " "), errors.Join(err, ctx.Err()), lastLines(string(out), 30))
	}
	return string(out)
}
