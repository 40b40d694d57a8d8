package modalias

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// maxModuleSize bounds a decompressed module image (the largest in a
// distribution kernel are a few tens of MiB).
const maxModuleSize = 512 << 20

// KernelLoader loads modules into the running kernel from a module tree
// (/lib/modules/<version>) by modules.dep. It is safe for concurrent use;
// a module it has loaded once is not inserted again.
type KernelLoader struct {
	dir            string
	paths          map[string]string   // module → file, as modules.dep names it
	deps           map[string][]string // module → its dependencies (names), modules.dep order
	builtin        map[string]bool     // modules.builtin
	builtinAliases []Alias             // aliases of built-in modules (modules.builtin.modinfo)

	mu   sync.Mutex
	done map[string]bool

	// insertFile and insertImage put a module into the kernel; tests
	// replace them. Defaults: finit_module(2) and init_module(2).
	insertFile  func(path string, f *os.File, params string) error
	insertImage func(path string, image []byte, params string) error
}

// NewKernelLoader reads modDir's modules.dep (required), and
// modules.builtin and modules.builtin.modinfo (optional: without them a
// built-in module's name is unknown to Load).
func NewKernelLoader(modDir string) (*KernelLoader, error) {
	k := &KernelLoader{
		dir:     modDir,
		paths:   map[string]string{},
		deps:    map[string][]string{},
		builtin: map[string]bool{},
		done:    map[string]bool{},
		insertFile: func(_ string, f *os.File, params string) error {
			return unix.FinitModule(int(f.Fd()), params, 0)
		},
		insertImage: func(_ string, image []byte, params string) error {
			return unix.InitModule(image, params)
		},
	}
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module tree: %w (run depmod for it)", err)
	}
	defer f.Close()
	if err := k.parseDep(f); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, line := range strings.Fields(string(b)) {
			k.builtin[ModuleName(line)] = true
		}
	} else if !errIsNotExist(err) {
		return nil, fmt.Errorf("module tree: %w", err)
	}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin.modinfo")); err == nil {
		// NUL-separated "module.key=value" records.
		for _, rec := range bytes.Split(b, []byte{0}) {
			key, val, ok := strings.Cut(string(rec), "=")
			mod, field, ok2 := strings.Cut(key, ".")
			if ok && ok2 && field == "alias" {
				k.builtinAliases = append(k.builtinAliases, Alias{Pattern: val, Module: NormalizeName(mod)})
				k.builtin[NormalizeName(mod)] = true
			}
		}
	} else if !errIsNotExist(err) {
		return nil, fmt.Errorf("module tree: %w", err)
	}
	return k, nil
}

// parseDep reads modules.dep: "PATH: DEP_PATH ..." per module.
func (k *KernelLoader) parseDep(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		path, rest, ok := strings.Cut(line, ":")
		if !ok || path == "" {
			return fmt.Errorf("line %d: want \"module.ko: dependencies...\"", n)
		}
		name := ModuleName(path)
		k.paths[name] = path
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, ModuleName(d))
		}
		k.deps[name] = deps
	}
	return sc.Err()
}

// ModuleName returns the module name of a module file path
// ("kernel/drivers/net/virtio_net.ko.xz" → "virtio_net").
func ModuleName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return NormalizeName(strings.TrimSuffix(base, ".ko"))
}

// Path returns the file of module name (absolute), and whether
// modules.dep lists it.
func (k *KernelLoader) Path(name string) (string, bool) {
	p, ok := k.paths[NormalizeName(name)]
	if !ok {
		return "", false
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(k.dir, p)
	}
	return p, true
}

// Load loads module (a name, '-' or '_') after the modules it depends on,
// deepest first. A module the kernel already has (EEXIST) or that is
// built in counts as loaded. An unknown name gives an error wrapping
// ErrNotFound.
func (k *KernelLoader) Load(module string) error {
	return k.LoadParams(module, "")
}

// LoadParams is Load with module parameters for module itself (as
// modprobe's "brd rd_nr=1 rd_size=65536"; its dependencies get none). A
// module already in the kernel keeps the parameters it was loaded with.
func (k *KernelLoader) LoadParams(module, params string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.load(NormalizeName(module), params, map[string]bool{})
}

func (k *KernelLoader) load(name, params string, visiting map[string]bool) error {
	if k.done[name] {
		return nil
	}
	path, ok := k.Path(name)
	if !ok {
		if k.builtin[name] || len(Match(k.builtinAliases, name)) > 0 {
			k.done[name] = true
			return nil
		}
		return fmt.Errorf("load module %s: %w in %s/modules.dep", name, ErrNotFound, k.dir)
	}
	if visiting[name] {
		return fmt.Errorf("load module %s: dependency loop in modules.dep", name)
	}
	visiting[name] = true
	deps := k.deps[name]
	// modules.dep lists a module's dependencies so that each comes
	// before those it needs: load from the end. Recursing keeps the
	// order right even when the list does not.
	for i := len(deps) - 1; i >= 0; i-- {
		if err := k.load(deps[i], "", visiting); err != nil {
			return fmt.Errorf("load module %s: dependency: %w", name, err)
		}
	}
	if err := k.insert(path, params); err != nil {
		return fmt.Errorf("load module %s (%s): %w", name, path, err)
	}
	k.done[name] = true
	return nil
}

// insert puts one module file into the kernel, uncompressed by finit_module
// and compressed ones by init_module after decompressing in memory.
func (k *KernelLoader) insert(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var dec io.Reader
	switch {
	case strings.HasSuffix(path, ".ko"):
		err = k.insertFile(path, f, params)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return err
	case strings.HasSuffix(path, ".ko.xz"):
		x, err := xz.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			return fmt.Errorf("xz: %w", err)
		}
		dec = x
	case strings.HasSuffix(path, ".ko.zst"):
		z, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxModuleSize))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer z.Close()
		dec = z
	case strings.HasSuffix(path, ".ko.gz"):
		g, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		dec = g
	default:
		return errors.New("unknown module file type (want .ko, .ko.xz, .ko.zst or .ko.gz)")
	}
	image, err := io.ReadAll(io.LimitReader(dec, maxModuleSize+1))
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	if len(image) > maxModuleSize {
		return fmt.Errorf("decompressed module larger than %d MiB", maxModuleSize>>20)
	}
	err = k.insertImage(path, image, params)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
