// Command mkbb compiles the u-root busybox herd's initramfs carries
// (initramfs.Commands: u-root's init and the rescue commands, one static
// binary) and writes it, zstd compressed, with its manifest into
// initramfs/prebuilt, where a herd built with -tags herd_embed embeds it.
// make build runs it from the source tree's root:
//
//	go run ./initramfs/internal/mkbb [-o initramfs/prebuilt] [-v]
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/herdproject/herd/initramfs"
	"github.com/u-root/uio/llog"
)

func main() {
	out := flag.String("o", filepath.Join("initramfs", initramfs.PrebuiltDir), "directory to write "+initramfs.PrebuiltBusybox+" and "+initramfs.PrebuiltManifest+" to")
	src := flag.String("source", "", "herd source tree (default: the module containing the working directory)")
	verbose := flag.Bool("v", false, "show gobusybox's messages")
	flag.Parse()
	if err := run(*out, *src, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "mkbb:", err)
		os.Exit(1)
	}
}

func run(out, src string, verbose bool) error {
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	if src == "" {
		dir, err := initramfs.ModuleRoot("")
		if err != nil {
			return err
		}
		src = dir
	}
	tmp, err := os.MkdirTemp("", "herd-mkbb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := llog.New(level, func(format string, args ...any) { fmt.Fprintf(os.Stderr, "mkbb: "+format+"\n", args...) })
	bin := filepath.Join(tmp, "bb")
	m, err := initramfs.BuildBusybox(src, bin, "", filepath.Join(tmp, "gen"), log)
	if err != nil {
		return err
	}
	if err := initramfs.WritePrebuilt(out, bin, m); err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(out, initramfs.PrebuiltBusybox))
	if err != nil {
		return err
	}
	fmt.Printf("mkbb: %s: %d u-root commands, %.1f MiB (%.1f MiB zstd)\n", out, len(m.Commands), float64(m.Size)/(1<<20), float64(st.Size())/(1<<20))
	return nil
}
