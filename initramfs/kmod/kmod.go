// Package kmod picks kernel modules out of a kernel's modules directory
// (/lib/modules/<release>) for an initramfs: the modules asked for, the
// modules they depend on (modules.dep), their soft dependencies
// (modules.softdep, resolved through modules.alias, plus the ones the
// kernel does not declare), and stages the set with a modules.dep,
// modules.alias and modules.softdep that depmod(8) generates for exactly
// that set.
package kmod

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DB is a kernel's module database, read from its modules directory.
type DB struct {
	// Dir is the modules directory (/lib/modules/<release>).
	Dir string

	paths    map[string]string   // module name → path relative to Dir
	deps     map[string][]string // module name → names it depends on
	softdeps map[string][]string // module name → softdep names or aliases (pre: and post:)
	aliases  map[string][]string // alias without wildcards → module names
	builtin  map[string]bool     // modules built into the kernel
}

// Name returns the module name of a module file or name: the base name
// without .ko and its compression suffix, '-' written as '_' as the
// kernel does ("kernel/drivers/net/virtio_net.ko.xz" → "virtio_net").
func Name(file string) string {
	b := path.Base(file)
	for _, suf := range []string{".xz", ".gz", ".zst"} {
		b = strings.TrimSuffix(b, suf)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// Open reads dir's modules.dep and, when present, modules.softdep,
// modules.alias and modules.builtin.
func Open(dir string) (*DB, error) {
	db := &DB{
		Dir:      dir,
		paths:    map[string]string{},
		deps:     map[string][]string{},
		softdeps: map[string][]string{},
		aliases:  map[string][]string{},
		builtin:  map[string]bool{},
	}
	if err := db.read("modules.dep", true, db.parseDep); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name  string
		parse func(io.Reader) error
	}{
		{"modules.softdep", db.parseSoftdep},
		{"modules.alias", db.parseAlias},
		{"modules.builtin", db.parseBuiltin},
	} {
		if err := db.read(f.name, false, f.parse); err != nil {
			return nil, err
		}
	}
	return db, nil
}

func (db *DB) read(name string, required bool, parse func(io.Reader) error) error {
	p := filepath.Join(db.Dir, name)
	f, err := os.Open(p)
	if os.IsNotExist(err) && !required {
		return nil
	}
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s: no modules.dep there: give the modules directory of this kernel (/lib/modules/<release>), or install the kernel's package", db.Dir)
		}
		return err
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

func lines(r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// parseDep reads "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2/jbd2.ko".
func (db *DB) parseDep(r io.Reader) error {
	return lines(r, func(line string) error {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("bad modules.dep line %q", line)
		}
		name := Name(mod)
		db.paths[name] = mod
		for _, d := range strings.Fields(rest) {
			db.deps[name] = append(db.deps[name], Name(d))
			if _, ok := db.paths[Name(d)]; !ok {
				db.paths[Name(d)] = d
			}
		}
		return nil
	})
}

// parseSoftdep reads "softdep ext4 pre: crypto-crc32c" (and the odd
// "softdep cifs gcm" without pre:/post:).
func (db *DB) parseSoftdep(r io.Reader) error {
	return lines(r, func(line string) error {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return nil
		}
		name := Name(f[1])
		for _, d := range f[2:] {
			if d == "pre:" || d == "post:" {
				continue
			}
			db.softdeps[name] = append(db.softdeps[name], d)
		}
		return nil
	})
}

// parseAlias reads "alias crypto-crc32c crc32c_generic". Only aliases
// without wildcards matter here (softdeps name crypto algorithms and
// such, never device IDs).
func (db *DB) parseAlias(r io.Reader) error {
	return lines(r, func(line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			return nil
		}
		db.aliases[f[1]] = append(db.aliases[f[1]], Name(f[2]))
		return nil
	})
}

// parseBuiltin reads "kernel/net/packet/af_packet.ko".
func (db *DB) parseBuiltin(r io.Reader) error {
	return lines(r, func(line string) error {
		db.builtin[Name(line)] = true
		return nil
	})
}

// Has reports whether the kernel has name as a loadable module.
func (db *DB) Has(name string) bool {
	_, ok := db.paths[Name(name)]
	return ok
}

// Builtin reports whether name is built into the kernel.
func (db *DB) Builtin(name string) bool { return db.builtin[Name(name)] }

// Path returns the module file's path relative to Dir.
func (db *DB) Path(name string) string { return db.paths[Name(name)] }

// resolve maps a softdep target, a module name or an alias, to modules.
func (db *DB) resolve(target string) []string {
	if db.Has(target) {
		return []string{Name(target)}
	}
	return db.aliases[target]
}

// Selection is the outcome of Select.
type Selection struct {
	// Modules are the selected module names, sorted.
	Modules []string
	// Builtin are requested modules that are built into the kernel
	// (nothing to copy).
	Builtin []string
	// Missing are requested modules this kernel has neither as a module
	// nor built in.
	Missing []string
}

// Select returns the modules named, their dependency closure from
// modules.dep and their soft dependencies, from modules.softdep and from
// extraSoftdeps (module → modules it needs without declaring it, such as
// ext4 → crc32c_generic), closed again. A soft dependency that names
// neither a module nor an alias is ignored (it is built in or absent).
func (db *DB) Select(names []string, extraSoftdeps map[string][]string) Selection {
	var s Selection
	seen := map[string]bool{}
	var queue []string
	missing := map[string]bool{}
	add := func(n string) {
		if seen[n] {
			return
		}
		if !db.Has(n) {
			// A dependency or softdep (possibly through an alias) that
			// this kernel does not ship: report it, never select it.
			if !missing[n] && !db.Builtin(n) {
				missing[n] = true
				s.Missing = append(s.Missing, n)
			}
			return
		}
		seen[n] = true
		queue = append(queue, n)
	}
	for _, n := range names {
		n = Name(n)
		switch {
		case db.Has(n):
			add(n)
		case db.Builtin(n):
			s.Builtin = append(s.Builtin, n)
		default:
			if !missing[n] {
				missing[n] = true
				s.Missing = append(s.Missing, n)
			}
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range db.deps[n] {
			add(d)
		}
		soft := append(append([]string(nil), db.softdeps[n]...), extraSoftdeps[n]...)
		for _, t := range soft {
			for _, m := range db.resolve(t) {
				add(m)
			}
		}
	}
	for n := range seen {
		s.Modules = append(s.Modules, n)
	}
	sort.Strings(s.Modules)
	sort.Strings(s.Builtin)
	sort.Strings(s.Missing)
	return s
}

// metaFiles are copied from the modules directory when present: depmod
// reads modules.builtin(.modinfo) to write modules.builtin.bin and
// modules.builtin.alias.bin (so loaders know what needs no loading), and
// modules.order to order modules.dep.
var metaFiles = []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"}

// Stage copies the modules, as they are (compressed or not), to
// root/lib/modules/<release>/<their path> with the metadata depmod
// needs, then runs `depmod -b root <release>` so that modules.dep,
// modules.alias and modules.softdep describe exactly this set. depmod
// (kmod) must be installed.
func (db *DB) Stage(ctx context.Context, modules []string, root, release string) error {
	dst := filepath.Join(root, "lib", "modules", release)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, m := range modules {
		rel := db.Path(m)
		if rel == "" {
			return fmt.Errorf("module %s is not in %s", m, db.Dir)
		}
		if err := copyFile(filepath.Join(db.Dir, rel), filepath.Join(dst, rel)); err != nil {
			return err
		}
	}
	for _, f := range metaFiles {
		err := copyFile(filepath.Join(db.Dir, f), filepath.Join(dst, f))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	depmod, err := lookDepmod()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, depmod, "-b", root, release)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s -b %s %s: %w: %s", depmod, root, release, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func lookDepmod() (string, error) {
	if p, err := exec.LookPath("depmod"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/depmod", "/sbin/depmod"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("depmod not found: install kmod (apt-get install kmod)")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
