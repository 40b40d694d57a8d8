// Package debimage builds a Debian 12 (bookworm) golden disk image with
// mmdebstrap, bootable by both BIOS and UEFI firmware from one GPT disk,
// and the same root as a tarball for install plans. It is what `herd
// image build` runs, and what herd's QEMU cluster tests clone when they
// need a real distribution.
//
// The image (a sparse raw file, DefaultSize), made on the image file
// without mounting anything or loop devices:
//
//	GPT (sfdisk), protective MBR with GRUB's boot.img
//	  1  BIOS boot  1 MiB at 1 MiB: GRUB's core.img (i386-pc)
//	  2  ESP        DefaultESPSize, FAT32 (mkfs.fat --offset, mtools):
//	                \EFI\BOOT\BOOTX64.EFI and \EFI\debian\grubx64.efi
//	  3  root       the rest, ext4 (mke2fs -d): the Debian system
//
// Both GRUB images are made by the image's own grub-mkimage (in a chroot
// of the built root) with a built-in configuration that finds the root
// file system by UUID and reads /boot/grub/grub.cfg, which the builder
// writes: one entry, linux /boot/vmlinuz-<version> root=UUID=<uuid> on
// the serial console and the screen. What grub-bios-setup would do to
// boot.img and core.img is done on bytes (PatchBootSector, PatchCore).
//
// The system: mmdebstrap --variant=minbase with DefaultPackages
// (systemd, udev, dbus, the kernel, OpenSSH, GRUB for both platforms,
// initramfs-tools, iproute2, efibootmgr, zstd, systemd-resolved) and the
// caller's extras, without documentation, manual pages and locales;
// systemd-networkd enabled with DHCP on en* and eth*; fstab by UUID;
// host name "debian"; a real /etc/machine-id and Debian's SSH host keys
// (herd's agent replaces them in every clone); root locked unless a
// password is given.
//
// Builds are cached by a key over every input (see Config and
// cacheKey), under CacheDir/<key>/ (disk.img, root.tar.zst, build.json),
// and the downloaded packages under CacheDir/debs, so that a build whose
// only change is a hook downloads nothing.
package debimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/internal/uuid"
	"github.com/herdproject/herd/ring/source"
)

// Defaults.
const (
	// DefaultSuite is the Debian release built.
	DefaultSuite = "bookworm"
	// DefaultSize of the image in bytes.
	DefaultSize = 2 << 30
	// DefaultESPSize of the EFI system partition in bytes.
	DefaultESPSize = 100 << 20
	// DefaultCacheDir is where builds are cached, unless the environment
	// variable CacheEnv or Config.CacheDir says otherwise.
	DefaultCacheDir = "/var/cache/herd/images"
	// CacheEnv names the environment variable with the cache directory.
	CacheEnv = "HERD_IMAGE_CACHE"
	// Hostname is the golden system's placeholder host name.
	Hostname = "debian"
	// RootLabel is the root file system's label.
	RootLabel = "root"
	// NetworkFile is the golden system's systemd-networkd configuration
	// (herd's agent writes its own 10-herd.network, which sorts first).
	NetworkFile = "/etc/systemd/network/50-dhcp.network"
)

// DefaultPackages are installed besides the minbase variant's.
var DefaultPackages = []string{
	"systemd-sysv", "udev", "dbus", "linux-image-amd64", "openssh-server",
	"grub-pc-bin", "grub-efi-amd64-bin", "initramfs-tools", "iproute2",
	"efibootmgr", "zstd", "systemd-resolved", "netbase", "dosfstools",
	// grub-install and grub-mkconfig: herd's agent installs the image's
	// own GRUB when a plan unpacks the root tarball onto a new disk.
	"grub2-common",
}

// ExcludePaths are kept out of every package (dpkg --path-exclude),
// IncludePaths kept despite that (the copyright files).
var (
	ExcludePaths = []string{"/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
		"/usr/share/locale/*", "/usr/share/lintian/*", "/usr/share/linda/*"}
	IncludePaths = []string{"/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias"}
)

// Partition type GUIDs of the image's GPT (diskimage's).
const (
	TypeBIOSBoot = diskimage.GUIDBIOSBoot
	TypeESP      = diskimage.GUIDESP
	TypeLinux    = diskimage.GUIDLinuxFilesystem
)

// Layout, in bytes.
const (
	align        = 1 << 20
	biosBootSize = 1 << 20
	// rootSlack is what the root file system needs beyond its files:
	// journal, inode tables, and room to boot and log.
	rootSlack = 256 << 20
)

// ErrExists is wrapped by Build's error when Output or RootTar exists and
// Force is not set.
var ErrExists = buildutil.ErrExists

// ErrNotRoot is wrapped by Build's error when it does not run as root.
var ErrNotRoot = errors.New("needs root")

// Config is what Build builds. Zero values are defaults.
type Config struct {
	// Output is where the image goes (a sparse copy, or a reflink, of
	// the cached one, written under a temporary name and renamed); "" =
	// only the cache (Result.CachedImage).
	Output string
	// RootTar is where the root tarball goes, like Output; "" = only the
	// cache (Result.CachedRootTar).
	RootTar string
	// Force replaces an existing Output or RootTar.
	Force bool
	// Suite is the Debian release; "" = DefaultSuite. The host's sources
	// for it, its -updates and -security suites are used.
	Suite string
	// Mirrors replace the host's apt sources: each a URL (becoming "deb
	// URL SUITE main") or a one-line source ("deb [options] URI SUITE
	// COMPONENTS"). nil = the host's sources for the suite.
	Mirrors []string
	// SourcesRoot is the root directory whose etc/apt sources are read;
	// "" = "/".
	SourcesRoot string
	// Packages are installed besides DefaultPackages.
	Packages []string
	// Hooks are shell commands run in order after the system is
	// configured (mmdebstrap --customize-hook; "$1" is the root
	// directory, chroot "$1" runs a command in it), before the initramfs
	// is made again and the GRUB, machine-id and password files are
	// written.
	Hooks []string
	// Size of the image in bytes (rounded up to MiB); 0 = DefaultSize.
	Size int64
	// ESPSize of the EFI system partition in bytes (rounded up to MiB);
	// 0 = DefaultESPSize.
	ESPSize int64
	// RootPasswordFile holds root's password (its first line, in clear
	// text, hashed with SHA-512 crypt as the agent does; or a crypt hash
	// starting with '$'); "" = root's password is locked.
	RootPasswordFile string
	// AuthorizedKeysFile becomes /root/.ssh/authorized_keys; "" = none.
	AuthorizedKeysFile string
	// CacheDir holds the finished builds and the downloaded packages; ""
	// = $HERD_IMAGE_CACHE, else DefaultCacheDir.
	CacheDir string
	// Rebuild builds even when the cache has the key, and replaces the
	// cache entry.
	Rebuild bool
	// Log receives progress (info) and warnings; nil discards them.
	Log *slog.Logger
}

// Partition is one entry of the image's GPT.
type Partition struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Type   string `json:"type"` // type GUID
	UUID   string `json:"uuid"` // partition GUID (PARTUUID)
	Start  int64  `json:"start"`
	// Sectors of 512 bytes.
	Sectors int64 `json:"sectors"`
}

// Offset is the partition's start in bytes.
func (p Partition) Offset() int64 { return p.Start * sectorSize }

// Size is the partition's length in bytes.
func (p Partition) Size() int64 { return p.Sectors * sectorSize }

// Phase is one timed step of a build.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
}

// Result describes a build: the one done now or the cached one reused.
type Result struct {
	// Key is the cache key; Cached is true when the build was reused.
	Key    string `json:"key"`
	Cached bool   `json:"-"`
	// Image and RootTar are Config.Output and Config.RootTar, or the
	// cached files when those are "".
	Image   string `json:"-"`
	RootTar string `json:"-"`
	// CachedImage and CachedRootTar are the files in the cache: do not
	// change them (boot a copy: CloneFile).
	CachedImage   string `json:"-"`
	CachedRootTar string `json:"-"`
	// Size of the image; DataSize its 4 KiB blocks that are not all
	// zeros; SHA256 of the whole image (as `herd image info`).
	Size     int64  `json:"size"`
	DataSize int64  `json:"data_size"`
	SHA256   string `json:"sha256"`
	// RootTarSize is the tarball's size, RootTarEntries its entries.
	RootTarSize    int64 `json:"root_tar_size"`
	RootTarEntries int   `json:"root_tar_entries"`
	// KernelVersion is the installed kernel's release (6.1.0-…-amd64):
	// /boot/vmlinuz-<it>, /boot/initrd.img-<it>.
	KernelVersion string `json:"kernel_version"`
	// RootUUID is the root file system's UUID; ESPID the EFI system
	// partition's FAT volume ID ("ABCD-1234"), both as fstab names them.
	RootUUID string `json:"root_uuid"`
	ESPID    string `json:"esp_id"`
	// DiskGUID is the GPT's disk GUID; Partitions its entries.
	DiskGUID   string      `json:"disk_guid"`
	Partitions []Partition `json:"partitions"`
	// MachineID is the image's /etc/machine-id.
	MachineID string `json:"machine_id"`
	// Suite, Sources (the apt lines used), Packages (all of them) and
	// Hooks are the build's inputs.
	Suite    string   `json:"suite"`
	Sources  []string `json:"sources"`
	Packages []string `json:"packages"`
	Hooks    []string `json:"hooks"`
	// Phases are the build's timed steps; Duration the whole build (of
	// the cached build when Cached). Took is this call's time.
	Phases   []Phase       `json:"phases"`
	Duration time.Duration `json:"duration"`
	Took     time.Duration `json:"-"`
	// Built is when the build finished.
	Built time.Time `json:"built"`
}

// setDefaults fills in defaults and checks what can be checked without
// the host.
func (c *Config) setDefaults() error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Suite == "" {
		c.Suite = DefaultSuite
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.ESPSize == 0 {
		c.ESPSize = DefaultESPSize
	}
	if c.SourcesRoot == "" {
		c.SourcesRoot = "/"
	}
	if c.CacheDir == "" {
		c.CacheDir = os.Getenv(CacheEnv)
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	c.Size = roundUp(c.Size, align)
	c.ESPSize = roundUp(c.ESPSize, align)
	if c.ESPSize < 34<<20 {
		return fmt.Errorf("debimage: EFI system partition of %d MiB: give at least 34 MiB (FAT32's minimum)", c.ESPSize>>20)
	}
	if min := int64(2*align+biosBootSize) + c.ESPSize + 512<<20; c.Size < min {
		return fmt.Errorf("debimage: image of %d MiB: give at least %d MiB", c.Size>>20, min>>20)
	}
	if c.Output != "" && c.RootTar != "" && filepath.Clean(c.Output) == filepath.Clean(c.RootTar) {
		return fmt.Errorf("debimage: the image and the root tarball are both %s: give two names", c.Output)
	}
	for _, p := range c.Packages {
		if !validPackage(p) {
			return fmt.Errorf("debimage: package %q: want a Debian package name (letters, digits, + - . :)", p)
		}
	}
	return nil
}

var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?([=/][A-Za-z0-9.+~:\-]+)?$`)

func validPackage(p string) bool { return packageRE.MatchString(p) }

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// Sources returns the apt source lines a build of cfg uses: cfg.Mirrors
// made into lines, or the host's sources for the suite family.
func Sources(cfg Config) ([]string, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return sourceLines(&cfg)
}

func sourceLines(cfg *Config) ([]string, error) {
	if len(cfg.Mirrors) > 0 {
		var out []string
		for _, m := range cfg.Mirrors {
			m = strings.TrimSpace(m)
			if strings.HasPrefix(m, "deb ") || strings.HasPrefix(m, "deb\t") {
				s, err := parseOneLine(m)
				if err != nil {
					return nil, fmt.Errorf("debimage: --mirror %q: %w", m, err)
				}
				out = append(out, s.String())
				continue
			}
			if !strings.Contains(m, "://") || strings.ContainsAny(m, " \t") {
				return nil, fmt.Errorf("debimage: --mirror %q: want a URL (http://deb.debian.org/debian) or a line \"deb URI SUITE COMPONENTS\"", m)
			}
			out = append(out, Source{Type: "deb", URI: m, Suite: cfg.Suite, Components: []string{"main"}}.String())
		}
		return out, nil
	}
	all, err := HostSources(cfg.SourcesRoot)
	if err != nil {
		return nil, fmt.Errorf("debimage: apt sources: %w", err)
	}
	sel := SelectSources(all, cfg.Suite)
	if len(sel) == 0 {
		return nil, fmt.Errorf("debimage: %w %s in %s (etc/apt/sources.list, sources.list.d/*.list, *.sources): give a mirror: --mirror http://deb.debian.org/debian",
			ErrNoSources, cfg.Suite, cfg.SourcesRoot)
	}
	out := make([]string, len(sel))
	for i, s := range sel {
		out[i] = s.String()
	}
	return out, nil
}

// packages is every package a build installs.
func (c *Config) packages() []string {
	var out []string
	for _, p := range append(append([]string(nil), DefaultPackages...), c.Packages...) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// inputs reads the files a build depends on.
func (c *Config) inputs() (password, keys []byte, err error) {
	if c.RootPasswordFile != "" {
		if password, err = os.ReadFile(c.RootPasswordFile); err != nil {
			return nil, nil, fmt.Errorf("debimage: root password: %w", err)
		}
		if pw := firstLine(password); pw == "" {
			return nil, nil, fmt.Errorf("debimage: root password file %s: its first line is empty: write the password there, or leave --root-password-file out to keep root locked", c.RootPasswordFile)
		}
	}
	if c.AuthorizedKeysFile != "" {
		if keys, err = os.ReadFile(c.AuthorizedKeysFile); err != nil {
			return nil, nil, fmt.Errorf("debimage: authorized keys: %w", err)
		}
	}
	return password, keys, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(s, "\r")
}

// Build builds the image and the root tarball, or reuses a cached build
// with the same key, and copies them to Output and RootTar.
func Build(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for _, o := range []struct{ path, what string }{{cfg.Output, "an image file"}, {cfg.RootTar, "a tarball file (root.tar.zst)"}} {
		if o.path != "" {
			if err := buildutil.CheckOutput(o.path, cfg.Force, o.what); err != nil {
				return nil, fmt.Errorf("debimage: %w", err)
			}
		}
	}
	sources, err := sourceLines(&cfg)
	if err != nil {
		return nil, err
	}
	password, keys, err := cfg.inputs()
	if err != nil {
		return nil, err
	}
	pkgs := cfg.packages()
	key := cacheKey(cfg.Suite, sources, pkgs, cfg.Hooks, cfg.Size, cfg.ESPSize, password, keys)
	entry := filepath.Join(cfg.CacheDir, key)
	cfg.Log.Info(fmt.Sprintf("cache key %s (%s)", key[:16], entry))

	var res *Result
	if !cfg.Rebuild {
		if res, err = loadCached(entry); err != nil {
			return nil, fmt.Errorf("debimage: %w", err)
		}
	}
	if res != nil {
		res.Cached = true
		cfg.Log.Info(fmt.Sprintf("cached: built %s in %v", res.Built.Format(time.RFC3339), res.Duration.Round(time.Second)))
	} else {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("debimage: building an image %w: mmdebstrap runs in root mode (chroot, mounts, device nodes): run as root (sudo), or use a cached build", ErrNotRoot)
		}
		if err := CheckTools(); err != nil {
			return nil, fmt.Errorf("debimage: %w", err)
		}
		if err := checkMirrors(ctx, sources, cfg.Suite); err != nil {
			return nil, err
		}
		b := &builder{cfg: &cfg, key: key, entry: entry, sources: sources, packages: pkgs, password: password, keys: keys}
		if res, err = b.build(ctx); err != nil {
			return nil, err
		}
	}
	res.CachedImage, res.CachedRootTar = filepath.Join(entry, ImageName), filepath.Join(entry, RootTarName)
	res.Image, res.RootTar = res.CachedImage, res.CachedRootTar
	if cfg.Output != "" {
		t := time.Now()
		if err := CloneFile(res.CachedImage, cfg.Output); err != nil {
			return nil, fmt.Errorf("debimage: image to %s: %w", cfg.Output, err)
		}
		res.Image = cfg.Output
		cfg.Log.Info(fmt.Sprintf("image: %s (from the cache in %v)", cfg.Output, time.Since(t).Round(time.Millisecond)))
		if err := copyDigestCache(res.CachedImage, cfg.Output); err != nil {
			cfg.Log.Debug(fmt.Sprintf("no digest cache for %s (herd send hashes it itself): %v", cfg.Output, err))
		}
	}
	if cfg.RootTar != "" {
		if err := CloneFile(res.CachedRootTar, cfg.RootTar); err != nil {
			return nil, fmt.Errorf("debimage: root tarball to %s: %w", cfg.RootTar, err)
		}
		res.RootTar = cfg.RootTar
	}
	res.Took = time.Since(start)
	return res, nil
}

// copyDigestCache gives dst, a copy of src, src's digest cache when that
// still describes src.
func copyDigestCache(src, dst string) error {
	sfi, err := os.Stat(src)
	if err != nil {
		return err
	}
	d, err := source.ReadDigestCache(src, sfi)
	if err != nil {
		return err
	}
	dfi, err := os.Stat(dst)
	if err != nil {
		return err
	}
	if d, err = d.WithIdentity(dfi); err != nil {
		return err
	}
	return d.Write(dst)
}

// checkMirrors asks each HTTP(S) source for its suite's InRelease file
// and fails, saying what to do, when none answers: mmdebstrap's own
// error comes only after minutes, and says less.
func checkMirrors(ctx context.Context, sources []string, suite string) error {
	client := &http.Client{Timeout: 20 * time.Second}
	var tried, failed []string
	for _, line := range sources {
		s, err := parseOneLine(line)
		if err != nil || !(strings.HasPrefix(s.URI, "http://") || strings.HasPrefix(s.URI, "https://")) || strings.HasSuffix(s.Suite, "/") {
			return nil // a file: or mirror+ source, or a flat one: mmdebstrap will tell
		}
		url := strings.TrimSuffix(s.URI, "/") + "/dists/" + s.Suite + "/InRelease"
		tried = append(tried, url)
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		if err != nil {
			return fmt.Errorf("debimage: source %q: %w", line, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if s.Suite == suite {
					return nil
				}
				continue
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("debimage: %w", ctx.Err())
		}
		failed = append(failed, fmt.Sprintf("%s: %v", url, err))
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("debimage: the apt mirror cannot be reached for %s:\n  %s\ncheck the network and the host's apt sources, or give a reachable mirror: --mirror http://deb.debian.org/debian",
		suite, strings.Join(failed, "\n  "))
}

// builder is one build's state.
type builder struct {
	cfg             *Config
	key, entry      string
	sources         []string
	packages        []string
	password, keys  []byte
	work, root, out string
	phases          []Phase
}

// phase times a step and logs it.
func (b *builder) phase(name string, start time.Time) {
	d := time.Since(start)
	b.phases = append(b.phases, Phase{name, d})
	b.cfg.Log.Info(fmt.Sprintf("%-16s %v", name+":", d.Round(100*time.Millisecond)))
}

func (b *builder) build(ctx context.Context) (*Result, error) {
	start := time.Now()
	cfg := b.cfg
	debs := filepath.Join(cfg.CacheDir, DebsDir)
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, fmt.Errorf("debimage: cache directory: %w (give --cache-dir DIR or set %s)", err, CacheEnv)
	}
	work, err := os.MkdirTemp(cfg.CacheDir, ".build-"+b.key[:16]+"-")
	if err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	defer removeWork(work, cfg.Log)
	b.work, b.root, b.out = work, filepath.Join(work, "root"), filepath.Join(work, "out")
	if err := os.Mkdir(b.out, 0o755); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}

	res := &Result{Key: b.key, Suite: cfg.Suite, Sources: b.sources, Packages: b.packages, Hooks: cfg.Hooks}
	if res.RootUUID, err = uuid.New(); err != nil {
		return nil, err
	}
	volID, err := buildutil.RandomVolumeID()
	if err != nil {
		return nil, err
	}
	res.ESPID = fmt.Sprintf("%04X-%04X", volID>>16, volID&0xffff)
	if res.MachineID, err = randomHex(16); err != nil {
		return nil, err
	}

	// The system.
	t := time.Now()
	overlay := filepath.Join(work, "overlay")
	if err := writeOverlay(overlay, res, b.keys); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	debsBefore := countDebs(debs)
	var initrdStart, initrdEnd time.Time
	line := func(l string) {
		switch strings.TrimSpace(l) {
		case markInitrd:
			initrdStart = time.Now()
		case markInitrdDone:
			initrdEnd = time.Now()
		}
		cfg.Log.Debug("  " + l) // mmdebstrap's own output: with -v
	}
	if err := runLines(ctx, line, "mmdebstrap", b.mmdebstrapArgs(debs, overlay)...); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	debsAfter := countDebs(debs)
	cfg.Log.Info(fmt.Sprintf("packages: %d in %s before, %d after (%d downloaded)", debsBefore, debs, debsAfter, debsAfter-debsBefore))
	// The initramfs is made in a hook: its time is not mmdebstrap's.
	initrd := initrdEnd.Sub(initrdStart)
	if initrdStart.IsZero() || initrdEnd.IsZero() {
		initrd = 0
	}
	b.phase("mmdebstrap", t.Add(initrd))
	b.phases = append(b.phases, Phase{"kernel/initramfs", initrd})
	cfg.Log.Info(fmt.Sprintf("%-16s %v", "kernel/initramfs:", initrd.Round(100*time.Millisecond)))

	// Files that come after the hooks: the kernel's, GRUB's, the
	// machine-id (mmdebstrap empties it) and root's password.
	t = time.Now()
	if res.KernelVersion, err = kernelVersion(b.root); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	if err := b.finishRoot(res); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	grub, err := makeGRUB(ctx, b.root, work, res.RootUUID)
	if err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	grubTime := time.Since(t)

	// The disk.
	t = time.Now()
	l := newLayout(cfg.Size, cfg.ESPSize)
	used, err := treeSize(b.root)
	if err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	if need := used + rootSlack; l.rootSectors*sectorSize < need {
		return nil, fmt.Errorf("debimage: the system takes %d MiB, the root partition of a %d MiB image has %d MiB: give a larger --size (at least %d MiB)",
			used>>20, cfg.Size>>20, l.rootSectors*sectorSize>>20, (roundUp(need, align)+l.rootStart*sectorSize+align)>>20)
	}
	img := filepath.Join(b.out, ImageName)
	if res.DiskGUID, res.Partitions, err = makeDisk(ctx, img, cfg.Size, l); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	if err := makeESP(ctx, img, l, volID, grub.efi); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	if err := makeRoot(ctx, img, l, b.root, res.RootUUID); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	fsTime := time.Since(t)
	t = time.Now()
	coreSectors, err := installBIOS(img, grub.boot, grub.core, l.biosStart, l.biosSectors)
	if err != nil {
		return nil, fmt.Errorf("debimage: BIOS boot: %w", err)
	}
	b.phases = append(b.phases, Phase{"filesystems", fsTime}, Phase{"GRUB", grubTime + time.Since(t)})
	cfg.Log.Info(fmt.Sprintf("%-16s %v (GPT, FAT32 ESP %s, ext4 root %s from %d MiB of files)", "filesystems:", fsTime.Round(100*time.Millisecond), res.ESPID, res.RootUUID, used>>20))
	cfg.Log.Info(fmt.Sprintf("%-16s %v (BOOTX64.EFI, core.img %d sectors in the BIOS boot partition, boot.img in the MBR)", "GRUB:", (grubTime + time.Since(t)).Round(100*time.Millisecond), coreSectors))

	// The root tarball.
	t = time.Now()
	ts, err := writeRootTarFile(filepath.Join(b.out, RootTarName), b.root, start)
	if err != nil {
		return nil, fmt.Errorf("debimage: root tarball: %w", err)
	}
	res.RootTarSize, res.RootTarEntries = ts.Size, ts.Entries
	b.phase("tarball", t)

	// What `herd image info` says.
	t = time.Now()
	info, err := diskimage.Inspect(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	res.Size, res.DataSize, res.SHA256 = info.Size, info.DataSize, info.SHA256
	if _, err := info.SaveDigestCache(); err != nil {
		cfg.Log.Warn(fmt.Sprintf("digest cache of the image not written (herd send hashes it itself): %v", err))
	}
	b.phase("sha256", t)

	res.Duration = time.Since(start)
	res.Built = time.Now().UTC()
	res.Phases = append(b.phases, Phase{"total", res.Duration})
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.out, ResultName), append(js, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("debimage: %w", err)
	}
	// The entry, whole: a rebuild replaces the old one, which is removed.
	if cfg.Rebuild {
		if _, err := os.Stat(b.entry); err == nil {
			old := filepath.Join(work, "old")
			if err := os.Rename(b.entry, old); err != nil {
				return nil, fmt.Errorf("debimage: replace the cache entry: %w", err)
			}
		}
	}
	if err := os.Rename(b.out, b.entry); err != nil {
		if cached, lerr := loadCached(b.entry); lerr == nil && cached != nil {
			cfg.Log.Info(fmt.Sprintf("another build of the same key finished first: using it"))
			return cached, nil
		}
		return nil, fmt.Errorf("debimage: cache entry: %w", err)
	}
	cfg.Log.Info(fmt.Sprintf("%-16s %v", "total:", res.Duration.Round(100*time.Millisecond)))
	return res, nil
}

// countDebs is the number of .deb files in dir.
func countDebs(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	return len(m)
}

// Markers the initramfs hook prints, to time it.
const (
	markInitrd     = "herd-debimage: update-initramfs"
	markInitrdDone = "herd-debimage: update-initramfs done"
)

// mmdebstrapArgs is the mmdebstrap command line: minbase and the
// packages, the .deb cache (the manual's sync-in/sync-out recipe), the
// overlay of herd's files, systemd-networkd enabled, the caller's
// hooks, the initramfs made again (it was made before fstab existed).
func (b *builder) mmdebstrapArgs(debs, overlay string) []string {
	args := []string{"--mode=root", "--variant=minbase", "--format=directory",
		"--include=" + strings.Join(b.packages, ","),
		"--skip=essential/unlink",
		"--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
		"--setup-hook=sync-in " + shellQuote(debs) + " /var/cache/apt/archives/",
	}
	for _, p := range ExcludePaths {
		args = append(args, "--dpkgopt=path-exclude="+p)
	}
	for _, p := range IncludePaths {
		args = append(args, "--dpkgopt=path-include="+p)
	}
	args = append(args,
		"--customize-hook=sync-out /var/cache/apt/archives "+shellQuote(debs),
		"--customize-hook=sync-in "+shellQuote(overlay)+" /",
		`--customize-hook=chroot "$1" systemctl enable systemd-networkd.service`,
	)
	for _, h := range b.cfg.Hooks {
		args = append(args, "--customize-hook="+h)
	}
	args = append(args,
		"--customize-hook=echo "+shellQuote(markInitrd)+`; chroot "$1" update-initramfs -u -k all && echo `+shellQuote(markInitrdDone),
		b.cfg.Suite, b.root)
	return append(args, b.sources...)
}
