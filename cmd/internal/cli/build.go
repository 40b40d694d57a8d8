package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/herdproject/herd/imagebuilder/boottree"
	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/internal/logging"
	"github.com/spf13/pflag"
)

const buildUsage = `Usage: herd build boot --kernel FILE [--modules DIR] -o DIR [OPTIONS]

Build what the boot services serve.

  boot   a boot tree: the kernel (vmlinuz), herd's initramfs for it
         (initramfs.cpio.gz, or .zst), the iPXE and pxelinux binaries for
         TFTP, and default boot scripts (boot.ipxe, pxelinux.cfg/default)
         that boot the local disk. Point 'herd serve --boot-dir' at DIR.

The initramfs runs u-root's init with the herd agent as its uinit and holds
a rescue shell (gosh, ls, ip, mount, dmesg, cat), the kernel modules for
network, storage and filesystems with their dependencies (from --modules,
default /lib/modules/<release>; the release is read from the kernel image),
and mke2fs, mkswap, sfdisk, mkfs.vfat, extlinux (with mbr.bin) and blkid
with their shared libraries, taken from this host. Modules the kernel lacks
are warnings.

A herd built by 'make build' needs nothing else: u-root's init and the
rescue commands are built into it, and the agent is this herd itself (a
static executable). A herd built otherwise (go build, go run) compiles
them, and a static herd, from herd's source tree with the Go toolchain:
run it inside the tree or give --source DIR (which always compiles).
Either way it needs depmod (kmod) and the tools above (e2fsprogs,
util-linux, fdisk, dosfstools, extlinux, syslinux-common).

Compression: gzip (the default) boots everywhere; zstd (Linux >= 5.9 with
CONFIG_RD_ZSTD=y; auto checks the kernel's config-<release>) is smaller and
written as initramfs.cpio.zst, a name herd serve does not yet look for.

Output: progress on standard error; on standard output the files written
and the initramfs's size. Fails when the compressed initramfs exceeds
--max-size (every node downloads it at boot).

Options:
`

func herdBuild(ctx context.Context, args []string, env Env) error {
	if err := groupHelp(env, args, buildUsage, "want a target: herd build boot"); err != nil {
		return err
	}
	if args[0] != "boot" {
		return usagef("unknown build target %q: want boot (see herd build --help)", args[0])
	}
	fs := pflag.NewFlagSet("herd build boot", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	kernelPath := fs.String("kernel", "", "kernel image `FILE` (a bzImage, e.g. /boot/vmlinuz-6.1.0-56-amd64)")
	modules := fs.String("modules", "", "kernel modules `DIR` (default /lib/modules/<the kernel's release>)")
	out := fs.StringP("output", "o", "", "boot tree `DIR` to write")
	compress := fs.String("compress", "gzip", "initramfs compression: gzip, zstd or auto (zstd when the kernel's config-<release> has CONFIG_RD_ZSTD=y)")
	maxSize := fs.String("max-size", "40M", "fail when the compressed initramfs is larger than `SIZE` (k, M, G); 0 = no limit")
	herdBin := fs.String("herd-binary", "", "embed this herd `FILE` (static) as the agent instead of this herd")
	source := fs.String("source", "", "compile the u-root commands and herd from this herd source tree `DIR` instead of using this herd's")
	extra := fs.StringSlice("extra", nil, "more host programs or files to include with their libraries (`NAME,...`)")
	verbose := fs.BoolP("verbose", "v", false, "show mkuimage's build messages")
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, buildUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if err == pflag.ErrHelp {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see herd build --help)", fs.Arg(0))
	}
	if *kernelPath == "" {
		return usagef("give the kernel image: --kernel /boot/vmlinuz-<release>")
	}
	if *out == "" {
		return usagef("give the boot tree directory: -o DIR")
	}
	limit := int64(-1)
	if *maxSize != "0" {
		n, err := parseSize(*maxSize, "--max-size")
		if err != nil {
			return err
		}
		limit = int64(n)
	}
	var comp initramfs.Compression
	switch *compress {
	case "gzip", "gz":
		comp = initramfs.Gzip
	case "zstd", "zst":
		comp = initramfs.Zstd
	case "auto":
		comp = boottree.Auto
	default:
		return usagef("--compress %q: want gzip, zstd or auto", *compress)
	}
	log := logging.New(env.Stderr, "herd build", builderLevel(false, *verbose), logging.Plain)
	res, err := boottree.Build(ctx, boottree.Config{
		Kernel: *kernelPath, ModulesDir: *modules, Dir: *out,
		Compression: comp, MaxSize: limit,
		HerdBinary: *herdBin, SourceDir: *source, Extra: *extra,
		Verbose: *verbose, Log: log,
	})
	if err != nil {
		return err
	}
	b := res.Build
	fmt.Fprintf(env.Stdout, "%s\n", res.Kernel)
	fmt.Fprintf(env.Stdout, "%s: %s (%s; %s unpacked), %d entries, %d modules for %s",
		res.Initramfs, boottree.MiB(b.Size), b.Compression, boottree.MiB(b.RawSize), b.Files, len(b.Modules), b.KernelVersion)
	if len(b.MissingModules) > 0 {
		fmt.Fprintf(env.Stdout, " (%d not in this kernel)", len(b.MissingModules))
	}
	fmt.Fprintf(env.Stdout, "\n  u-root commands %s; agent %s\n", b.Busybox, b.Herd)
	fmt.Fprintf(env.Stdout, "built in %v\n", res.Duration.Round(100*time.Millisecond))
	return nil
}
