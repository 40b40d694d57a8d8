package golden

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
)

// The root tarball (Config.RootTar) is the golden root for install plans:
// a node partitions its disk, makes an ext4 root, unpacks the tarball into
// it, installs extlinux booting /boot/vmlinuz-<release> with
// /boot/initrd.img-<release> and root=UUID=<its file system>, and runs the
// plan's %post with /bin/sh in a chroot of the new root. It holds the tree
// the image's root partition holds, with these differences:
//
//	/etc/fstab                      RootTarFstab: the root by label, not
//	                                the image's UUIDs (the agent rewrites it)
//	/etc/herd-golden                names no UUID
//	/boot/vmlinuz-<release>         the image's kernel
//	/boot/initrd.img-<release>      the image's initrd.img (the same file)
//	/bin/busybox, /bin/{sh,...}     the host's busybox, when it has one,
//	/lib64/ld-linux-x86-64.so.2,    with the interpreter and shared
//	/lib/x86_64-linux-gnu/...       libraries it needs
//
// Every entry is root's (uid and gid 0, named root), has the tree's mode
// and the build's start time (to the second) as its modification time;
// directories come before their contents, names in byte order, symlinks
// are symlinks. Names start with "./", and "./" itself is the first entry,
// as `tar -C DIR -c .` writes them.

// RootTarFstab is /etc/fstab in the root tarball: the golden image's UUIDs
// do not exist on a node that a plan installed, and herd's agent rewrites
// the file from the plan anyway.
const RootTarFstab = "# herd golden root tarball: the root file system by its label. herd's\n" +
	"# agent rewrites this file from the node's install plan.\n" +
	"# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n" +
	"LABEL=root\t/\text4\terrors=remount-ro\t0\t1\n"

// HostBusybox is the build host's busybox (Debian package busybox,
// dynamically linked) that becomes the root tarball's /bin/busybox, the
// shell of install plans' %post scripts.
const HostBusybox = "/usr/bin/busybox"

// ShellApplets are the busybox applets the root tarball links in /bin
// (bin/NAME → busybox).
var ShellApplets = []string{"sh", "cat", "echo", "hostname", "ls", "mkdir"}

// LibraryDirs are searched, in order, for the shared libraries an ELF
// file names (DT_NEEDED); a library lands in the tarball at the path it
// was found at.
var LibraryDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"}

// rootTarFiles returns the tarball's configuration files: rootFiles with
// a fstab and an /etc/herd-golden that name no UUID.
func rootTarFiles(cfg *Config, kernelVersion string) []rootFile {
	files := rootFiles(cfg, "", "", kernelVersion)
	for i, f := range files {
		switch f.path {
		case "/etc/fstab":
			files[i].content = RootTarFstab
		case "/etc/herd-golden":
			files[i].content = fmt.Sprintf("herd golden root tarball: kernel %s (/boot/%s-%s, /boot/%s-%s), root by label\n/sbin/init is herd: it prints %q and powers off\n",
				kernelVersion, KernelName, kernelVersion, InitrdName, kernelVersion, goldeninit.BootedPrefix+" host=... ip=... machine-id=...")
		}
	}
	return files
}

// writeTarTree fills dir with the tarball's tree: writeRoot's, the kernel
// and the initrd in /boot, and the shell. It returns the libraries added
// for the shell (tree paths); shell is false when the host has no busybox.
func writeTarTree(cfg *Config, dir, herd, initrd, release string) (shell bool, libs []string, err error) {
	if err := writeRoot(dir, herd, rootTarFiles(cfg, release)); err != nil {
		return false, nil, err
	}
	boot := filepath.Join(dir, "boot")
	if err := buildutil.CopyFile(cfg.Kernel, filepath.Join(boot, KernelName+"-"+release), 0o644); err != nil {
		return false, nil, err
	}
	if err := buildutil.CopyFile(initrd, filepath.Join(boot, InitrdName+"-"+release), 0o644); err != nil {
		return false, nil, err
	}
	return addShell(dir, HostBusybox, cfg.Log)
}

// addShell puts the host's busybox at dir/bin/busybox with the applet
// links and the libraries it needs. A missing busybox is a warning.
func addShell(dir, busybox string, log *slog.Logger) (bool, []string, error) {
	if _, err := os.Stat(busybox); errors.Is(err, fs.ErrNotExist) {
		log.Warn(fmt.Sprintf("no %s on this host (apt-get install busybox): the root tarball has no /bin/sh, and install plans' %%post scripts will not run in it", busybox))
		return false, nil, nil
	} else if err != nil {
		return false, nil, err
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return false, nil, err
	}
	if err := buildutil.CopyFile(busybox, filepath.Join(bin, "busybox"), 0o755); err != nil {
		return false, nil, err
	}
	for _, a := range ShellApplets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
			return false, nil, err
		}
	}
	deps, err := SharedLibraries(busybox, LibraryDirs)
	if err != nil {
		return false, nil, err
	}
	var libs []string
	for _, p := range deps {
		added, err := copyHostPath(dir, p)
		if err != nil {
			return false, nil, fmt.Errorf("%s needs %s: %w", busybox, p, err)
		}
		libs = append(libs, added...)
	}
	sort.Strings(libs)
	return true, libs, nil
}

// SharedLibraries returns what the ELF executable exe needs to run: its
// program interpreter (PT_INTERP) and, recursively, the shared libraries
// in DT_NEEDED, each the first dirs/NAME that exists. The paths are the
// host's as named (a symlink is not resolved); nil for a static
// executable. A library found in no dir is an error.
func SharedLibraries(exe string, dirs []string) ([]string, error) {
	var out []string
	seen := map[string]bool{} // paths and sonames
	queue := []string{exe}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		interp, needed, err := elfDeps(p)
		if err != nil {
			return nil, err
		}
		if interp != "" && !seen[interp] {
			seen[interp] = true
			out = append(out, interp)
		}
		for _, n := range needed {
			if seen[n] {
				continue
			}
			seen[n] = true
			lib := ""
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(d, n)); err == nil {
					lib = filepath.Join(d, n)
					break
				}
			}
			if lib == "" {
				return nil, fmt.Errorf("%s needs %s, which is in none of %s", p, n, strings.Join(dirs, ", "))
			}
			if !seen[lib] {
				seen[lib] = true
				out = append(out, lib)
				queue = append(queue, lib)
			}
		}
	}
	return out, nil
}

// elfDeps reads an ELF file's interpreter and DT_NEEDED names.
func elfDeps(path string) (interp string, needed []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return "", nil, fmt.Errorf("%s is %v %v, not a 64-bit x86-64 ELF file", path, f.Class, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(prog.Open())
		if err != nil {
			return "", nil, fmt.Errorf("%s: interpreter: %w", path, err)
		}
		interp = string(bytes.TrimRight(b, "\x00"))
	}
	needed, err = f.DynString(elf.DT_NEEDED)
	if err != nil && f.Section(".dynamic") != nil {
		return "", nil, fmt.Errorf("%s: dynamic section: %w", path, err)
	}
	return interp, needed, nil
}

// copyHostPath copies the host file p into dir at the same path. A symlink
// becomes a symlink with the same target, and its target is copied too
// (relative targets resolved from the link's directory); directories on
// the way are made, not copied, whatever they are on the host (/lib64 is
// a link to usr/lib64 on a merged-/usr host). It returns the tree paths
// added; one that exists already is left alone.
func copyHostPath(dir, p string) ([]string, error) {
	var added []string
	for hops := 0; ; hops++ {
		if hops > 40 {
			return nil, fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		dst := filepath.Join(dir, p)
		if _, err := os.Lstat(dst); err == nil {
			return added, nil
		}
		st, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		added = append(added, p)
		switch {
		case st.Mode().IsRegular():
			return added, buildutil.CopyFile(p, dst, st.Mode().Perm())
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			if err := os.Symlink(target, dst); err != nil {
				return nil, err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(p), target)
			}
			p = filepath.Clean(target)
		default:
			return nil, fmt.Errorf("%s is neither a file nor a symlink", p)
		}
	}
}

// writeTar writes the tree under dir to w as a zstd-compressed tar, every
// entry root's with mtime as its modification time (see the comment at
// the top of this file).
func writeTar(w io.Writer, dir string, mtime time.Time) (buildutil.TreeStats, error) {
	return buildutil.WriteTree(w, dir, buildutil.TreeOptions{MTime: mtime})
}

// writeRootTarFile writes the tarball of dir under a temporary name in
// out's directory and returns that name; the caller renames it.
func writeRootTarFile(out, dir string, mtime time.Time) (string, buildutil.TreeStats, error) {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return "", buildutil.TreeStats{}, fmt.Errorf("create the root tarball in %s: %w", filepath.Dir(out), err)
	}
	st, err := writeTar(f, dir, mtime)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", st, fmt.Errorf("root tarball: %w", err)
	}
	return f.Name(), st, nil
}
