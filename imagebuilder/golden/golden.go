// Package golden builds herd's golden image: a small bootable raw disk
// image of a system whose every per-host file is one herd's agent
// rewrites when it installs a clone, so that a clone booted from its own
// disk proves on its console that it became itself. It is what
// `herd image golden` runs, and what herd's QEMU cluster tests clone.
//
// The image, built without root privileges or loop devices:
//
//	MBR (syslinux's mbr.bin, a table made by sfdisk on the file)
//	  1  boot  FAT16 (type 0x0e, bootable), mkfs.vfat --offset: syslinux
//	           (ldlinux.sys, ldlinux.c32), syslinux.cfg, vmlinuz, initrd.img
//	  2  root  ext4 (type 0x83), mke2fs -d -E offset=: /sbin/init (herd),
//	           /etc/{hostname,hosts,machine-id,fstab,os-release},
//	           /etc/systemd/network/50-wired.network, /etc/ssh/ssh_host_*
//
// The kernel is the host's (Debian builds virtio and ext4 as modules), so
// initrd.img is herd's own: a gzip newc cpio with the same static herd
// binary as /init and the modules for virtio, SATA, NVMe and common
// Ethernet disks and NICs, ext4 and their dependencies. Both /init and
// /sbin/init run package goldeninit: the first mounts the root found by
// root=UUID= and switches to it, the second prints
// "herd-booted host=... ip=... machine-id=..." and powers off.
//
// Build also writes, besides the image or instead of it, the root tree as
// a zstd-compressed tar for install plans (Config.RootTar, root.tar.zst):
// the same files with the kernel and the same initrd.img in /boot, a
// fstab naming the root by label and the host's busybox as /bin/sh for
// %post scripts. See roottar.go.
package golden

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/initramfs/kmod"
	"github.com/herdproject/herd/internal/uuid"
)

// Sizes. The partitions start on MiB boundaries.
const (
	DefaultSize     = 192 << 20
	DefaultBootSize = 64 << 20
	DefaultHostname = "golden"
	minBootSize     = 16 << 20
	align           = 1 << 20
	// rootSlack is room the root file system needs beyond its files:
	// the journal, inode tables, group descriptors.
	rootSlack = 24 << 20
)

// Names on the boot partition.
const (
	KernelName  = "vmlinuz"
	InitrdName  = "initrd.img"
	SyslinuxCfg = "syslinux.cfg"
)

// DefaultModules are the kernel modules the initrd carries (with their
// dependencies and soft dependencies): disk and network drivers for
// QEMU (virtio) and common hardware, and ext4. A module the kernel lacks
// is left out with a warning.
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net",
	"sd_mod", "ahci", "nvme",
	"e1000", "e1000e", "igb",
	"ext4",
}

// ErrExists is wrapped by Build's error when Output or RootTar exists
// and Force is not set.
var ErrExists = buildutil.ErrExists

// Config is what Build builds. Zero values are defaults.
type Config struct {
	// Output is the image file to write; "" = no image (RootTar is then
	// required). It is written under a temporary name in the same
	// directory and renamed when complete.
	Output string
	// RootTar is the root tarball to write (see roottar.go): the image's
	// root tree with the kernel and initrd in /boot, a root-by-label
	// fstab and the host's busybox as /bin/sh, as a zstd-compressed tar;
	// "" = none. Written like Output; it uses the same kernel and initrd.
	RootTar string
	// Force replaces an existing Output or RootTar.
	Force bool
	// Kernel is the bzImage to boot; "" = the newest /boot/vmlinuz-*.
	Kernel string
	// ModulesDir is the kernel's modules; "" = /lib/modules/<release>,
	// the release read from the kernel image.
	ModulesDir string
	// Modules for the initrd; nil = DefaultModules; empty and non-nil =
	// none (a kernel with its disk, network and ext4 drivers built in).
	Modules []string
	// Size of the image in bytes (rounded up to MiB); 0 = DefaultSize.
	Size int64
	// BootSize of the boot partition in bytes (rounded up to MiB); 0 =
	// DefaultBootSize.
	BootSize int64
	// Hostname of the golden system; "" = DefaultHostname.
	Hostname string
	// HerdBinary is the static herd executable that becomes /init and
	// /sbin/init; "" = the running herd when it is a static x86-64
	// executable (herd built by make build, with CGO_ENABLED=0) and
	// SourceDir is "", else ./cmd/herd built from SourceDir.
	HerdBinary string
	// SourceDir is a herd source tree to build herd from (Go toolchain
	// needed); "" = the module containing the working directory, when
	// the running herd will not do.
	SourceDir string
	// TempDir is where the build works; "" = a new directory under
	// os.TempDir(), removed afterwards.
	TempDir string
	// Log receives progress (info) and warnings; nil discards them.
	Log *slog.Logger
}

// Result describes a built image and root tarball.
type Result struct {
	// Output is the image's path ("" when none was built); Size its
	// length in bytes.
	Output string
	Size   int64
	// RootTar is the root tarball's path ("" when none was built);
	// RootTarSize its length in bytes, RootTarEntries the number of tar
	// entries in it.
	RootTar        string
	RootTarSize    int64
	RootTarEntries int
	// Shell is the host busybox put in the root tarball as /bin/busybox
	// (/bin/sh and the other ShellApplets link to it); "" = none, and
	// install plans' %post scripts cannot run in the tarball's root.
	// ShellLibraries are the interpreter and libraries added for it
	// (paths in the tree, symlinks included).
	Shell          string
	ShellLibraries []string
	// KernelVersion is the kernel's release; Kernel its file.
	KernelVersion, Kernel string
	// RootUUID is the image's root file system's UUID (root=UUID= and
	// fstab); BootID the boot file system's volume ID ("ABCD-1234");
	// both "" without an image.
	RootUUID, BootID string
	// Hostname is the golden system's host name.
	Hostname string
	// Table is the image's partition table, read back.
	Table *diskimage.Table
	// InitrdSize is the compressed initrd's size; Modules the modules in
	// it; MissingModules those asked for that the kernel lacks.
	InitrdSize              int64
	Modules, MissingModules []string
	// HerdBinary is the herd executable used; when HerdBuilt, it was
	// compiled into the build's temporary directory, which is gone.
	HerdBinary string
	HerdBuilt  bool
	// Duration of the build.
	Duration time.Duration
}

func (c *Config) setDefaults() error {
	if c.Output == "" && c.RootTar == "" {
		return errors.New("golden: no output file: give -o FILE (or --root-tar FILE)")
	}
	if c.Output != "" && c.RootTar != "" && filepath.Clean(c.Output) == filepath.Clean(c.RootTar) {
		return fmt.Errorf("golden: the image and the root tarball are both %s: give two names", c.Output)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Kernel == "" {
		k, err := newestKernel("/boot")
		if err != nil {
			return err
		}
		c.Kernel = k
	}
	if c.Modules == nil {
		c.Modules = DefaultModules
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.BootSize == 0 {
		c.BootSize = DefaultBootSize
	}
	c.Size = roundUp(c.Size, align)
	c.BootSize = roundUp(c.BootSize, align)
	if c.BootSize < minBootSize {
		return fmt.Errorf("golden: boot partition of %d MiB: give at least %d MiB", c.BootSize>>20, minBootSize>>20)
	}
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
	}
	if !validHostname(c.Hostname) {
		return fmt.Errorf("golden: host name %q: want 1-63 letters, digits and '-', not starting or ending with '-'", c.Hostname)
	}
	return nil
}

// newestKernel returns the newest dir/vmlinuz-* by version order.
func newestKernel(dir string) (string, error) {
	ks, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(ks) == 0 {
		return "", fmt.Errorf("golden: no kernel in %s: install one (apt-get install linux-image-amd64) or give --kernel FILE", dir)
	}
	sort.Slice(ks, func(i, j int) bool { return versionLess(ks[i], ks[j]) })
	return ks[len(ks)-1], nil
}

// versionLess compares file names as version strings: digit runs by
// value, other runs as text.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		ra, ta := leadingRun(a)
		rb, tb := leadingRun(b)
		if ra != rb {
			na, ea := strconv.ParseUint(ra, 10, 64)
			nb, eb := strconv.ParseUint(rb, 10, 64)
			if ea == nil && eb == nil {
				return na < nb
			}
			return ra < rb
		}
		a, b = ta, tb
	}
	return len(a) < len(b)
}

// leadingRun splits s after its first run of digits or of non-digits.
func leadingRun(s string) (string, string) {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	d := digit(s[0])
	i := 1
	for i < len(s) && digit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

func validHostname(h string) bool {
	if h == "" || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// layout is where the partitions go, in sectors.
type layout struct {
	bootStart, bootSectors, rootStart, rootSectors int64
}

func newLayout(size, boot int64) layout {
	l := layout{bootStart: align / diskimage.SectorSize, bootSectors: boot / diskimage.SectorSize}
	l.rootStart = l.bootStart + l.bootSectors
	l.rootSectors = size/diskimage.SectorSize - l.rootStart
	return l
}

// Build writes the golden image, the root tarball or both, as cfg
// describes. Both are written under temporary names and renamed once
// both are complete.
func Build(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Output != "" {
		if err := buildutil.CheckOutput(cfg.Output, cfg.Force, "an image file (write the image to a disk with herd send)"); err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
	}
	if cfg.RootTar != "" {
		if err := buildutil.CheckOutput(cfg.RootTar, cfg.Force, "a tarball file (root.tar.zst)"); err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
	}
	if err := buildutil.CheckTools(neededTools(&cfg)); err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	release, err := kernel.Version(cfg.Kernel)
	if err != nil {
		return nil, fmt.Errorf("golden: %w (give --kernel /boot/vmlinuz-<release>)", err)
	}
	if cfg.ModulesDir == "" {
		cfg.ModulesDir = filepath.Join("/lib/modules", release)
	}
	res := &Result{Kernel: cfg.Kernel, KernelVersion: release, Hostname: cfg.Hostname}
	tmp := cfg.TempDir
	if tmp == "" {
		d, err := os.MkdirTemp("", "herd-golden-")
		if err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
		defer os.RemoveAll(d)
		tmp = d
	}

	// The herd binary.
	herd, err := herdBinary(ctx, &cfg, tmp)
	if err != nil {
		return nil, err
	}
	res.HerdBinary, res.HerdBuilt = herd, cfg.HerdBinary == "" && strings.HasPrefix(herd, tmp)
	herdSt, err := os.Stat(herd)
	if err != nil {
		return nil, fmt.Errorf("golden: herd binary: %w", err)
	}

	// Sizes: the boot partition holds the kernel and the initrd, the root
	// the herd binary.
	l := newLayout(cfg.Size, cfg.BootSize)
	if need := herdSt.Size() + rootSlack; cfg.Output != "" && l.rootSectors*diskimage.SectorSize < need {
		return nil, fmt.Errorf("golden: image of %d MiB leaves %d MiB for the root file system, which needs %d MiB: give a larger --size (at least %d MiB)",
			cfg.Size>>20, max(0, l.rootSectors*diskimage.SectorSize)>>20, need>>20, (roundUp(need, align)+cfg.BootSize+align)>>20)
	}

	// The initrd, one for the image and the tarball: modules, then the
	// archive.
	initrd := filepath.Join(tmp, InitrdName)
	if err := buildInitrd(ctx, &cfg, res, herd, tmp, initrd); err != nil {
		return nil, err
	}

	// The outputs, under temporary names next to them; renamed at the end.
	type rename struct{ tmp, final string }
	var pending []rename
	ok := false
	defer func() {
		if !ok {
			for _, p := range pending {
				os.Remove(p.tmp)
			}
		}
	}()
	if cfg.Output != "" {
		img, err := buildImage(ctx, &cfg, res, l, herd, initrd, tmp)
		if err != nil {
			return nil, err
		}
		pending = append(pending, rename{img, cfg.Output})
	}
	if cfg.RootTar != "" {
		tarDir := filepath.Join(tmp, "roottar")
		shell, libs, err := writeTarTree(&cfg, tarDir, herd, initrd, release)
		if err != nil {
			return nil, fmt.Errorf("golden: root tarball tree: %w", err)
		}
		if shell {
			res.Shell, res.ShellLibraries = HostBusybox, libs
		}
		name, st, err := writeRootTarFile(cfg.RootTar, tarDir, start)
		if err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
		pending = append(pending, rename{name, cfg.RootTar})
		res.RootTarSize, res.RootTarEntries = st.Size, st.Entries
		shellText := "no shell"
		if shell {
			shellText = fmt.Sprintf("/bin/sh (busybox, %d libraries)", len(libs))
		}
		cfg.Log.Info(fmt.Sprintf("root tarball: %d entries, /boot/%s-%s and %s-%s, %s, %.1f MiB", st.Entries, KernelName, release, InitrdName, release, shellText, float64(st.Size)/(1<<20)))
	}
	for _, p := range pending {
		if err := os.Rename(p.tmp, p.final); err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
	}
	ok = true
	if cfg.Output != "" {
		res.Output, res.Size = cfg.Output, cfg.Size
	}
	res.RootTar = cfg.RootTar
	res.Duration = time.Since(start)
	return res, nil
}

// buildImage writes the image under a temporary name in Output's
// directory and returns that name; the caller renames it. It fills in
// res's identifiers and table.
func buildImage(ctx context.Context, cfg *Config, res *Result, l layout, herd, initrd, tmp string) (string, error) {
	release := res.KernelVersion
	kst, err := os.Stat(cfg.Kernel)
	if err != nil {
		return "", fmt.Errorf("golden: kernel: %w", err)
	}
	if need := kst.Size() + res.InitrdSize + align; need > cfg.BootSize-2*align {
		return "", fmt.Errorf("golden: the kernel and initrd take %d MiB, the boot partition is %d MiB: give a larger --boot-size", need>>20, cfg.BootSize>>20)
	}

	// Identifiers.
	res.RootUUID, err = uuid.New()
	if err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	volID, err := buildutil.RandomVolumeID()
	if err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	res.BootID = fmt.Sprintf("%04X-%04X", volID>>16, volID&0xffff)

	// The root tree.
	rootDir := filepath.Join(tmp, "root")
	if err := writeRoot(rootDir, herd, rootFiles(cfg, res.RootUUID, res.BootID, release)); err != nil {
		return "", fmt.Errorf("golden: root tree: %w", err)
	}
	cfgFile := filepath.Join(tmp, SyslinuxCfg)
	if err := os.WriteFile(cfgFile, []byte(syslinuxConfig(res.RootUUID)), 0o644); err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}

	// The image, under a temporary name next to the output.
	dir := filepath.Dir(cfg.Output)
	f, err := os.CreateTemp(dir, "."+filepath.Base(cfg.Output)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("golden: create the image in %s: %w", dir, err)
	}
	img := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(img)
		}
	}()
	if err := f.Truncate(cfg.Size); err != nil {
		f.Close()
		return "", fmt.Errorf("golden: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	if err := partition(ctx, img, l); err != nil {
		return "", err
	}
	cfg.Log.Info(fmt.Sprintf("partitioned: boot %d MiB at sector %d, root %d MiB at sector %d", l.bootSectors*diskimage.SectorSize>>20, l.bootStart, l.rootSectors*diskimage.SectorSize>>20, l.rootStart))
	if err := makeBoot(ctx, img, l, volID, cfg.Kernel, initrd, cfgFile); err != nil {
		return "", err
	}
	cfg.Log.Info(fmt.Sprintf("boot partition: syslinux, %s (%s), %s (%.1f MiB)", KernelName, release, InitrdName, float64(res.InitrdSize)/(1<<20)))
	if err := makeRoot(ctx, img, l, rootDir, res.RootUUID); err != nil {
		return "", err
	}
	cfg.Log.Info(fmt.Sprintf("root partition: ext4 %s, host name %s", res.RootUUID, cfg.Hostname))
	if err := writeMBR(img); err != nil {
		return "", err
	}

	// Read the table back.
	rf, err := os.Open(img)
	if err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	res.Table, err = diskimage.ReadTable(rf)
	rf.Close()
	if err != nil {
		return "", fmt.Errorf("golden: the written partition table does not read back: %w", err)
	}
	if err := os.Chmod(img, 0o644); err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	ok = true
	return img, nil
}

// herdBinary finds or builds the static herd executable.
func herdBinary(ctx context.Context, cfg *Config, tmp string) (string, error) {
	if cfg.HerdBinary != "" {
		if err := CheckStatic(cfg.HerdBinary); err != nil {
			return "", fmt.Errorf("golden: %w", err)
		}
		return cfg.HerdBinary, nil
	}
	src := cfg.SourceDir
	if src == "" {
		// This herd, when it is a static x86-64 executable (as make
		// build makes it): no Go toolchain needed.
		exe, err := initramfs.Self()
		if err == nil {
			err = CheckStatic(exe)
		}
		if err == nil {
			cfg.Log.Info(fmt.Sprintf("herd: this herd, %s (static)", exe))
			return exe, nil
		}
		dir, serr := initramfs.ModuleRoot("")
		if serr != nil {
			return "", fmt.Errorf("golden: the running herd cannot go into the image (%v), and there is no herd source tree here to build one (%v): use a herd built by make build (static), give --herd-binary FILE (a static herd), or give the source tree with --source DIR and install Go", err, serr)
		}
		src = dir
	}
	out := filepath.Join(tmp, "herd")
	start := time.Now()
	if err := buildHerd(ctx, src, out); err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	cfg.Log.Info(fmt.Sprintf("herd: built ./cmd/herd (static) in %v", time.Since(start).Round(time.Millisecond)))
	return out, nil
}

// buildInitrd stages the modules and writes the initrd.
func buildInitrd(ctx context.Context, cfg *Config, res *Result, herd, tmp, out string) error {
	stage := filepath.Join(tmp, "modules")
	if len(cfg.Modules) > 0 {
		db, err := kmod.Open(cfg.ModulesDir)
		if err != nil {
			return fmt.Errorf("golden: %w", err)
		}
		sel := db.Select(cfg.Modules, initramfs.ExtraSoftdeps)
		for _, m := range sel.Missing {
			cfg.Log.Warn(fmt.Sprintf("kernel %s has no module %s: left out of the initrd", res.KernelVersion, m))
		}
		if err := db.Stage(ctx, sel.Modules, stage, res.KernelVersion); err != nil {
			return fmt.Errorf("golden: %w", err)
		}
		res.Modules, res.MissingModules = sel.Modules, sel.Missing
	} else {
		stage = ""
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	files, err := writeInitrd(f, herd, stage)
	if err != nil {
		f.Close()
		return fmt.Errorf("golden: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	st, err := os.Stat(out)
	if err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	res.InitrdSize = st.Size()
	cfg.Log.Info(fmt.Sprintf("initrd: %d entries, %d modules, %.1f MiB", files, len(res.Modules), float64(st.Size())/(1<<20)))
	return nil
}

// syslinuxConfig boots the kernel at once, on the serial console too.
func syslinuxConfig(rootUUID string) string {
	return fmt.Sprintf(`# herd golden image
SERIAL 0 115200
DEFAULT herd
PROMPT 0
TIMEOUT 0
LABEL herd
  LINUX %s
  APPEND initrd=%s root=UUID=%s rw console=tty0 console=ttyS0,115200 quiet panic=10
`, KernelName, InitrdName, rootUUID)
}

// partition writes the MBR partition table with sfdisk.
func partition(ctx context.Context, img string, l layout) error {
	id, err := buildutil.RandomVolumeID()
	if err != nil {
		return err
	}
	script := fmt.Sprintf("label: dos\nlabel-id: 0x%08x\nunit: sectors\n\nstart=%d, size=%d, type=e, bootable\nstart=%d, size=%d, type=83\n",
		id, l.bootStart, l.bootSectors, l.rootStart, l.rootSectors)
	if err := run(ctx, []byte(script), "sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", img); err != nil {
		return fmt.Errorf("golden: partition table: %w", err)
	}
	return nil
}

// makeBoot makes the FAT file system, copies the files and installs
// syslinux, all at the partition's offset in the image file.
func makeBoot(ctx context.Context, img string, l layout, volID uint32, kernelFile, initrd, cfgFile string) error {
	off := l.bootStart * diskimage.SectorSize
	kib := l.bootSectors * diskimage.SectorSize / 1024
	// -h: the hidden sectors (the partition's start) that boot code adds
	// to the file system's sector numbers.
	if err := run(ctx, nil, "mkfs.vfat", "--offset", strconv.FormatInt(l.bootStart, 10), "-h", strconv.FormatInt(l.bootStart, 10),
		"-F", "16", "-n", "HERDBOOT", "-i", fmt.Sprintf("%08X", volID), img, strconv.FormatInt(kib, 10)); err != nil {
		return fmt.Errorf("golden: boot file system: %w", err)
	}
	at := fmt.Sprintf("%s@@%d", img, off)
	for _, c := range []struct{ src, dst string }{
		{kernelFile, KernelName}, {initrd, InitrdName}, {cfgFile, SyslinuxCfg},
	} {
		if err := run(ctx, nil, "mcopy", "-o", "-i", at, c.src, "::"+c.dst); err != nil {
			return fmt.Errorf("golden: copy %s to the boot partition: %w", c.dst, err)
		}
	}
	if err := run(ctx, nil, "syslinux", "--offset", strconv.FormatInt(off, 10), "--install", img); err != nil {
		return fmt.Errorf("golden: install syslinux: %w", err)
	}
	return nil
}

// makeRoot makes the ext4 file system from dir at the partition's offset
// and makes every file root's.
func makeRoot(ctx context.Context, img string, l layout, dir, uuid string) error {
	off := l.rootStart * diskimage.SectorSize
	kib := l.rootSectors * diskimage.SectorSize / 1024
	// -T default: 4 KiB blocks and 256-byte inodes, not the "small"
	// type's 1 KiB blocks; nodiscard: never punch the rest of the file.
	if err := run(ctx, nil, "mke2fs", "-q", "-F", "-t", "ext4", "-T", "default", "-L", "herd-root", "-U", uuid,
		"-d", dir, "-E", fmt.Sprintf("offset=%d,nodiscard,root_owner=0:0", off), img, strconv.FormatInt(kib, 10)+"k"); err != nil {
		return fmt.Errorf("golden: root file system: %w", err)
	}
	return chownRoot(ctx, img, off, dir)
}

// chownRoot makes the files of the root file system owned by root when
// the build ran as another user (mke2fs -d copies the owners), with
// debugfs on the image.
func chownRoot(ctx context.Context, img string, off int64, dir string) error {
	var cmds strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || (st.Uid == 0 && st.Gid == 0) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		fmt.Fprintf(&cmds, "sif %s uid 0\nsif %s gid 0\n", name, name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("golden: root tree: %w", err)
	}
	if cmds.Len() == 0 {
		return nil
	}
	script := dir + ".debugfs"
	if err := os.WriteFile(script, []byte(cmds.String()), 0o644); err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	if err := run(ctx, nil, "debugfs", "-w", "-f", script, fmt.Sprintf("%s?offset=%d", img, off)); err != nil {
		return fmt.Errorf("golden: make the root files root's: %w", err)
	}
	return nil
}

// writeMBR puts syslinux's boot code in the first 440 bytes, leaving the
// disk signature and the table.
func writeMBR(img string) error {
	code, err := os.ReadFile(MBRBin)
	if err != nil {
		return fmt.Errorf("golden: %w (apt-get install syslinux-common)", err)
	}
	if len(code) > 440 {
		return fmt.Errorf("golden: %s is %d bytes: more than the 440 bytes of boot code an MBR has room for", MBRBin, len(code))
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("golden: %w", err)
	}
	if _, err := f.WriteAt(code, 0); err != nil {
		f.Close()
		return fmt.Errorf("golden: write the boot code: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("golden: %w", err)
	}
	return f.Close()
}
