// Package boottree writes the boot tree herd's boot services serve: the
// kernel (vmlinuz), herd's initramfs built for it (initramfs.cpio.gz, or
// .zst), the iPXE and pxelinux binaries for TFTP, and default boot
// scripts that boot the local disk (boot.ipxe, pxelinux.cfg/default) for
// machines herd has no install for. It is what `herd build boot` runs.
package boottree

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/initramfs/kernel"
	"github.com/herdproject/herd/internal/atomicfile"
	"github.com/herdproject/herd/pxe/bootlayout"
)

// DefaultMaxSize is the largest compressed initramfs Build accepts unless
// told otherwise: every node fetches it over TFTP or HTTP at boot.
const DefaultMaxSize = 40 << 20

// Compression choices besides initramfs.Gzip and initramfs.Zstd.
const (
	// Auto picks zstd when the kernel's configuration (config-<release>
	// next to it) has CONFIG_RD_ZSTD=y, else gzip.
	Auto initramfs.Compression = "auto"
)

// ErrTooBig is returned when the initramfs exceeds MaxSize.
var ErrTooBig = errors.New("initramfs too big")

// Config is what Build writes. Zero values are defaults.
type Config struct {
	// Kernel is the bzImage to boot (required).
	Kernel string
	// ModulesDir: "" = /lib/modules/<the kernel's release>.
	ModulesDir string
	// Dir is the boot tree (required); created when missing.
	Dir string
	// Compression: initramfs.Gzip, initramfs.Zstd or Auto; "" = gzip,
	// which every kernel and the boot services' default name expect.
	Compression initramfs.Compression
	// MaxSize in bytes of the compressed initramfs: 0 = DefaultMaxSize,
	// negative = no limit.
	MaxSize int64
	// Initramfs settings passed through (see initramfs.Config).
	Modules    []string
	HerdBinary string
	SourceDir  string
	Extra      []string
	Verbose    bool
	// Log receives progress (info) and warnings; nil discards them.
	Log *slog.Logger
}

// Result describes the written tree.
type Result struct {
	// Kernel and Initramfs are the written files' paths.
	Kernel, Initramfs string
	// Build describes the initramfs.
	Build initramfs.Result
	// Duration of the whole build.
	Duration time.Duration
}

// Build writes the boot tree. The initramfs is written under a temporary
// name and renamed when complete and within MaxSize, so a tree being
// served never holds a partial one.
func Build(ctx context.Context, cfg Config) (Result, error) {
	start := time.Now()
	var res Result
	if cfg.Kernel == "" {
		return res, errors.New("no kernel given")
	}
	if cfg.Dir == "" {
		return res, errors.New("no output directory given")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	release, err := kernel.Version(cfg.Kernel)
	if err != nil {
		return res, err
	}
	comp, err := chooseCompression(cfg.Compression, cfg.Kernel, release, cfg.Log)
	if err != nil {
		return res, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return res, err
	}

	// The initramfs.
	name := bootlayout.InitramfsBase + comp.Ext()
	res.Initramfs = filepath.Join(cfg.Dir, name)
	tmp, err := os.CreateTemp(cfg.Dir, "."+name+".*")
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp.Name())
	b, err := initramfs.Build(ctx, initramfs.Config{
		Kernel: cfg.Kernel, KernelVersion: release, ModulesDir: cfg.ModulesDir,
		Modules: cfg.Modules, Out: tmp, Compression: comp,
		HerdBinary: cfg.HerdBinary, SourceDir: cfg.SourceDir, Extra: cfg.Extra,
		Log: cfg.Log, Verbose: cfg.Verbose,
	})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	res.Build = b
	if err := checkSize(name, b.Size, cfg.MaxSize); err != nil {
		return res, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return res, err
	}
	if err := os.Rename(tmp.Name(), res.Initramfs); err != nil {
		return res, err
	}
	// An initramfs of the other compression is stale now.
	for _, c := range []initramfs.Compression{initramfs.Gzip, initramfs.Zstd} {
		if c == comp {
			continue
		}
		old := filepath.Join(cfg.Dir, bootlayout.InitramfsBase+c.Ext())
		if err := os.Remove(old); err == nil {
			cfg.Log.Info(fmt.Sprintf("removed the stale %s", old))
		}
	}

	// The kernel.
	res.Kernel = filepath.Join(cfg.Dir, bootlayout.Kernel)
	if err := atomicfile.Copy(cfg.Kernel, res.Kernel, 0o644); err != nil {
		return res, fmt.Errorf("kernel: %w", err)
	}

	// Firmware-side boot binaries, and the default scripts.
	if err := bootlayout.Prepare(cfg.Dir, func(m string) { cfg.Log.Warn(m) }); err != nil {
		return res, err
	}
	for _, f := range []struct {
		name string
		text string
	}{
		{bootlayout.IPXEScript, defaultIPXE},
		{bootlayout.PxelinuxDefault, defaultPxelinux},
	} {
		p := filepath.Join(cfg.Dir, f.name)
		if _, err := os.Stat(p); err == nil {
			cfg.Log.Info(fmt.Sprintf("kept the existing %s", p))
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return res, err
		}
		if err := atomicfile.Write(p, []byte(f.text), 0o644); err != nil {
			return res, err
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// The default boot scripts: a machine herd has no install for boots its
// own disk (herd's HTTP service answers known nodes with their own
// script; these are for everything else, or a foreign DHCP server
// pointing at the tree). On UEFI iPXE exits with an error: on success the
// boot manager would show its menu instead of going on to the disk (see
// pxe/httpboot's exitToNext).
const (
	defaultIPXE = `#!ipxe
# herd: default boot script: no install is scheduled, boot from the local disk.
echo herd: no install for ${net0/mac}: booting from the local disk
iseq ${platform} efi && exit 1 ||
exit
`
	defaultPxelinux = `# herd: a machine with no install scheduled boots from its disk
DEFAULT local
PROMPT 0
LABEL local
  LOCALBOOT 0
`
)

func chooseCompression(c initramfs.Compression, kernelPath, release string, log *slog.Logger) (initramfs.Compression, error) {
	switch c {
	case "":
		return initramfs.Gzip, nil
	case initramfs.Gzip, initramfs.Zstd:
		return c, nil
	case Auto:
		p := kernel.ConfigPath(kernelPath, release)
		kc, err := kernel.ReadConfig(p)
		if err != nil {
			log.Info(fmt.Sprintf("compression: %v; using gzip", err))
			return initramfs.Gzip, nil
		}
		if kc.Enabled("CONFIG_RD_ZSTD") {
			return initramfs.Zstd, nil
		}
		log.Info(fmt.Sprintf("compression: %s has no CONFIG_RD_ZSTD=y; using gzip", p))
		return initramfs.Gzip, nil
	}
	return "", fmt.Errorf("compression %q: want gzip, zstd or auto", c)
}

// checkSize fails when size exceeds max (max <= 0: no limit).
func checkSize(name string, size, max int64) error {
	if max > 0 && size > max {
		return fmt.Errorf("%w: %s is %s compressed, over the limit of %s: every node downloads it at boot; leave modules or tools out, try zstd, or raise the limit",
			ErrTooBig, name, MiB(size), MiB(max))
	}
	return nil
}

// MiB formats a size in MiB with one decimal.
func MiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
