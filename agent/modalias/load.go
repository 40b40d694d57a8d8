package modalias

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Loader loads one kernel module by name. Loading a module that is
// already loaded, or built in, succeeds.
type Loader interface {
	Load(module string) error
}

// ErrNotFound is wrapped by a Loader's error for a name that is not a
// module it knows; LoadAll then tries the name as an alias ("crc32c",
// which modules.softdep names, is an alias of crc32c_generic).
var ErrNotFound = errors.New("no such module")

// MaxRounds bounds LoadAll's scan → match → load rounds.
const MaxRounds = 10

// settle is how long LoadAll waits after a round that loaded something
// before scanning again, so that devices the new drivers create
// (virtio_pci's virtio devices, a disk behind a SCSI host scanned
// asynchronously) have appeared.
// TODO: wait for the kernel's uevents to stop instead of a fixed time.
const settle = 100 * time.Millisecond

// LoadAll loads the modules the hardware under sys (normally
// /sys/devices; given the sysfs mount itself, /sys, its devices
// directory) asks for: it scans sys for modaliases (Scan), matches
// them against aliases and loads every matching module, then scans again
// for the devices the new drivers brought, until a round loads nothing
// new or MaxRounds have run. Before a module it loads that module's
// softdeps and extra "pre:" modules (see ExtraSoftdeps), recursively.
// Every module is tried at most once; one that fails to load is logged
// through logf (nil: no log) and skipped. loaded lists the modules that
// loaded, in order. err is the context's error, or the scan's when sys
// cannot be read.
func LoadAll(ctx context.Context, sys string, aliases []Alias, softdeps, extra map[string][]string, l Loader, logf func(string, ...any)) (loaded []string, err error) {
	st := newLoadState(aliases, softdeps, extra, l, logf)
	if fi, err := os.Stat(filepath.Join(sys, "devices")); err == nil && fi.IsDir() {
		sys = filepath.Join(sys, "devices")
	}
	for round := 1; ; round++ {
		mods, err := Scan(sys)
		if err != nil {
			return st.loaded, err
		}
		before := len(st.loaded)
		for _, ma := range mods {
			for _, m := range Match(aliases, ma) {
				if err := st.load(ctx, m, ma); err != nil {
					return st.loaded, err
				}
			}
		}
		if len(st.loaded) == before {
			return st.loaded, nil
		}
		if round == MaxRounds {
			st.logf("modalias: still loading after %d rounds: stopping", MaxRounds)
			return st.loaded, nil
		}
		t := time.NewTimer(settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return st.loaded, ctx.Err()
		case <-t.C:
		}
	}
}

// LoadModules loads the named modules in order (filesystems: ext4, vfat,
// which no device asks for), each after its softdeps and extra "pre:"
// modules, as LoadAll does; a module that fails is logged and skipped.
func LoadModules(ctx context.Context, names []string, aliases []Alias, softdeps, extra map[string][]string, l Loader, logf func(string, ...any)) (loaded []string, err error) {
	st := newLoadState(aliases, softdeps, extra, l, logf)
	for _, n := range names {
		if err := st.load(ctx, n, ""); err != nil {
			return st.loaded, err
		}
	}
	return st.loaded, nil
}

type loadState struct {
	aliases         []Alias
	softdeps, extra map[string][]string
	l               Loader
	logf            func(string, ...any)
	tried           map[string]bool
	loaded          []string
}

func newLoadState(aliases []Alias, softdeps, extra map[string][]string, l Loader, logf func(string, ...any)) *loadState {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &loadState{aliases: aliases, softdeps: softdeps, extra: extra, l: l, logf: logf, tried: map[string]bool{}}
}

// load loads module m (for the device with modalias why, "" when asked
// by name) after its pre-dependencies. Only the context's error is
// returned: load failures are logged.
func (st *loadState) load(ctx context.Context, m, why string) error {
	m = NormalizeName(m)
	if st.tried[m] {
		return nil
	}
	st.tried[m] = true
	for _, dep := range st.pre(m) {
		if err := st.load(ctx, dep, "softdep of "+m); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := st.l.Load(m)
	if errors.Is(err, ErrNotFound) {
		// Not a module name: an alias, as modprobe would read it.
		if alt := Match(st.aliases, m); len(alt) > 0 {
			for _, a := range alt {
				if err := st.load(ctx, a, "alias "+m); err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err != nil {
		st.logf("modalias: load %s%s: %v (skipped)", m, forWhat(why), err)
		return nil
	}
	st.logf("modalias: loaded %s%s", m, forWhat(why))
	st.loaded = append(st.loaded, m)
	return nil
}

func forWhat(why string) string {
	if why == "" {
		return ""
	}
	return fmt.Sprintf(" (for %s)", why)
}

// pre returns m's softdeps followed by its extra ones, each once.
func (st *loadState) pre(m string) []string {
	var out []string
	for _, d := range st.softdeps[m] {
		out = appendNew(out, NormalizeName(d))
	}
	for _, d := range st.extra[m] {
		out = appendNew(out, NormalizeName(d))
	}
	return out
}
