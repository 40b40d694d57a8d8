package initramfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/herdproject/herd/internal/atomicfile"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/gobusybox/src/pkg/bb"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/uio/llog"
)

// The u-root busybox (one binary of Commands that picks the command by
// the name it is called by, made with gobusybox) either comes built into
// herd or is compiled from herd's source tree:
//
//   - `make build` runs ./initramfs/internal/mkbb, which compiles it
//     (static, CGO_ENABLED=0) and writes PrebuiltDir: the binary, zstd
//     compressed, and a manifest; then it builds herd with the build tag
//     herd_embed, under which embed.go embeds both files. Such a herd
//     builds an initramfs with no Go toolchain and no source tree.
//   - Without the tag (go build ./..., go test, go run) nothing is
//     embedded and Build compiles the busybox from the source tree, as
//     mkbb does.

// PrebuiltDir is where mkbb writes the prebuilt busybox, relative to this
// package's directory: the files embed.go embeds. It is not in git.
const PrebuiltDir = "prebuilt"

// Names in PrebuiltDir.
const (
	PrebuiltBusybox  = "bb.zst"
	PrebuiltManifest = "manifest"
)

// BuiltinTag is the build tag under which herd embeds the prebuilt
// busybox.
const BuiltinTag = "herd_embed"

// ErrNoBusybox is wrapped by Build's error when this herd has no busybox
// built in and there is no source tree to compile one from.
var ErrNoBusybox = errors.New("this herd has no u-root commands (init, a rescue shell) built in: it was not built by make build")

// Manifest describes a busybox binary: what mkbb writes next to it and
// what a herd built with it embeds.
type Manifest struct {
	// Commands are the import paths of the u-root commands in it.
	Commands []string
	// Size in bytes and SHA256 (hex) of the uncompressed binary.
	Size   int64
	SHA256 string
}

// Marshal returns the manifest's text: a comment, then "size N",
// "sha256 HEX" and one "command PATH" line per command.
func (m Manifest) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString("# herd's prebuilt u-root busybox (initramfs/internal/mkbb, run by make build)\n")
	fmt.Fprintf(&b, "size %d\nsha256 %s\n", m.Size, m.SHA256)
	for _, c := range m.Commands {
		fmt.Fprintf(&b, "command %s\n", c)
	}
	return b.Bytes()
}

// ParseManifest reads what Marshal wrote.
func ParseManifest(text []byte) (Manifest, error) {
	var m Manifest
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, _ := strings.Cut(line, " ")
		val = strings.TrimSpace(val)
		switch key {
		case "size":
			s, err := strconv.ParseInt(val, 10, 64)
			if err != nil || s <= 0 {
				return m, fmt.Errorf("busybox manifest line %d: bad size %q", n, val)
			}
			m.Size = s
		case "sha256":
			if b, err := hex.DecodeString(val); err != nil || len(b) != sha256.Size {
				return m, fmt.Errorf("busybox manifest line %d: bad sha256 %q", n, val)
			}
			m.SHA256 = val
		case "command":
			if val == "" {
				return m, fmt.Errorf("busybox manifest line %d: command without a path", n)
			}
			m.Commands = append(m.Commands, val)
		default:
			return m, fmt.Errorf("busybox manifest line %d: unknown key %q", n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if m.Size == 0 || m.SHA256 == "" || len(m.Commands) == 0 {
		return m, errors.New("busybox manifest: size, sha256 or commands missing")
	}
	return m, nil
}

// BuildBusybox compiles Commands from the herd source tree src into one
// static busybox binary (CGO_ENABLED=0, stripped, -trimpath) for Linux
// on goarch ("" = the host's) at out, and returns its manifest. It needs
// the Go toolchain; tmp is an empty or missing directory for the
// generated source.
func BuildBusybox(src, out, goarch, tmp string, log *llog.Logger) (Manifest, error) {
	if err := checkModule(src); err != nil {
		return Manifest{}, err
	}
	if log == nil {
		log = llog.New(slog.LevelWarn, func(string, ...any) {})
	}
	env := golang.Default(golang.DisableCGO(), golang.WithGOOS("linux"), golang.WithGOARCH(goarch), golang.WithWorkingDir(src))
	if err := bb.BuildBusybox(log.AtLevel(slog.LevelInfo), &bb.Opts{
		Env:          env,
		GenSrcDir:    tmp,
		CommandPaths: Commands,
		BinaryPath:   out,
		GoBuildOpts:  &golang.BuildOpts{},
	}); err != nil {
		return Manifest{}, fmt.Errorf("u-root busybox from %s: %w", src, err)
	}
	return manifestOf(out)
}

func manifestOf(bin string) (Manifest, error) {
	f, err := os.Open(bin)
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", bin, err)
	}
	return Manifest{Commands: slices.Clone(Commands), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// WritePrebuilt writes the busybox bin, zstd compressed, and its manifest
// m into dir as PrebuiltBusybox and PrebuiltManifest (what embed.go
// embeds). Each file is replaced atomically.
func WritePrebuilt(dir, bin string, m Manifest) error {
	raw, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return err
	}
	z := enc.EncodeAll(raw, nil)
	enc.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, PrebuiltBusybox), z, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, PrebuiltManifest), m.Marshal(), 0o644)
}

// builtin is the busybox embedded in this herd (embed.go); both empty
// when built without BuiltinTag.
type builtin struct {
	zbb, manifest string
}

// HasBuiltinBusybox reports whether this herd carries the prebuilt u-root
// busybox (built by make build, with the herd_embed tag).
func HasBuiltinBusybox() bool { return embedded.zbb != "" }

// extractBuiltin writes the embedded busybox to out and returns its
// manifest. It fails when the manifest's commands are not Commands (the
// prebuilt files were stale when herd was built).
func extractBuiltin(b builtin, out string) (Manifest, error) {
	m, err := ParseManifest([]byte(b.manifest))
	if err != nil {
		return m, fmt.Errorf("built-in busybox: %w", err)
	}
	if !slices.Equal(m.Commands, Commands) {
		return m, fmt.Errorf("built-in busybox holds %s, this herd wants %s: it was built from stale files; rebuild herd with make build",
			strings.Join(baseNames(m.Commands), " "), strings.Join(baseNames(Commands), " "))
	}
	dec, err := zstd.NewReader(strings.NewReader(b.zbb))
	if err != nil {
		return m, err
	}
	defer dec.Close()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return m, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), dec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return m, fmt.Errorf("built-in busybox: %w", err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
		return m, fmt.Errorf("built-in busybox: %d bytes with SHA-256 %s, its manifest says %d bytes, %s", n, sum, m.Size, m.SHA256)
	}
	return m, nil
}

func baseNames(pkgs []string) []string {
	var n []string
	for _, p := range pkgs {
		n = append(n, path.Base(p))
	}
	return n
}

// HerdMain is the import path of herd's main package.
const HerdMain = ModulePath + "/cmd/herd"

// Self returns the path of the running program when it is herd
// (./cmd/herd) and a static executable, which can then go into an
// initramfs as it is. Otherwise (a test binary, go run with cgo) the
// error says why not.
func Self() (string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Path != HerdMain {
		p := "unknown"
		if ok {
			p = bi.Path
		}
		return "", fmt.Errorf("the running program is %s, not %s", p, HerdMain)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if err := CheckStatic(exe); err != nil {
		return "", err
	}
	return exe, nil
}

// ErrNotStatic is wrapped by CheckStatic's error.
var ErrNotStatic = errors.New("not a static executable")

// CheckStatic makes sure path is a statically linked ELF executable: no
// program interpreter, no shared libraries.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", path, ErrNotStatic, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: %w (build herd with CGO_ENABLED=0, as make build does)", path, ErrNotStatic)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs %s: %w (build herd with CGO_ENABLED=0, as make build does)", path, strings.Join(libs, " "), ErrNotStatic)
	}
	return nil
}
