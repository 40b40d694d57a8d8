package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdproject/herd/imagebuilder/debimage"
	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/imagebuilder/golden"
	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/herdproject/herd/internal/logging"
	"github.com/klauspost/compress/zstd"
	"github.com/spf13/pflag"
)

const imageUsage = `Usage: herd image build|golden|capture|info [OPTIONS] ...

Build, capture and inspect whole-disk images.

  build    build a Debian 12 golden image (BIOS and UEFI) with mmdebstrap
  golden   build a small bootable golden image (no root, no loop devices)
  capture  read a golden node's disk (or an image file) into IMAGE.zst
  info     print an image's size, data size, digests and partition table

Send an image with 'herd send --file "golden.img.zst >> /dev/vda"' (cooked:
each node decodes it while writing) or 'herd send -I golden.img -O /dev/vda'
(raw). Run 'herd image COMMAND --help' for a command's options.
`

func herdImage(ctx context.Context, args []string, env Env) error {
	if err := groupHelp(env, args, imageUsage, "want a command: herd image build|golden|capture|info"); err != nil {
		return err
	}
	switch args[0] {
	case "build":
		return imageBuild(ctx, args[1:], env)
	case "golden":
		return imageGolden(ctx, args[1:], env)
	case "capture":
		return imageCapture(ctx, args[1:], env)
	case "info":
		return imageInfo(ctx, args[1:], env)
	}
	return usagef("unknown image command %q: want build, golden, capture or info (see herd image --help)", args[0])
}

// parseArgs is parseFlags for commands that take n positional arguments,
// named by what in the refusal.
func parseArgs(fs *pflag.FlagSet, env Env, usage string, args []string, n int, what, hint string) error {
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	switch {
	case fs.NArg() < n:
		return usagef("give %s%s", what, hint)
	case fs.NArg() > n:
		return usagef("unexpected argument %q%s", fs.Arg(n), hint)
	}
	return nil
}

const imageGoldenUsage = `Usage: herd image golden -o FILE [--root-tar FILE] [OPTIONS]
       herd image golden --root-tar FILE [OPTIONS]

Build a small bootable raw disk image, as an ordinary user (no root, no
loop devices): an MBR partition table (sfdisk) with syslinux's boot code;
partition 1, FAT16, bootable: syslinux, the kernel (vmlinuz) and herd's
initrd (initrd.img: the static herd binary as /init and the modules for
virtio, SATA, NVMe and common NICs, and ext4, with their dependencies);
partition 2, ext4 (mke2fs -d): /sbin/init (herd again), /etc/hostname,
hosts, machine-id, fstab (by UUID), systemd/network/50-wired.network
(DHCP) and placeholder SSH host keys: the files herd's agent rewrites in
every clone.

Booted, the initrd mounts the root by UUID and starts /sbin/init, which
prints on the console

  herd-booted host=<hostname> ip=<DHCP address or none> machine-id=<id>

and powers off. A clone installed by herd prints its own name, address
and machine-id.

--root-tar FILE writes the same root tree, besides the image (or alone,
without -o), as a zstd-compressed tar for install plans ('image
root.tar.zst --to /'): /boot/vmlinuz-<release> and
/boot/initrd.img-<release> (the image's kernel and initrd, for extlinux
on the node's own ext4 root), an /etc/fstab naming the root by
LABEL=root instead of the image's UUIDs, and the host's busybox
(apt-get install busybox) as /bin/busybox with its shared libraries and
/bin/sh, cat, echo, hostname, ls, mkdir linked to it, the shell of the
plan's %post (without busybox: a warning, and %post cannot run). Every
entry is root's, stamped with the build's time.

The kernel is the host's (default: the newest /boot/vmlinuz-*; its
release, read from the image, names the modules directory). The herd
binary must be static: this herd when built by 'make build' (or with
CGO_ENABLED=0), else ./cmd/herd is compiled from the source tree (Go
toolchain needed; --source DIR always compiles), or give --herd-binary.

Needs: sfdisk (fdisk), mkfs.vfat (dosfstools), mcopy (mtools), syslinux
and mbr.bin (syslinux, syslinux-common), mke2fs and debugfs (e2fsprogs),
depmod (kmod); a root tarball alone needs only depmod.

An existing output is refused unless --force; each output is written
under a temporary name and renamed when both are complete.

Output: progress on standard error; the image, its partitions, kernel and
root UUID, and the root tarball, its size, entries and shell on standard
output.

Options:
`

func imageGolden(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd image golden", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	out := fs.StringP("output", "o", "", "image `FILE` to write")
	rootTar := fs.String("root-tar", "", "also (or, without -o, only) write the root tree as a zstd tar `FILE` (root.tar.zst) for install plans")
	kernelPath := fs.String("kernel", "", "kernel image `FILE` (default: the newest /boot/vmlinuz-*)")
	modules := fs.String("modules", "", "kernel modules `DIR` (default /lib/modules/<the kernel's release>)")
	size := fs.String("size", "192M", "image `SIZE` (k, M, G)")
	bootSize := fs.String("boot-size", "64M", "boot partition `SIZE`")
	hostname := fs.String("hostname", golden.DefaultHostname, "the golden system's host `NAME`")
	herdBin := fs.String("herd-binary", "", "static herd `FILE` for /init and /sbin/init (default: this one if static, else built)")
	source := fs.String("source", "", "build herd from this source tree `DIR` instead of using this herd")
	force := fs.BoolP("force", "f", false, "replace an existing output")
	quiet := fs.BoolP("quiet", "q", false, "no progress messages")
	if err := parseArgs(fs, env, imageGoldenUsage, args, 0, "", " (see herd image golden --help)"); err != nil {
		return err
	}
	if *out == "" && *rootTar == "" {
		return usagef("give the image file: -o FILE, or the root tarball: --root-tar FILE (see herd image golden --help)")
	}
	if *out != "" && filepath.Clean(*out) == filepath.Clean(*rootTar) {
		return usagef("-o and --root-tar both name %s: give two files", *out)
	}
	n, err := parseSize(*size, "--size")
	if err != nil {
		return err
	}
	b, err := parseSize(*bootSize, "--boot-size")
	if err != nil {
		return err
	}
	log := logging.New(env.Stderr, "herd image golden", builderLevel(*quiet, false), logging.Plain)
	res, err := golden.Build(ctx, golden.Config{
		Output: *out, RootTar: *rootTar, Force: *force, Kernel: *kernelPath, ModulesDir: *modules,
		Size: int64(n), BootSize: int64(b), Hostname: *hostname,
		HerdBinary: *herdBin, SourceDir: *source, Log: log,
	})
	if errors.Is(err, golden.ErrExists) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	if res.Output != "" {
		fmt.Fprintf(env.Stdout, "%s: %s, host name %s, kernel %s\n", res.Output, sizeText(res.Size), res.Hostname, res.KernelVersion)
		fmt.Fprintf(env.Stdout, "  root UUID %s, boot %s, initrd %s with %d modules\n", res.RootUUID, res.BootID, mib(res.InitrdSize), len(res.Modules))
		printTable(env, res.Table, "  ")
	}
	if res.RootTar != "" {
		shell := "none: %post scripts cannot run (apt-get install busybox)"
		if res.Shell != "" {
			shell = fmt.Sprintf("/bin/sh (%s, %d libraries)", res.Shell, len(res.ShellLibraries))
		}
		fmt.Fprintf(env.Stdout, "%s: %s, %d entries, host name %s\n", res.RootTar, sizeText(res.RootTarSize), res.RootTarEntries, res.Hostname)
		fmt.Fprintf(env.Stdout, "  kernel %s: /boot/%s-%s, /boot/%s-%s (%s with %d modules)\n", res.KernelVersion,
			golden.KernelName, res.KernelVersion, golden.InitrdName, res.KernelVersion, mib(res.InitrdSize), len(res.Modules))
		fmt.Fprintf(env.Stdout, "  shell  %s\n", shell)
	}
	fmt.Fprintf(env.Stdout, "built in %v\n", res.Duration.Round(100*time.Millisecond))
	return nil
}

const imageBuildUsage = `Usage: herd image build -o FILE [--root-tar FILE] [OPTIONS]

Build a Debian 12 (bookworm) golden disk image with mmdebstrap (as root),
bootable by BIOS and UEFI firmware from one GPT disk:

  1  BIOS boot  1 MiB: GRUB's core.img (i386-pc), boot.img in the MBR
  2  ESP        FAT32: GRUB at \EFI\BOOT\BOOTX64.EFI, \EFI\debian\grubx64.efi
  3  root       ext4, the rest of the disk: the system

The system: minbase with systemd, udev, dbus, linux-image-amd64,
openssh-server, GRUB for both platforms, initramfs-tools, iproute2,
efibootmgr, zstd, systemd-resolved and the --include packages; no manual
pages, documentation or locales; systemd-networkd with DHCP on en* and
eth*; the serial console (ttyS0, 115200) and the screen; fstab by UUID;
host name "debian"; root locked unless --root-password-file. The GRUB
images are the system's own grub-mkimage's, and find the root by UUID.

Packages come from the host's apt sources for the suite (bookworm,
bookworm-updates, bookworm-security in /etc/apt/sources.list and
sources.list.d/*.list, *.sources), or from --mirror.

Builds are cached by a SHA-256 over every input (suite, source lines,
packages, hooks, sizes, password and key file contents) in --cache-dir
(KEY/disk.img, KEY/root.tar.zst, KEY/build.json); a build with the same
inputs is copied from there (sparse) without root. Downloaded packages
are kept in CACHE/debs for the next build.

Needs: mmdebstrap, sfdisk (fdisk), mkfs.fat (dosfstools), mcopy and mmd
(mtools), mke2fs (e2fsprogs); root, unless the build is cached.

Output: the phases with their times on standard error; the image's size,
data size, SHA-256, UUIDs, kernel and partitions, and the root tarball's
size on standard output.

Options:
`

func imageBuild(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd image build", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	out := fs.StringP("output", "o", "", "image `FILE` to write (default: leave it in the cache)")
	rootTar := fs.String("root-tar", "", "also copy the root tarball to `FILE` (root.tar.zst) for install plans")
	size := fs.String("size", "2G", "image `SIZE` (k, M, G)")
	espSize := fs.String("esp-size", "100M", "EFI system partition `SIZE`")
	suite := fs.String("suite", debimage.DefaultSuite, "Debian `SUITE`")
	mirrors := fs.StringArray("mirror", nil, "apt `URL` (or a 'deb URI SUITE COMPONENTS' line) instead of the host's sources; repeatable")
	include := fs.StringArray("include", nil, "extra `PACKAGE` to install; repeatable")
	hooks := fs.StringArray("hook", nil, "shell `CMD` run after herd's configuration, \"$1\" the root (mmdebstrap --customize-hook); repeatable")
	password := fs.String("root-password-file", "", "root's password: the first line of `FILE` (hashed with SHA-512 crypt; default: locked)")
	keys := fs.String("authorized-keys", "", "`FILE` to install as /root/.ssh/authorized_keys")
	cacheDir := fs.String("cache-dir", "", "cache `DIR` (default $"+debimage.CacheEnv+", else "+debimage.DefaultCacheDir+")")
	rebuild := fs.Bool("rebuild", false, "build even when the cache has the build, and replace it")
	force := fs.BoolP("force", "f", false, "replace an existing output")
	quiet := fs.BoolP("quiet", "q", false, "no progress messages")
	verbose := fs.BoolP("verbose", "v", false, "show mmdebstrap's output")
	if err := parseArgs(fs, env, imageBuildUsage, args, 0, "", " (see herd image build --help)"); err != nil {
		return err
	}
	if *out != "" && filepath.Clean(*out) == filepath.Clean(*rootTar) {
		return usagef("-o and --root-tar both name %s: give two files", *out)
	}
	n, err := parseSize(*size, "--size")
	if err != nil {
		return err
	}
	e, err := parseSize(*espSize, "--esp-size")
	if err != nil {
		return err
	}
	log := logging.New(env.Stderr, "herd image build", builderLevel(*quiet, *verbose), logging.Plain)
	res, err := debimage.Build(ctx, debimage.Config{
		Output: *out, RootTar: *rootTar, Force: *force, Suite: *suite, Mirrors: *mirrors,
		Packages: *include, Hooks: *hooks, Size: int64(n), ESPSize: int64(e),
		RootPasswordFile: *password, AuthorizedKeysFile: *keys, CacheDir: *cacheDir,
		Rebuild: *rebuild, Log: log,
	})
	if errors.Is(err, debimage.ErrExists) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	how := fmt.Sprintf("built in %v", res.Duration.Round(100*time.Millisecond))
	if res.Cached {
		how = fmt.Sprintf("cached (built %s in %v)", res.Built.Local().Format("2006-01-02 15:04"), res.Duration.Round(time.Second))
	}
	fmt.Fprintf(env.Stdout, "%s: Debian %s, kernel %s, %s\n", res.Image, res.Suite, res.KernelVersion, how)
	fmt.Fprintf(env.Stdout, "  size        %s\n", sizeText(res.Size))
	fmt.Fprintf(env.Stdout, "  data        %s\n", sizeText(res.DataSize))
	fmt.Fprintf(env.Stdout, "  sha256      %s\n", res.SHA256)
	fmt.Fprintf(env.Stdout, "  root        UUID=%s (ext4, label %s), ESP UUID=%s, machine-id %s\n", res.RootUUID, debimage.RootLabel, res.ESPID, res.MachineID)
	fmt.Fprintf(env.Stdout, "  partitions  gpt, disk GUID %s\n", res.DiskGUID)
	for _, p := range res.Partitions {
		fmt.Fprintf(env.Stdout, "    %d %-11s %10d %10d %10s  %s\n", p.Number, p.Name, p.Start, p.Sectors, mib(p.Size()), p.Type)
	}
	fmt.Fprintf(env.Stdout, "%s: %s, %d entries\n", res.RootTar, sizeText(res.RootTarSize), res.RootTarEntries)
	fmt.Fprintf(env.Stdout, "  cache       %s\n", filepath.Dir(res.CachedImage))
	if !res.Cached {
		var ph []string
		for _, p := range res.Phases {
			ph = append(ph, fmt.Sprintf("%s %v", p.Name, p.Duration.Round(100*time.Millisecond)))
		}
		fmt.Fprintf(env.Stdout, "  phases      %s\n", strings.Join(ph, ", "))
	}
	fmt.Fprintf(env.Stdout, "  took        %v\n", res.Took.Round(100*time.Millisecond))
	return nil
}

const imageCaptureUsage = `Usage: herd image capture DEVICE|FILE -o IMAGE.zst [OPTIONS]

Read a whole disk (a golden node's, or an image file) and write it
zstd-compressed, with its size in the frame header. The holes of a
sparse image file are not read; runs of zeros cost next to nothing in
the output. The output is written under a temporary name and renamed
when complete, so IMAGE.zst is never half-written.

A block device that is mounted read-write (itself, a partition, or an
LVM/RAID device on it) is refused: its file systems change while it is
read. Unmount it or remount it read-only first (or boot the node from
herd's initramfs); --force captures anyway. An existing output is
refused unless --force.

Output: size, data size (bytes the ring sends as data: 4 KiB blocks that
are not all zeros), SHA-256 and tree digest of the uncompressed image
(what every node reports after writing it, under --digest sha256 and
tree), compressed size and time.

Beside IMAGE.zst goes its digest cache, IMAGE.zst.herd-digest: the
SHA-256 of the file, the SHA-256 and tree digest of the decoded image, and
the file's size, times and inode. herd send and serve take the digest from there instead of
hashing (or decoding) the image again while they send it, as long as the
file is unchanged (--no-digest-cache hashes anyway).

Options:
`

func imageCapture(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd image capture", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	out := fs.StringP("output", "o", "", "`IMAGE.zst` to write")
	force := fs.BoolP("force", "f", false, "replace an existing output; capture a device mounted read-write")
	level := fs.String("level", "default", "zstd `LEVEL`: fastest, default, better or best")
	if err := parseArgs(fs, env, imageCaptureUsage, args, 1, "the device or image file to capture", " (see herd image capture --help)"); err != nil {
		return err
	}
	if *out == "" {
		return usagef("give the output: -o IMAGE.zst (see herd image capture --help)")
	}
	ok, lvl := zstd.EncoderLevelFromString(*level)
	if !ok {
		return usagef("--level %q: want fastest, default, better or best", *level)
	}
	res, err := diskimage.Capture(ctx, diskimage.CaptureOptions{Source: fs.Arg(0), Output: *out, Force: *force, Level: lvl})
	if errors.Is(err, diskimage.ErrExists) || errors.Is(err, diskimage.ErrMountedRW) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(env.Stderr, "herd image capture: warning: %s\n", w)
	}
	ratio := 0.0
	if res.CompressedSize > 0 {
		ratio = float64(res.Size) / float64(res.CompressedSize)
	}
	fmt.Fprintf(env.Stdout, "%s: captured %s\n", res.Output, res.Source)
	fmt.Fprintf(env.Stdout, "  size        %s\n", sizeText(res.Size))
	fmt.Fprintf(env.Stdout, "  data        %s\n", sizeText(res.DataSize))
	fmt.Fprintf(env.Stdout, "  sha256      %s\n", res.SHA256)
	fmt.Fprintf(env.Stdout, "  tree        %s (herd's digest, --digest tree)\n", res.Tree)
	fmt.Fprintf(env.Stdout, "  compressed  %s, %.1f:1\n", sizeText(res.CompressedSize), ratio)
	if res.DigestCache != "" {
		fmt.Fprintf(env.Stdout, "  digests     %s\n", res.DigestCache)
	}
	fmt.Fprintf(env.Stdout, "  time        %v\n", res.Duration.Round(10*time.Millisecond))
	if res.Table != nil {
		printTable(env, res.Table, "  ")
	}
	return nil
}

const imageInfoUsage = `Usage: herd image info IMAGE [--json]

Describe a disk image: raw, or compressed whole with zstd, gzip, xz or
compress (by its first bytes, which must agree with a .zst, .gz, .xz or .Z
name). A compressed image is decoded as ring nodes decode it ('>>').

  format      raw, zstd, gzip, xz or compress, and the file's size
  size        the decoded image's size
  data        bytes the ring sends as data: 4 KiB blocks that are not all
              zeros (the rest travels as holes)
  sha256      of the decoded image: what every node reports after
              writing it under --digest sha256, and what sha256sum
              prints for a raw image
  tree        herd's tree digest of the decoded image (BLAKE3 over
              1 MiB leaves): what every node reports under --digest
              tree, the default
  partitions  the MBR partition table (primary and logical): number,
              bootable flag, start sector, sectors, size, type; for a
              GPT disk, the GUID partition table (number, start sector,
              sectors, size, type, name) and then the protective MBR

--json prints the same as one JSON object (sizes in bytes, sectors of 512
bytes), with file_sha256, the SHA-256 of a compressed image's file.

The digests go into a digest cache beside the image, IMAGE.herd-digest
(with the file's size, times and inode): herd send and serve take an
image's digest from there instead of hashing it again while they send it,
as long as the file is unchanged (--no-digest-cache hashes anyway). A
directory that cannot take the file only gets a warning.

Options:
`

func imageInfo(ctx context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd image info", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseArgs(fs, env, imageInfoUsage, args, 1, "the image to describe", " (see herd image info --help)"); err != nil {
		return err
	}
	info, err := diskimage.Inspect(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if _, isCache := info.DigestCache(); isCache {
		if _, err := info.SaveDigestCache(); err != nil {
			fmt.Fprintf(env.Stderr, "herd image info: warning: digest cache not written (herd send hashes the image itself): %v\n", err)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(env.Stdout, "%s\n", info.Path)
	switch info.Format {
	case diskimage.FormatRaw:
		alloc := ""
		if info.Allocated > 0 {
			alloc = fmt.Sprintf(", %s allocated", mib(info.Allocated))
		}
		fmt.Fprintf(env.Stdout, "  format      raw%s\n", alloc)
	default:
		ratio := 0.0
		if info.FileSize > 0 {
			ratio = float64(info.Size) / float64(info.FileSize)
		}
		fmt.Fprintf(env.Stdout, "  format      %s, %s, %.1f:1\n", info.Format, sizeText(info.FileSize), ratio)
	}
	fmt.Fprintf(env.Stdout, "  size        %s\n", sizeText(info.Size))
	fmt.Fprintf(env.Stdout, "  data        %s\n", sizeText(info.DataSize))
	fmt.Fprintf(env.Stdout, "  sha256      %s\n", info.SHA256)
	if info.Tree != "" {
		fmt.Fprintf(env.Stdout, "  tree        %s (herd's digest, --digest tree)\n", info.Tree)
	}
	switch {
	case info.GPT != nil:
		printGPT(env, info.GPT, "  ")
		printMBR(env, info.Table, "  ", "mbr         protective")
	case info.Table != nil:
		printTable(env, info.Table, "  ")
		if info.NoGPT != "" {
			fmt.Fprintf(env.Stdout, "  gpt         not read: %s\n", info.NoGPT)
		}
	default:
		fmt.Fprintf(env.Stdout, "  partitions  none: %s\n", info.NoTable)
	}
	return nil
}

// printGPT prints a GUID partition table, indented.
func printGPT(env Env, g *diskimage.GPT, indent string) {
	fmt.Fprintf(env.Stdout, "%spartitions  gpt, disk GUID %s, usable sectors %d to %d\n", indent, g.DiskGUID, g.FirstUsableLBA, g.LastUsableLBA)
	fmt.Fprintf(env.Stdout, "%s  %-3s %10s %10s %10s  %-20s  %s\n", indent, "#", "start", "sectors", "size", "type", "name")
	for _, p := range g.Partitions {
		typ := p.TypeName
		if typ == "" {
			typ = p.TypeGUID
		}
		line := fmt.Sprintf("%s  %-3d %10d %10d %10s  %-20s  %s", indent, p.Number, p.Start, p.Sectors, mib(p.Size()), typ, p.Name)
		fmt.Fprintln(env.Stdout, strings.TrimRight(line, " "))
	}
	for _, n := range g.Notes {
		fmt.Fprintf(env.Stdout, "%s  note: %s\n", indent, n)
	}
}

// printTable prints an MBR partition table, indented.
func printTable(env Env, t *diskimage.Table, indent string) {
	if t == nil {
		return
	}
	printMBR(env, t, indent, "partitions  "+t.Label)
}

// printMBR prints an MBR partition table under a heading.
func printMBR(env Env, t *diskimage.Table, indent, heading string) {
	code := ""
	if t.BootCode {
		code = ", boot code"
	}
	fmt.Fprintf(env.Stdout, "%s%s, disk id %s%s\n", indent, heading, t.DiskID, code)
	fmt.Fprintf(env.Stdout, "%s  %-3s %-4s %10s %10s %10s  %s\n", indent, "#", "boot", "start", "sectors", "size", "type")
	for _, p := range t.Partitions {
		boot := ""
		if p.Bootable {
			boot = "*"
		}
		name := strings.TrimSpace(fmt.Sprintf("%02x %s", p.Type, p.TypeName))
		fmt.Fprintf(env.Stdout, "%s  %-3d %-4s %10d %10d %10s  %s\n", indent, p.Number, boot, p.Start, p.Sectors, mib(p.Size()), name)
	}
	for _, n := range t.Notes {
		fmt.Fprintf(env.Stdout, "%s  note: %s\n", indent, n)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func sizeText(n int64) string { return fmt.Sprintf("%s (%d bytes)", mib(n), n) }

// goldenInit is the golden image's init (herd started as PID 1 under the
// name init): it returns only when it could not power the machine off.
func goldenInit(ctx context.Context, _ []string, env Env) int {
	err := goldeninit.Run(ctx, goldeninit.Config{})
	fmt.Fprintf(env.Stderr, "herd init: %v\n", err)
	return ExitFailed
}

// builderLevel is the image and boot-tree builders' level: progress
// (info), -v adds the tools' own output (debug), -q keeps the warnings.
func builderLevel(quiet, verbose bool) slog.Level {
	switch {
	case quiet:
		return slog.LevelWarn
	case verbose:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
