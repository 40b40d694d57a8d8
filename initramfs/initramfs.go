// Package initramfs builds herd's boot-stage initramfs: u-root's init as
// /init with the herd agent as its uinit, a few u-root commands for a
// rescue shell, the kernel modules for network, storage and filesystems
// (with their dependency closure and a depmod-generated modules.dep and
// modules.alias), and the user-space tools the install plans run (mke2fs,
// mkswap, sfdisk, mkfs.vfat, mkfs.xfs when installed, extlinux with
// mbr.bin and gptmbr.bin, blkid) with their shared libraries. It is assembled with github.com/u-root/mkuimage's
// uimage package and written compressed (gzip or zstd) to an io.Writer.
//
// Layout of the archive:
//
//	/init                        → bbin/init (u-root's init)
//	/bbin/bb, /bbin/{init,gosh,ls,ip,mount,dmesg,cat}
//	/bin/sh, /bin/defaultsh      → gosh (the rescue shell)
//	/bin/herd                    the herd binary (static)
//	/bin/uinit                   → herd; /etc/uinit.flags holds "agent"
//	/lib/modules/<release>/...   modules, modules.dep, modules.alias, ...
//	/usr/sbin/mke2fs, ...        host tools, their libraries under /lib
//	/usr/lib/syslinux/mbr/mbr.bin
//
// u-root's init runs /bin/uinit with the arguments in /etc/uinit.flags, so
// the agent starts as `herd agent` (herd takes the name it is called by,
// uinit, as "herd") with init as its parent, and reads its settings from
// /proc/cmdline. Arguments given with uroot.uinitargs= would come before
// "agent" and are not supported.
//
// Build needs no Go toolchain when herd was built by `make build`: the
// u-root commands (init and the rescue shell, one busybox binary) are
// built into herd (see busybox.go), and /bin/herd is the running herd,
// a static executable. Otherwise, or when Config.SourceDir is given, it
// compiles them with the Go toolchain from the herd source tree: the
// u-root commands come from the herd module's dependency graph (see
// tools.go).
package initramfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/initramfs/kmod"
	"github.com/herdproject/herd/internal/gobuild"
	"github.com/herdproject/herd/internal/iocount"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/ldd"
	"github.com/u-root/mkuimage/uimage"
	mkinitramfs "github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
)

// ModulePath is herd's module path; SourceDir must hold this module.
const ModulePath = "github.com/herdproject/herd"

// Commands are the u-root commands compiled into the initramfs's busybox
// (/bbin): init, and a rescue shell with a few tools. Each must also be
// imported by tools.go, or `go mod tidy` drops it from go.mod.
var Commands = []string{
	"github.com/u-root/u-root/cmds/core/init",
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/ip",
	"github.com/u-root/u-root/cmds/core/mount",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/cat",
}

// Kernel modules the initramfs carries, by job. A module this kernel does
// not have is a warning, not an error.
var (
	// NetworkModules: virtio (virtio_pci is the PCI transport virtio_net
	// and virtio_blk need), Intel, Mellanox, Broadcom, Realtek.
	NetworkModules = []string{"virtio_pci", "virtio_net", "e1000", "e1000e", "igb", "ixgbe", "i40e", "mlx4_en", "mlx5_core", "bnx2x", "tg3", "r8169"}
	// StorageModules: disks, and brd/loop for a stage2 in RAM.
	StorageModules = []string{"virtio_blk", "virtio_scsi", "sd_mod", "ahci", "nvme", "brd", "loop"}
	// FilesystemModules: what plans make, mount or receive as stage2.
	FilesystemModules = []string{"ext4", "xfs", "vfat", "squashfs", "isofs", "efivarfs"}
	// ExtraSoftdeps are dependencies modules.dep and modules.softdep do
	// not list: ext4 checksums with crc32c (it asks the crypto API for
	// "crc32c" at mount time), vfat's default codepage and iocharset.
	ExtraSoftdeps = map[string][]string{
		"ext4": {"crc32c_generic"},
		"vfat": {"nls_cp437", "nls_ascii"},
	}
)

// DefaultModules returns NetworkModules, StorageModules and
// FilesystemModules.
func DefaultModules() []string {
	var m []string
	m = append(m, NetworkModules...)
	m = append(m, StorageModules...)
	return append(m, FilesystemModules...)
}

// Tool is a host program (or file) copied into the initramfs at its host
// path, with its shared libraries.
type Tool struct {
	// Name is a program name looked up in /usr/sbin, /usr/bin, /sbin,
	// /bin, or an absolute path.
	Name string
	// Package is the Debian package that provides it (for the error
	// message when it is missing).
	Package string
	// Links are more names for it in the same directory (mkfs.ext4 for
	// mke2fs).
	Links []string
	// Optional tools that are missing are skipped.
	Optional bool
}

// Tools are the user-space tools the install plans run.
var Tools = []Tool{
	{Name: "mke2fs", Package: "e2fsprogs", Links: []string{"mkfs.ext4", "mkfs.ext3", "mkfs.ext2"}},
	{Name: "/etc/mke2fs.conf", Package: "e2fsprogs", Optional: true},
	{Name: "mkswap", Package: "util-linux"},
	{Name: "blkid", Package: "util-linux"},
	{Name: "sfdisk", Package: "fdisk"},
	{Name: "mkfs.vfat", Package: "dosfstools"},
	{Name: "extlinux", Package: "extlinux"},
	{Name: MBRBin, Package: "syslinux-common"},
	{Name: GPTMBRBin, Package: "syslinux-common"},
	{Name: "mkfs.xfs", Package: "xfsprogs", Optional: true},
}

// MBRBin is syslinux's master boot record, which extlinux installs need
// written to the disk's first 440 bytes; it is at the same path in the
// initramfs.
const MBRBin = "/usr/lib/syslinux/mbr/mbr.bin"

// GPTMBRBin is syslinux's boot code for GPT disks booted by BIOS.
const GPTMBRBin = "/usr/lib/syslinux/mbr/gptmbr.bin"

// Compression is the initramfs's compression.
type Compression string

// Compressions. Every x86 distribution kernel decompresses gzip; zstd
// needs CONFIG_RD_ZSTD (Linux 5.9 and later).
const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// Ext is the file name extension: ".gz" or ".zst".
func (c Compression) Ext() string {
	if c == Zstd {
		return ".zst"
	}
	return ".gz"
}

// Config is what Build builds. Zero values are defaults.
type Config struct {
	// Kernel is the bzImage the initramfs is for; its release (read from
	// the image's setup header) names the modules directory. If empty,
	// KernelVersion must be set.
	Kernel string
	// KernelVersion is the kernel release ("6.1.0-56-amd64"); "" = read
	// from Kernel. When both are set they must agree.
	KernelVersion string
	// ModulesDir is the kernel's modules directory; "" =
	// /lib/modules/<release>.
	ModulesDir string
	// Modules to include (with their dependencies); nil =
	// DefaultModules(). Empty and non-nil = no modules.
	Modules []string
	// Out receives the compressed archive (required).
	Out io.Writer
	// Compression: "" = Gzip.
	Compression Compression
	// HerdBinary is a herd binary to embed as /bin/herd; it should be
	// static. "" = the running herd when it is a static executable
	// (Self) and SourceDir is "", else SourceDir's ./cmd/herd built with
	// CGO_ENABLED=0.
	HerdBinary string
	// SourceDir is a herd source tree to compile the u-root commands
	// (and herd, without HerdBinary) from, with the Go toolchain. "" =
	// the busybox built into this herd (HasBuiltinBusybox) and the
	// running herd; what this herd does not have is compiled from the
	// module containing the working directory.
	SourceDir string
	// Extra are more host programs or files (names looked up as Tools'
	// are, or absolute paths), copied at their host paths with their
	// shared libraries.
	Extra []string
	// TempDir is where the build works; "" = a new directory under
	// os.TempDir(), removed afterwards.
	TempDir string
	// Log receives progress (info) and warnings; nil discards them.
	Log *slog.Logger
	// Verbose passes mkuimage's informational messages to Log too.
	Verbose bool
}

// Result describes a built initramfs.
type Result struct {
	// KernelVersion is the release the modules are for.
	KernelVersion string
	// Compression used.
	Compression Compression
	// Size is the compressed size in bytes (what went to Out); RawSize
	// the cpio archive's.
	Size, RawSize int64
	// Files is the number of archive entries (files, directories,
	// links, device nodes).
	Files int
	// Modules are the kernel modules included (names, sorted);
	// MissingModules those asked for that this kernel lacks.
	Modules, MissingModules []string
	// Tools are the host files added for Tools and Extra; Libraries the
	// shared libraries (and their symlinks) added for them.
	Tools, Libraries []string
	// Busybox says where the u-root commands came from ("built into
	// herd" or "compiled from DIR"); Herd where /bin/herd did ("this
	// herd, PATH", "compiled from DIR" or the HerdBinary given).
	Busybox, Herd string
}

func (c *Config) setDefaults() error {
	if c.Out == nil {
		return errors.New("initramfs: no output")
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Compression == "" {
		c.Compression = Gzip
	}
	if c.Compression != Gzip && c.Compression != Zstd {
		return fmt.Errorf("compression %q: want gzip or zstd", c.Compression)
	}
	if c.Kernel != "" {
		v, err := kernel.Version(c.Kernel)
		if err != nil {
			return err
		}
		if c.KernelVersion != "" && c.KernelVersion != v {
			return fmt.Errorf("kernel %s is release %s, not %s", c.Kernel, v, c.KernelVersion)
		}
		c.KernelVersion = v
	}
	if c.KernelVersion == "" {
		return errors.New("initramfs: no kernel: give the kernel image (or its release)")
	}
	if c.ModulesDir == "" {
		c.ModulesDir = filepath.Join("/lib/modules", c.KernelVersion)
	}
	if c.Modules == nil {
		c.Modules = DefaultModules()
	}
	if c.SourceDir != "" {
		return checkModule(c.SourceDir)
	}
	return nil
}

// ModuleRoot returns the root of the Go module containing dir ("" = the
// working directory), as `go env GOMOD` says.
func ModuleRoot(dir string) (string, error) {
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (building the initramfs needs the Go toolchain)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errNotInSource
	}
	return filepath.Dir(gomod), nil
}

var errNotInSource = fmt.Errorf("not in herd's source tree (module %s)", ModulePath)

// chooseSources picks the busybox and herd to use (see Config.SourceDir
// and HerdBinary): it sets cfg.SourceDir when something must be compiled,
// and returns the herd binary ("" = compile it) and whether the busybox
// is the built-in one.
func chooseSources(cfg *Config) (herd string, builtin bool, err error) {
	herd = cfg.HerdBinary
	if cfg.SourceDir != "" {
		return herd, false, nil
	}
	builtin = HasBuiltinBusybox()
	var selfErr error
	if herd == "" {
		herd, selfErr = Self()
	}
	if builtin && herd != "" {
		return herd, true, nil
	}
	dir, err := ModuleRoot("")
	if err == nil {
		err = checkModule(dir)
	}
	if err != nil {
		why := fmt.Sprintf("there is no herd source tree to compile them from (%v)", err)
		switch {
		case errors.Is(err, exec.ErrNotFound):
			why = "there is no Go toolchain (go) on PATH to compile them"
		case errors.Is(err, errNotInSource):
			why = fmt.Sprintf("the working directory is not in herd's source tree (module %s) to compile them from", ModulePath)
		}
		if !builtin {
			return "", false, fmt.Errorf("%w, and %s: build herd with make build in herd's source tree, or give the source tree with --source DIR (and install Go)", ErrNoBusybox, why)
		}
		return "", false, fmt.Errorf("initramfs: the running herd cannot be the agent (%v), and %s: use a herd built by make build (static), or give a static herd with --herd-binary FILE", selfErr, strings.Replace(why, "compile them", "build one", 1))
	}
	cfg.SourceDir = dir
	return herd, builtin, nil
}

func checkModule(dir string) error {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("%s: %w; %w", dir, err, errNotInSource)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			if strings.Trim(strings.TrimSpace(m), `"`) == ModulePath {
				return nil
			}
			return fmt.Errorf("%s holds module %s; %w", dir, m, errNotInSource)
		}
	}
	return fmt.Errorf("%s/go.mod names no module; %w", dir, errNotInSource)
}

// Build builds the initramfs cfg describes and writes it to cfg.Out.
func Build(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	res := Result{KernelVersion: cfg.KernelVersion, Compression: cfg.Compression}
	tmp := cfg.TempDir
	if tmp == "" {
		d, err := os.MkdirTemp("", "herd-initramfs-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(d)
		tmp = d
	}

	// Where the busybox of u-root commands and the herd binary come from.
	herd, builtin, err := chooseSources(&cfg)
	if err != nil {
		return res, err
	}

	// Kernel modules: select, stage, depmod.
	stage := filepath.Join(tmp, "modules")
	if len(cfg.Modules) > 0 {
		start := time.Now()
		db, err := kmod.Open(cfg.ModulesDir)
		if err != nil {
			return res, err
		}
		sel := db.Select(cfg.Modules, ExtraSoftdeps)
		for _, m := range sel.Missing {
			cfg.Log.Warn(fmt.Sprintf("kernel %s has no module %s (neither loadable nor built in): left out", cfg.KernelVersion, m))
		}
		if err := db.Stage(ctx, sel.Modules, stage, cfg.KernelVersion); err != nil {
			return res, err
		}
		res.Modules, res.MissingModules = sel.Modules, sel.Missing
		cfg.Log.Info(fmt.Sprintf("modules: %d from %s (%d asked for, %d built in, %d missing), depmod done in %v",
			len(sel.Modules), cfg.ModulesDir, len(cfg.Modules), len(sel.Builtin), len(sel.Missing), time.Since(start).Round(time.Millisecond)))
	}

	// The busybox and the herd binary.
	bb := filepath.Join(tmp, "bb")
	start := time.Now()
	if builtin {
		m, err := extractBuiltin(embedded, bb)
		if err != nil {
			return res, err
		}
		res.Busybox = "built into herd"
		cfg.Log.Info(fmt.Sprintf("busybox: %d u-root commands built into herd (%.1f MiB)", len(m.Commands), float64(m.Size)/(1<<20)))
	} else {
		if _, err := BuildBusybox(cfg.SourceDir, bb, "", filepath.Join(tmp, "bbsrc"), logger(cfg)); err != nil {
			return res, err
		}
		res.Busybox = "compiled from " + cfg.SourceDir
		cfg.Log.Info(fmt.Sprintf("busybox: compiled %d u-root commands from %s in %v", len(Commands), cfg.SourceDir, time.Since(start).Round(time.Millisecond)))
	}
	switch {
	case herd == "":
		start := time.Now()
		herd = filepath.Join(tmp, "herd")
		if err := buildHerd(ctx, cfg.SourceDir, herd); err != nil {
			return res, err
		}
		res.Herd = "compiled from " + cfg.SourceDir
		cfg.Log.Info(fmt.Sprintf("herd: built ./cmd/herd (static) in %v", time.Since(start).Round(time.Millisecond)))
	case herd == cfg.HerdBinary:
		res.Herd = herd
	default:
		res.Herd = "this herd, " + herd
		cfg.Log.Info(fmt.Sprintf("herd: this herd, %s (static)", herd))
	}
	if st, err := os.Stat(herd); err != nil {
		return res, fmt.Errorf("herd binary: %w", err)
	} else if !st.Mode().IsRegular() {
		return res, fmt.Errorf("herd binary %s is not a regular file", herd)
	}

	// Host tools.
	var files []string
	links := map[string]string{}
	for _, t := range append(append([]Tool(nil), Tools...), extraTools(cfg.Extra)...) {
		added, err := addTool(t, links)
		if err != nil {
			return res, err
		}
		files = append(files, added...)
		res.Tools = append(res.Tools, added...)
	}
	libs, err := ldd.FList(res.Tools...)
	if err != nil {
		return res, fmt.Errorf("shared libraries of %s: %w", strings.Join(res.Tools, " "), err)
	}
	sort.Strings(libs)
	res.Libraries = libs

	// Assemble with uimage.
	bbTmp := filepath.Join(tmp, "uimage")
	if err := os.MkdirAll(bbTmp, 0o755); err != nil {
		return res, err
	}
	out := &archiveOut{w: cfg.Out, comp: cfg.Compression}
	// The busybox as u-root's busybox builder lays it out: /bbin/bb and
	// a link to it per command; init and the shell are links to those.
	mods := []uimage.Modifier{
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithTempDir(bbTmp),
		uimage.WithFiles(bb + ":" + bbinDir + "/bb"),
		uimage.WithInit("/" + bbinDir + "/init"),
		uimage.WithShell("/" + bbinDir + "/gosh"),
		uimage.WithFiles(herd + ":bin/herd"),
		uimage.WithUinit("/bin/herd", "agent"),
		uimage.WithOutput(out),
	}
	if len(res.Modules) > 0 {
		mods = append(mods, uimage.WithFiles(filepath.Join(stage, "lib", "modules")+":lib/modules"))
	}
	for _, f := range files {
		mods = append(mods, uimage.WithFiles(f))
	}
	for _, c := range Commands {
		mods = append(mods, uimage.WithSymlink(bbinDir+"/"+path.Base(c), "/"+bbinDir+"/bb"))
	}
	for link, target := range links {
		mods = append(mods, uimage.WithSymlink(link, target))
	}
	start = time.Now()
	if err := uimage.Create(logger(cfg), mods...); err != nil {
		return res, fmt.Errorf("mkuimage: %w", err)
	}
	cfg.Log.Info(fmt.Sprintf("initramfs: the archive in %v", time.Since(start).Round(time.Millisecond)))

	// Every library a tool needs must be in.
	for _, l := range libs {
		if !out.names[strings.TrimPrefix(filepath.Clean(l), "/")] {
			return res, fmt.Errorf("initramfs: shared library %s was not added (mkuimage could not read it?)", l)
		}
	}
	res.Size, res.RawSize, res.Files = out.size.N, out.raw.N, len(out.names)
	return res, nil
}

// bbinDir is the busybox's directory in the archive.
const bbinDir = "bbin"

func logger(cfg Config) *llog.Logger {
	level := slog.LevelWarn
	if cfg.Verbose {
		level = slog.LevelInfo
	}
	return llog.New(level, func(format string, args ...any) {
		cfg.Log.Info("mkuimage: " + fmt.Sprintf(format, args...))
	})
}

// buildHerd compiles src's ./cmd/herd, static, for the host's
// architecture (the kernel's), to out.
func buildHerd(ctx context.Context, src, out string) error {
	return gobuild.StaticHerd(ctx, src, out, "")
}

func extraTools(names []string) []Tool {
	var t []Tool
	for _, n := range names {
		t = append(t, Tool{Name: n})
	}
	return t
}

// toolDirs are searched, in order, for tools given by name; /usr first,
// so that on a merged-/usr system the files land at their real paths.
var toolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// addTool finds t on the host and returns the files to add (absolute
// host paths, added at the same path in the archive); symlinks it needs
// go to links (archive path → absolute target).
func addTool(t Tool, links map[string]string) ([]string, error) {
	p := ""
	if filepath.IsAbs(t.Name) {
		if _, err := os.Lstat(t.Name); err == nil {
			p = t.Name
		}
	} else {
		for _, d := range toolDirs {
			if _, err := os.Lstat(filepath.Join(d, t.Name)); err == nil {
				p = filepath.Join(d, t.Name)
				break
			}
		}
	}
	if p == "" {
		if t.Optional {
			return nil, nil
		}
		if t.Package != "" {
			return nil, fmt.Errorf("%s is missing on this host: apt-get install %s", t.Name, t.Package)
		}
		return nil, fmt.Errorf("%s not found in %s", t.Name, strings.Join(toolDirs, ", "))
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	files := []string{real}
	if real != p {
		// mkfs.vfat → mkfs.fat: the file under its own name, the
		// asked-for name as a link.
		links[strings.TrimPrefix(p, "/")] = real
	}
	for _, l := range t.Links {
		links[strings.TrimPrefix(filepath.Join(filepath.Dir(real), l), "/")] = real
	}
	return files, nil
}

// archiveOut is mkuimage's output: a newc cpio stream, compressed, to w.
// It remembers the names written.
type archiveOut struct {
	w         io.Writer
	comp      Compression
	size, raw iocount.Writer
	names     map[string]bool
}

func (o *archiveOut) OpenWriter() (mkinitramfs.Writer, error) {
	o.size = iocount.Writer{W: o.w}
	o.names = map[string]bool{}
	var zw io.WriteCloser
	switch o.comp {
	case Zstd:
		// The kernel's decompressor allocates the frame's window;
		// 8 MiB keeps that modest.
		w, err := zstd.NewWriter(&o.size, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
		if err != nil {
			return nil, err
		}
		zw = w
	default:
		w, err := pgzip.NewWriterLevel(&o.size, pgzip.BestCompression)
		if err != nil {
			return nil, err
		}
		zw = w
	}
	o.raw = iocount.Writer{W: zw}
	return &recordWriter{rw: cpio.Newc.Writer(&o.raw), zw: zw, out: o}, nil
}

type recordWriter struct {
	rw  cpio.RecordWriter
	zw  io.WriteCloser
	out *archiveOut
}

func (r *recordWriter) WriteRecord(rec cpio.Record) error {
	r.out.names[rec.Name] = true
	return r.rw.WriteRecord(rec)
}

func (r *recordWriter) Finish() error {
	if err := cpio.WriteTrailer(r.rw); err != nil {
		return err
	}
	return r.zw.Close()
}
