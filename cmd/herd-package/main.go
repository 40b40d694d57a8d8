// Command herd-package builds herd's .deb and .rpm packages with nfpm
// (github.com/goreleaser/nfpm, the packager of the Go ecosystem, used as
// a library: no hand-written control files or spec). make packages runs
// it:
//
//	herd-package --herd bin/herd --version 0.1.0 --man bin/man \
//	    --bash-completion bin/completion/herd.bash \
//	    --zsh-completion bin/completion/_herd --out bin/packages
//
// The packages hold the herd binary (a static build with u-root's tools
// embedded: herd build boot needs no Go and no source tree) and its
// dolly, dollyS and dollyC links; systemd units (herd-serve.service
// reading /etc/herd/herd.conf, herd-recv.socket and .service for dolly's
// -d socket activation); /etc/herd/herd.conf (a configuration file the
// package manager keeps when the administrator changed it); an example
// inventory; the man pages and the bash and zsh completions; and, as
// dependencies, the distribution packages herd runs (iPXE and pxelinux
// for the boot tree, mke2fs, sfdisk, mkfs.vfat, kmod for the initramfs).
package main

import (
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Dependencies per format: what herd runs at run time, by each
// distribution family's package names.
var (
	debDepends = []string{
		"ipxe", "pxelinux", "syslinux-common", // the boot tree's iPXE and pxelinux files
		"e2fsprogs", "dosfstools", "fdisk", "util-linux", "kmod", "mtools", "extlinux", // the initramfs's tools, the agent's file systems and boot loader
	}
	debRecommends = []string{
		"mmdebstrap", "grub-pc-bin", "grub-efi-amd64-bin", "syslinux", // herd image build / golden
		"xfsprogs", "btrfs-progs", "zstd", "xz-utils",
	}
	debSuggests = []string{"ipmitool", "qemu-system-x86", "ovmf"}
	rpmDepends  = []string{
		"ipxe-bootimgs-x86", "syslinux-tftpboot", "syslinux-nonlinux",
		"e2fsprogs", "dosfstools", "util-linux", "kmod", "mtools", "syslinux-extlinux",
	}
	rpmRecommends = []string{"xfsprogs", "btrfs-progs", "zstd", "xz"}
)

// config is the command line.
type config struct {
	herd, version, release, man, bash, zsh, conf, inventory, units, out, formats string
}

func main() {
	var c config
	flag.StringVar(&c.herd, "herd", "bin/herd", "the herd `BINARY` to package (make build's: static, with the u-root tools embedded)")
	flag.StringVar(&c.version, "version", "", "package `VERSION` (the one herd version prints; required)")
	flag.StringVar(&c.release, "release", "1", "package `RELEASE`")
	flag.StringVar(&c.man, "man", "bin/man", "`DIR` of generated man pages (NAME.SECTION)")
	flag.StringVar(&c.bash, "bash-completion", "", "bash completion `FILE`")
	flag.StringVar(&c.zsh, "zsh-completion", "", "zsh completion `FILE`")
	flag.StringVar(&c.conf, "conf", "docs/herd.conf.example", "`FILE` installed as /etc/herd/herd.conf")
	flag.StringVar(&c.inventory, "inventory", "packaging/inventory.example", "example inventory `FILE`")
	flag.StringVar(&c.units, "units", "packaging/systemd", "`DIR` of systemd units")
	flag.StringVar(&c.out, "out", "bin/packages", "output `DIR`")
	flag.StringVar(&c.formats, "formats", "deb,rpm", "package `FORMATS`")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "herd-package: unexpected argument %q (see -h)\n", flag.Arg(0))
		os.Exit(2)
	}
	paths, err := build(c, time.Now())
	if err != nil {
		fmt.Fprintf(os.Stderr, "herd-package: %v\n", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

// build writes one package per format into c.out and returns their
// paths.
func build(c config, now time.Time) ([]string, error) {
	if c.version == "" {
		return nil, errors.New("--version: required (the version herd version prints)")
	}
	version, err := packageVersion(c.version)
	if err != nil {
		return nil, err
	}
	formats := strings.Split(c.formats, ",")
	for i, f := range formats {
		formats[i] = strings.TrimSpace(f)
		if _, err := nfpm.Get(formats[i]); err != nil {
			return nil, fmt.Errorf("--formats %s: %w (deb, rpm)", c.formats, err)
		}
	}
	tmp, err := os.MkdirTemp("", "herd-package")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	contents, err := contentsOf(c, tmp)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, format := range formats {
		p, err := packageFormat(c, format, version, contents, now)
		if err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// versionRE is what a package version may be: digits first (dpkg and
// rpm both compare it), then letters, digits, '.', '+', '~'.
var versionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// packageVersion turns herd's version ("0.1.0", "v0.2.0",
// "0.1.0-12-gabc1234", "0.1.0-dirty") into a package version both dpkg
// and rpm order right: a leading v is dropped, '-' becomes '+' (a build
// after the release: 0.1.0+12.gabc1234).
func packageVersion(v string) (string, error) {
	s := strings.TrimPrefix(v, "v")
	s = strings.NewReplacer("-", "+").Replace(s)
	// One '+' at most: the rest become '.'.
	if i := strings.Index(s, "+"); i >= 0 {
		s = s[:i+1] + strings.ReplaceAll(s[i+1:], "+", ".")
	}
	if !versionRE.MatchString(s) {
		return "", fmt.Errorf("--version %q: want a version starting with a digit (letters, digits, '.', '-', '+', '~')", v)
	}
	return s, nil
}

// contentsOf lists the packages' files; man pages are gzipped into tmp.
func contentsOf(c config, tmp string) (files.Contents, error) {
	for _, f := range []struct{ flag, path string }{{"--herd", c.herd}, {"--conf", c.conf}, {"--inventory", c.inventory}} {
		if st, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%s: %w", f.flag, err)
		} else if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("%s %s: not a regular file", f.flag, f.path)
		}
	}
	mode := func(m os.FileMode) *files.ContentFileInfo { return &files.ContentFileInfo{Mode: m} }
	cs := files.Contents{
		{Source: c.herd, Destination: "/usr/bin/herd", FileInfo: mode(0o755)},
		{Source: "herd", Destination: "/usr/bin/dolly", Type: files.TypeSymlink},
		{Source: "herd", Destination: "/usr/bin/dollyS", Type: files.TypeSymlink},
		{Source: "herd", Destination: "/usr/bin/dollyC", Type: files.TypeSymlink},
		{Source: c.conf, Destination: "/etc/herd/herd.conf", Type: files.TypeConfigNoReplace, FileInfo: mode(0o644)},
		{Source: c.inventory, Destination: "/usr/share/doc/herd/examples/inventory", FileInfo: mode(0o644)},
		{Destination: "/var/lib/herd", Type: files.TypeDir, FileInfo: mode(0o755)},
	}
	units, err := filepath.Glob(filepath.Join(c.units, "*.service"))
	if err != nil {
		return nil, err
	}
	sockets, _ := filepath.Glob(filepath.Join(c.units, "*.socket"))
	units = append(units, sockets...)
	if len(units) == 0 {
		return nil, fmt.Errorf("--units %s: no systemd units (*.service, *.socket) in it", c.units)
	}
	sort.Strings(units)
	for _, u := range units {
		cs = append(cs, &files.Content{Source: u, Destination: "/lib/systemd/system/" + filepath.Base(u), FileInfo: mode(0o644)})
	}
	pages, err := manPages(c.man, tmp)
	if err != nil {
		return nil, err
	}
	cs = append(cs, pages...)
	if c.bash != "" {
		cs = append(cs, &files.Content{Source: c.bash, Destination: "/usr/share/bash-completion/completions/herd", FileInfo: mode(0o644)})
	}
	if c.zsh != "" {
		cs = append(cs,
			&files.Content{Source: c.zsh, Destination: "/usr/share/zsh/vendor-completions/_herd", FileInfo: mode(0o644), Packager: "deb"},
			&files.Content{Source: c.zsh, Destination: "/usr/share/zsh/site-functions/_herd", FileInfo: mode(0o644), Packager: "rpm"})
	}
	return cs, nil
}

// manPageRE is a man page's file name: NAME.SECTION.
var manPageRE = regexp.MustCompile(`^[A-Za-z0-9._-]+\.([1-8])$`)

// manPages gzips every NAME.SECTION page of dir into tmp and lists them
// under /usr/share/man/manSECTION/.
func manPages(dir, tmp string) (files.Contents, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--man: %w (make docs writes the man pages)", err)
	}
	var cs files.Contents
	for _, e := range ents {
		m := manPageRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		gz := filepath.Join(tmp, e.Name()+".gz")
		if err := gzipFile(filepath.Join(dir, e.Name()), gz); err != nil {
			return nil, err
		}
		cs = append(cs, &files.Content{Source: gz, Destination: "/usr/share/man/man" + m[1] + "/" + e.Name() + ".gz", FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	if len(cs) == 0 {
		return nil, fmt.Errorf("--man %s: no man pages (NAME.SECTION) in it (make docs writes them)", dir)
	}
	return cs, nil
}

// gzipFile compresses src into dst (no name or time in the header, so
// the same page gives the same bytes).
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(out, gzip.BestCompression)
	if err != nil {
		out.Close()
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return fmt.Errorf("gzip %s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// packageFormat writes the package of one format.
func packageFormat(c config, format, version string, contents files.Contents, now time.Time) (string, error) {
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", fmt.Errorf("--formats: %w (deb, rpm)", err)
	}
	info := &nfpm.Info{
		Name:          "herd",
		Arch:          "amd64",
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Release:       c.release,
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "herd developers <herd@example.org>",
		Vendor:        "herd",
		Homepage:      "https://github.com/herdproject/herd",
		License:       "Apache-2.0",
		Description: "install and refresh Linux clusters over the network\n" +
			"herd PXE-boots every node into its agent, streams stage2 or whole-disk\n" +
			"images through a dolly-style TCP ring (chain or tree, dead nodes bypassed,\n" +
			"verified per node), writes them to the nodes' disks, customizes\n" +
			"each installed system and boots it. It drives the nodes' BMCs (IPMI,\n" +
			"Redfish) and takes dolly's and dolly+'s command lines.",
		MTime: now,
		Overridables: nfpm.Overridables{
			Contents: contents,
		},
	}
	switch format {
	case "deb":
		info.Depends, info.Recommends, info.Suggests = debDepends, debRecommends, debSuggests
	case "rpm":
		info.Depends, info.Recommends = rpmDepends, rpmRecommends
		info.RPM.Group = "System Environment/Base"
		info.RPM.Summary = "Install and refresh Linux clusters over the network"
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("%s: %w", format, err)
	}
	name := pkgr.ConventionalFileName(info)
	path := filepath.Join(c.out, name)
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		os.Remove(path + ".tmp")
		return "", fmt.Errorf("%s: %w", format, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(path+".tmp", path)
}
