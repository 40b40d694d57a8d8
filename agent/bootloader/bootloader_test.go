package bootloader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/agent/hostsys"
)

// mkTree makes files (content) and, for names ending in "/", directories
// under root.
func mkTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindKernel(t *testing.T) {
	tests := []struct {
		name           string
		files          []string
		kernel, initrd string
		wantErr        bool
	}{
		{
			name:   "debian versions",
			files:  []string{"vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64", "initrd.img-6.1.0-10-amd64", "config-6.1.0-10-amd64"},
			kernel: "/boot/vmlinuz-6.1.0-10-amd64", initrd: "/boot/initrd.img-6.1.0-10-amd64",
		},
		{
			name:   "fedora initramfs, rescue and hmac skipped",
			files:  []string{"vmlinuz-6.5.6-300.fc39.x86_64", "initramfs-6.5.6-300.fc39.x86_64.img", ".vmlinuz-6.5.6-300.fc39.x86_64.hmac", "vmlinuz-0-rescue-0123abcd", "vmlinuz-6.5.6-300.fc39.x86_64.hmac"},
			kernel: "/boot/vmlinuz-6.5.6-300.fc39.x86_64", initrd: "/boot/initramfs-6.5.6-300.fc39.x86_64.img",
		},
		{
			name:   "minor version numbers",
			files:  []string{"vmlinuz-5.10.9", "vmlinuz-5.9.100", "vmlinuz-5.10.10"},
			kernel: "/boot/vmlinuz-5.10.10",
		},
		{
			name:   "newest has no initrd",
			files:  []string{"vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64"},
			kernel: "/boot/vmlinuz-6.1.0-10-amd64",
		},
		{
			name:   "plain names",
			files:  []string{"vmlinuz", "initrd.img"},
			kernel: "/boot/vmlinuz", initrd: "/boot/initrd.img",
		},
		{
			name:   "plain kernel without initrd",
			files:  []string{"vmlinuz"},
			kernel: "/boot/vmlinuz",
		},
		{
			name:   "versioned wins over plain",
			files:  []string{"vmlinuz", "initrd.img", "vmlinuz-6.1.0-1-amd64"},
			kernel: "/boot/vmlinuz-6.1.0-1-amd64",
		},
		{
			name:    "no kernel",
			files:   []string{"initrd.img-6.1.0-1-amd64", "grub/", "vmlinuz-6.1.0-1-amd64.sig"},
			wantErr: true,
		},
		{
			name:    "a directory is no kernel",
			files:   []string{"vmlinuz-6.1.0-1-amd64/"},
			wantErr: true,
		},
		{
			name:    "no /boot",
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := t.TempDir()
			m := map[string]string{}
			for _, f := range tt.files {
				m["boot/"+f] = "x"
			}
			mkTree(t, target, m)
			k, i, err := FindKernel(target)
			if tt.wantErr {
				if !errors.Is(err, ErrNoKernel) {
					t.Fatalf("FindKernel = %q, %q, %v; want an error wrapping ErrNoKernel", k, i, err)
				}
				want := "no kernel under " + filepath.Join(target, "boot") + ": the image must carry /boot/vmlinuz*"
				if err.Error() != want {
					t.Errorf("error %q, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k != tt.kernel || i != tt.initrd {
				t.Errorf("FindKernel = %q, %q; want %q, %q", k, i, tt.kernel, tt.initrd)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-10-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-9-amd64", "6.1.0-10-amd64", -1},
		{"6.1.0-1-amd64", "6.1.0-1-amd64", 0},
		{"6.10.0", "6.9.12", 1},
		{"6.1.0", "6.1.0-1", -1},
		{"6.1.01", "6.1.1", 0},
		{"5.14.0-362.el9", "5.14.0-70.el9", 1},
		{"6.1.0-1-amd64", "6.1.0-1-cloud-amd64", -1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestExtlinuxConf(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{
			name: "boot on root",
			cfg:  Config{RootUUID: "2b5b1c2e-4c1a-4f0e-9d55-1a2b3c4d5e6f", Append: "console=ttyS0,115200  quiet", Timeout: -1},
			want: `# Written by herd's installer.
DEFAULT herd
PROMPT 0
TIMEOUT 50

LABEL herd
  LINUX /boot/vmlinuz-6.1.0-56-amd64
  INITRD /boot/initrd.img-6.1.0-56-amd64
  APPEND root=UUID=2b5b1c2e-4c1a-4f0e-9d55-1a2b3c4d5e6f rw console=ttyS0,115200 quiet
`,
		},
		{
			name: "separate boot",
			cfg:  Config{RootUUID: "2b5b1c2e-4c1a-4f0e-9d55-1a2b3c4d5e6f", BootSeparate: true, Timeout: 0},
			want: `# Written by herd's installer.
DEFAULT herd
PROMPT 0
TIMEOUT 0

LABEL herd
  LINUX /vmlinuz-6.1.0-56-amd64
  INITRD /initrd.img-6.1.0-56-amd64
  APPEND root=UUID=2b5b1c2e-4c1a-4f0e-9d55-1a2b3c4d5e6f rw
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := extlinuxConf(tt.cfg, "/boot/vmlinuz-6.1.0-56-amd64", "/boot/initrd.img-6.1.0-56-amd64")
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("extlinux.conf (-want +got):\n%s", d)
			}
			if strings.Contains(got, "SERIAL") || slices.Contains(strings.Fields(got), "ro") {
				t.Errorf("extlinux.conf has SERIAL or ro:\n%s", got)
			}
		})
	}
	// Without an initrd there is no INITRD line.
	if got := extlinuxConf(Config{RootUUID: "u", Timeout: 2}, "/boot/vmlinuz", ""); strings.Contains(got, "INITRD") || !strings.Contains(got, "TIMEOUT 20\n") {
		t.Errorf("extlinux.conf without initrd:\n%s", got)
	}
}

func TestChooseMethod(t *testing.T) {
	const (
		grubSbin = "usr/sbin/grub-install"
		grubBin  = "usr/bin/grub-install"
		i386     = "usr/lib/grub/i386-pc/"
		efi64    = "usr/lib/grub/x86_64-efi/"
		sdboot   = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
		sysefi   = "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
		ldlinux  = "usr/lib/syslinux/modules/efi64/ldlinux.e64"
	)
	tests := []struct {
		name  string
		uefi  bool
		files []string
		want  string
	}{
		{"bios empty", false, nil, MethodExtlinux},
		{"bios grub sbin", false, []string{grubSbin, i386}, MethodGrubBIOS},
		{"bios grub bin", false, []string{grubBin, i386}, MethodGrubBIOS},
		{"bios grub2 fedora", false, []string{"usr/sbin/grub2-install", i386}, MethodGrubBIOS},
		{"bios grub without i386-pc", false, []string{grubSbin, efi64}, MethodExtlinux},
		{"bios i386-pc without grub-install", false, []string{i386}, MethodExtlinux},
		{"bios ignores uefi loaders", false, []string{sdboot, sysefi, ldlinux}, MethodExtlinux},
		{"uefi grub", true, []string{grubSbin, efi64}, MethodGrubEFI},
		{"uefi grub first", true, []string{grubSbin, efi64, sdboot, sysefi, ldlinux}, MethodGrubEFI},
		{"uefi grub without x86_64-efi", true, []string{grubSbin, i386, sdboot}, MethodSystemdBoot},
		{"uefi systemd-boot", true, []string{sdboot}, MethodSystemdBoot},
		{"uefi systemd-boot before syslinux", true, []string{sdboot, sysefi, ldlinux}, MethodSystemdBoot},
		{"uefi syslinux", true, []string{sysefi, ldlinux}, MethodSyslinuxEFI},
		{"uefi syslinux without ldlinux.e64", true, []string{sysefi}, ""},
		{"uefi none", true, []string{grubSbin, i386}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := t.TempDir()
			m := map[string]string{}
			for _, f := range tt.files {
				m[f] = "x"
			}
			mkTree(t, target, m)
			if got := chooseMethod(Config{Target: target, UEFI: tt.uefi}); got != tt.want {
				t.Errorf("chooseMethod = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGrubText(t *testing.T) {
	got := grubConf("/vmlinuz-6.1.0-1-amd64", "/initrd.img-6.1.0-1-amd64", "root=UUID=u rw quiet", 5)
	want := `# Written by herd's installer.
set default=0
set timeout=5

menuentry 'herd' {
	linux /vmlinuz-6.1.0-1-amd64 root=UUID=u rw quiet
	initrd /initrd.img-6.1.0-1-amd64
}
`
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("grub.cfg (-want +got):\n%s", d)
	}
	mk := "menuentry 'Debian GNU/Linux' --class debian {\n\tload_video\n\tlinux\t/boot/vmlinuz-6.1.0-56-amd64 root=UUID=u ro  rw console=ttyS0\n\tinitrd\t/boot/initrd.img-6.1.0-56-amd64\n}\n"
	if c, ok := grubCommandLine([]byte(mk)); !ok || c != "root=UUID=u ro rw console=ttyS0" {
		t.Errorf("grubCommandLine = %q, %v", c, ok)
	}
	if _, ok := grubCommandLine([]byte("blscfg\n")); ok {
		t.Error("grubCommandLine found a linux line in a BLS grub.cfg")
	}
}

func TestGrubDefaults(t *testing.T) {
	cfg := Config{RootUUID: "u", Append: `console=ttyS0 x="$y"`}
	const line = `GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX rw console=ttyS0 x=\"\$y\""` + "\n"
	t.Run("grub.d", func(t *testing.T) {
		cfg.Target = t.TempDir()
		mkTree(t, cfg.Target, map[string]string{"etc/default/grub": "GRUB_TIMEOUT=5\n", "etc/default/grub.d/": ""})
		if err := newInstaller(cfg).grubDefaults(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(cfg.Target, "etc/default/grub.d/herd.cfg"))
		if err != nil || !strings.HasSuffix(string(b), "\n"+line) {
			t.Errorf("grub.d/herd.cfg = %q, %v; want it to end with %q", b, err, line)
		}
		if b, _ := os.ReadFile(filepath.Join(cfg.Target, "etc/default/grub")); string(b) != "GRUB_TIMEOUT=5\n" {
			t.Errorf("/etc/default/grub changed: %q", b)
		}
	})
	t.Run("append", func(t *testing.T) {
		cfg.Target = t.TempDir()
		mkTree(t, cfg.Target, map[string]string{"etc/default/grub": "GRUB_TIMEOUT=5"})
		if err := newInstaller(cfg).grubDefaults(); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(cfg.Target, "etc/default/grub"))
		if !strings.HasPrefix(string(b), "GRUB_TIMEOUT=5\n# ") || !strings.HasSuffix(string(b), "\n"+line) {
			t.Errorf("/etc/default/grub = %q", b)
		}
	})
}

// uefiCase is a UEFI install from a fake image: the files it carries
// and what must be on the ESP afterwards.
type uefiCase struct {
	name  string
	files map[string]string
	want  Result
	onESP map[string]string
}

const (
	testUUID   = "2b5b1c2e-4c1a-4f0e-9d55-1a2b3c4d5e6f"
	testAppend = "console=ttyS0,115200 quiet"
	testCmd    = "root=UUID=" + testUUID + " rw " + testAppend
)

func uefiCases() []uefiCase {
	image := map[string]string{
		"boot/vmlinuz-6.1.0-1-amd64":    "KERNEL",
		"boot/initrd.img-6.1.0-1-amd64": "INITRD",
		"boot/efi/":                     "",
		"etc/os-release":                "ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
	}
	with := func(m map[string]string) map[string]string {
		for k, v := range image {
			m[k] = v
		}
		return m
	}
	return []uefiCase{
		{
			name:  "systemd-boot",
			files: with(map[string]string{systemdBootEFI: "SYSTEMD-BOOT"}),
			want: Result{
				Method: MethodSystemdBoot, Kernel: "/boot/vmlinuz-6.1.0-1-amd64", Initrd: "/boot/initrd.img-6.1.0-1-amd64",
				Config: "/boot/efi/loader/entries/herd.conf", Loader: `\EFI\BOOT\BOOTX64.EFI`, CommandLine: testCmd,
			},
			onESP: map[string]string{
				"EFI/BOOT/BOOTX64.EFI":          "SYSTEMD-BOOT",
				"herd/vmlinuz-6.1.0-1-amd64":    "KERNEL",
				"herd/initrd.img-6.1.0-1-amd64": "INITRD",
				"loader/loader.conf":            "# Written by herd's installer.\ndefault herd.conf\ntimeout 3\n",
				"loader/entries/herd.conf": `# Written by herd's installer.
title Debian GNU/Linux 12 (bookworm)
linux /herd/vmlinuz-6.1.0-1-amd64
initrd /herd/initrd.img-6.1.0-1-amd64
options ` + testCmd + "\n",
			},
		},
		{
			name:  "syslinux-efi",
			files: with(map[string]string{syslinuxEFI: "SYSLINUX.EFI", syslinuxLdlinux: "LDLINUX.E64"}),
			want: Result{
				Method: MethodSyslinuxEFI, Kernel: "/boot/vmlinuz-6.1.0-1-amd64", Initrd: "/boot/initrd.img-6.1.0-1-amd64",
				Config: "/boot/efi/EFI/BOOT/syslinux.cfg", Loader: `\EFI\BOOT\BOOTX64.EFI`, CommandLine: testCmd,
			},
			onESP: map[string]string{
				"EFI/BOOT/BOOTX64.EFI":              "SYSLINUX.EFI",
				"EFI/BOOT/ldlinux.e64":              "LDLINUX.E64",
				"EFI/BOOT/vmlinuz-6.1.0-1-amd64":    "KERNEL",
				"EFI/BOOT/initrd.img-6.1.0-1-amd64": "INITRD",
				"EFI/BOOT/syslinux.cfg": `# Written by herd's installer.
DEFAULT herd
PROMPT 0
TIMEOUT 30

LABEL herd
  LINUX /EFI/BOOT/vmlinuz-6.1.0-1-amd64
  INITRD /EFI/BOOT/initrd.img-6.1.0-1-amd64
  APPEND ` + testCmd + "\n",
			},
		},
	}
}

func uefiConfig(t *testing.T, target string) Config {
	return Config{Target: target, UEFI: true, ESP: "/boot/efi", RootUUID: testUUID, Append: testAppend, Timeout: 3, Logf: t.Logf}
}

// checkUEFI runs in and checks its result and the files on the ESP.
func checkUEFI(t *testing.T, in *installer, tc uefiCase) {
	t.Helper()
	res, err := in.install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(tc.want, res); d != "" {
		t.Errorf("Result (-want +got):\n%s", d)
	}
	esp := filepath.Join(in.cfg.Target, in.cfg.ESP)
	for name, want := range tc.onESP {
		b, err := os.ReadFile(filepath.Join(esp, name))
		if err != nil {
			t.Errorf("ESP: %v", err)
			continue
		}
		if d := cmp.Diff(want, string(b)); d != "" {
			t.Errorf("ESP %s (-want +got):\n%s", name, d)
		}
	}
}

// TestInstallUEFIFiles runs the UEFI methods that copy files onto a
// directory standing in for the ESP (its vfat check faked), as any user.
func TestInstallUEFIFiles(t *testing.T) {
	for _, tc := range uefiCases() {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			mkTree(t, target, tc.files)
			in := newInstaller(uefiConfig(t, target))
			in.fsType = func(string) (int64, error) { return magicVFAT, nil }
			checkUEFI(t, in, tc)
		})
	}
}

// TestInstallUEFIVfat runs the UEFI methods onto a vfat filesystem on a
// loop device mounted at the target's /boot/efi.
func TestInstallUEFIVfat(t *testing.T) {
	needRoot(t)
	needTools(t, "losetup", "sfdisk", "partx", "mkfs.vfat")
	needFilesystem(t, "vfat")
	for _, tc := range uefiCases() {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			mkTree(t, target, tc.files)
			_, part := loopDisk(t, "gpt", "U")
			mustRun(t, "mkfs.vfat", "-F", "32", part)
			mountOn(t, part, filepath.Join(target, "boot/efi"))
			checkUEFI(t, newInstaller(uefiConfig(t, target)), tc)
		})
	}
}

func TestInstallUEFIErrors(t *testing.T) {
	t.Run("esp not vfat", func(t *testing.T) {
		target := t.TempDir()
		mkTree(t, target, uefiCases()[0].files)
		_, err := Install(context.Background(), uefiConfig(t, target))
		if err == nil || !strings.Contains(err.Error(), "not vfat") || !strings.Contains(err.Error(), "--fstype=efi") {
			t.Fatalf("Install = %v, want a not-vfat error", err)
		}
		if _, err := os.Stat(filepath.Join(target, "boot/efi/EFI")); err == nil {
			t.Error("Install wrote to a non-vfat ESP")
		}
	})
	t.Run("no loader", func(t *testing.T) {
		target := t.TempDir()
		mkTree(t, target, map[string]string{"boot/vmlinuz-6.1.0-1-amd64": "KERNEL", "boot/efi/": "", grubInstallPaths[0]: "x", grubI386PC + "/": ""})
		_, err := Install(context.Background(), uefiConfig(t, target))
		if !errors.Is(err, ErrNoUEFILoader) {
			t.Fatalf("Install = %v, want ErrNoUEFILoader", err)
		}
		const want = "the image carries no UEFI boot loader (grub-efi, systemd-boot or syslinux-efi): add one to the image, or boot the nodes in BIOS mode"
		if err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	})
	t.Run("no kernel", func(t *testing.T) {
		target := t.TempDir()
		mkTree(t, target, map[string]string{systemdBootEFI: "x", "boot/efi/": ""})
		_, err := Install(context.Background(), uefiConfig(t, target))
		if !errors.Is(err, ErrNoKernel) {
			t.Fatalf("Install = %v, want ErrNoKernel", err)
		}
	})
	t.Run("no esp", func(t *testing.T) {
		cfg := uefiConfig(t, t.TempDir())
		cfg.ESP = ""
		if _, err := Install(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "Config.ESP") {
			t.Fatalf("Install = %v, want a Config.ESP error", err)
		}
	})
}

// TestInstallExtlinuxRefusals checks the errors extlinux gives before it
// writes anything.
func TestInstallExtlinuxRefusals(t *testing.T) {
	image := map[string]string{"boot/vmlinuz-6.1.0-1-amd64": "KERNEL"}
	t.Run("xfs boot", func(t *testing.T) {
		target := t.TempDir()
		mkTree(t, target, image)
		in := newInstaller(Config{Target: target, Disk: "/dev/nonexistent", Label: "dos", BootPart: 1, RootUUID: testUUID, Logf: t.Logf})
		in.fsType = func(string) (int64, error) { return magicXFS, nil }
		_, err := in.install(context.Background())
		if err == nil || !strings.Contains(err.Error(), "xfs") || !strings.Contains(err.Error(), "part /boot --fstype=ext4") {
			t.Fatalf("install = %v, want an xfs refusal", err)
		}
		if _, err := os.Stat(filepath.Join(target, "boot/extlinux")); err == nil {
			t.Error("extlinux directory written despite the refusal")
		}
	})
	t.Run("no gptmbr.bin", func(t *testing.T) {
		if _, err := hostsys.Find("extlinux"); err != nil {
			t.Skip(err)
		}
		if _, err := hostsys.Find("sfdisk"); err != nil {
			t.Skip(err)
		}
		target := t.TempDir()
		mkTree(t, target, image)
		in := newInstaller(Config{Target: target, Disk: "/dev/nonexistent", Label: "gpt", BootPart: 1, RootUUID: testUUID, MBRDir: t.TempDir(), Logf: t.Logf})
		in.fsType = func(string) (int64, error) { return magicExt, nil }
		_, err := in.install(context.Background())
		if err == nil || !strings.Contains(err.Error(), "gptmbr.bin not found") {
			t.Fatalf("install = %v, want gptmbr.bin not found", err)
		}
		if _, err := os.Stat(filepath.Join(target, "boot/extlinux")); err == nil {
			t.Error("extlinux directory written before the boot code was found")
		}
	})
	t.Run("bad label", func(t *testing.T) {
		target := t.TempDir()
		mkTree(t, target, image)
		_, err := Install(context.Background(), Config{Target: target, Disk: "/dev/nonexistent", Label: "msdos", BootPart: 1, RootUUID: testUUID})
		if err == nil || !strings.Contains(err.Error(), "want dos or gpt") {
			t.Fatalf("Install = %v, want a label error", err)
		}
	})
}

// sfdiskJSON is the part of sfdisk --json the tests read.
type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		Partitions []struct {
			Node     string `json:"node"`
			Bootable bool   `json:"bootable"`
			Attrs    string `json:"attrs"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

// TestInstallExtlinux installs extlinux onto an ext4 root on a loop
// device, with a dos and a gpt partition table.
func TestInstallExtlinux(t *testing.T) {
	needRoot(t)
	needTools(t, "losetup", "sfdisk", "partx", "mkfs.ext4", "blkid", "extlinux")
	for _, tt := range []struct{ label, mbr string }{{"dos", "mbr.bin"}, {"gpt", "gptmbr.bin"}} {
		t.Run(tt.label, func(t *testing.T) {
			code, err := os.ReadFile(filepath.Join(DefaultMBRDir, tt.mbr))
			if err != nil {
				t.Skipf("syslinux boot code: %v", err)
			}
			ptype := "83"
			if tt.label == "gpt" {
				ptype = "L"
			}
			disk, part := loopDisk(t, tt.label, ptype)
			mustRun(t, "mkfs.ext4", "-q", part)
			uuid := strings.TrimSpace(mustRun(t, "blkid", "-p", "-o", "value", "-s", "UUID", part))
			target := t.TempDir()
			mountOn(t, part, target)
			mkTree(t, target, map[string]string{
				"boot/vmlinuz-6.1.0-1-amd64":    "KERNEL",
				"boot/initrd.img-6.1.0-1-amd64": "INITRD",
			})
			before := readSector(t, disk)

			res, err := Install(context.Background(), Config{
				Disk: disk, Label: tt.label, BootPart: 1, Target: target,
				RootUUID: uuid, Append: testAppend, Timeout: -1, Logf: t.Logf,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := Result{
				Method: MethodExtlinux, Kernel: "/boot/vmlinuz-6.1.0-1-amd64", Initrd: "/boot/initrd.img-6.1.0-1-amd64",
				Config: "/boot/extlinux/extlinux.conf", CommandLine: "root=UUID=" + uuid + " rw " + testAppend,
			}
			if d := cmp.Diff(want, res); d != "" {
				t.Errorf("Result (-want +got):\n%s", d)
			}

			// The boot code is in the first 440 bytes, and nothing after it
			// changed but partition 1's active flag (dos).
			after := readSector(t, disk)
			if n := min(len(code), bootCodeSize); !bytes.Equal(after[:n], code[:n]) {
				t.Errorf("the disk's first %d bytes are not %s's", n, tt.mbr)
			}
			if after[510] != 0x55 || after[511] != 0xaa {
				t.Errorf("boot signature %#x %#x, want 0x55 0xaa", after[510], after[511])
			}
			wantTail := bytes.Clone(before[bootCodeSize:])
			if tt.label == "dos" {
				wantTail[446-bootCodeSize] = 0x80
			}
			if !bytes.Equal(after[bootCodeSize:], wantTail) {
				t.Errorf("bytes 440..511 changed:\nbefore %x\nafter  %x", before[bootCodeSize:], after[bootCodeSize:])
			}

			var pt sfdiskJSON
			if err := json.Unmarshal([]byte(mustRun(t, "sfdisk", "--json", disk)), &pt); err != nil {
				t.Fatal(err)
			}
			if ps := pt.PartitionTable.Partitions; len(ps) != 1 {
				t.Errorf("sfdisk --json: %d partitions, want 1", len(ps))
			} else if tt.label == "dos" && !ps[0].Bootable {
				t.Errorf("sfdisk --json: partition 1 is not bootable")
			} else if tt.label == "gpt" && ps[0].Attrs != "LegacyBIOSBootable" {
				t.Errorf("sfdisk --json: partition 1 attrs %q, want LegacyBIOSBootable", ps[0].Attrs)
			}

			if st, err := os.Stat(filepath.Join(target, "boot/extlinux/ldlinux.sys")); err != nil || st.Size() == 0 {
				t.Errorf("ldlinux.sys: %v", err)
			}
			conf, err := os.ReadFile(filepath.Join(target, "boot/extlinux/extlinux.conf"))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range []string{
				"  LINUX /boot/vmlinuz-6.1.0-1-amd64\n",
				"  INITRD /boot/initrd.img-6.1.0-1-amd64\n",
				"  APPEND root=UUID=" + uuid + " rw " + testAppend + "\n",
				"DEFAULT herd\n", "TIMEOUT 50\n",
			} {
				if !strings.Contains(string(conf), l) {
					t.Errorf("extlinux.conf lacks %q:\n%s", l, conf)
				}
			}

			// A second install (a re-run) keeps everything as it is.
			if _, err := Install(context.Background(), Config{
				Disk: disk, Label: tt.label, BootPart: 1, Target: target,
				RootUUID: uuid, Append: testAppend, Timeout: -1, Logf: t.Logf,
			}); err != nil {
				t.Fatalf("second Install: %v", err)
			}
			if again := readSector(t, disk); !bytes.Equal(again, after) {
				t.Errorf("a second install changed sector 0:\nfirst  %x\nsecond %x", after, again)
			}
		})
	}
}

// TestBindSystem binds /dev, /proc and /sys into a directory, runs a
// program chrooted to / and checks that everything is unmounted again.
func TestBindSystem(t *testing.T) {
	needRoot(t)
	target := t.TempDir()
	in := newInstaller(Config{Logf: t.Logf})
	undo, err := in.bindSystem(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undo() }) // a no-op after the undo below
	for _, p := range []string{"proc/self/status", "sys/kernel", "dev/null"} {
		if _, err := os.Stat(filepath.Join(target, p)); err != nil {
			t.Errorf("bound: %v", err)
		}
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), " "+target+"/") {
		t.Errorf("still mounted under %s:\n%s", target, mi)
	}
	out, err := in.runIn(context.Background(), "/", "/bin/sh", "-c", "echo $PATH")
	if err != nil || strings.TrimSpace(string(out)) != "/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("runIn = %q, %v", out, err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts)")
	}
}

func needTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := hostsys.Find(n); err != nil {
			t.Skip(err)
		}
	}
}

// needFilesystem skips unless the kernel supports fstype.
func needFilesystem(t *testing.T, fstype string) {
	t.Helper()
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == fstype {
			return
		}
	}
	t.Skipf("the kernel has no %s (/proc/filesystems)", fstype)
}

// mustRun runs a test helper program and returns its standard output.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	p, err := hostsys.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(p, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// loopDisk makes a 128 MiB sparse disk image with a label (dos, gpt)
// table and one partition of type ptype from 1 MiB to the end, attaches
// it to a loop device and returns the disk and partition devices. The
// loop device is detached at cleanup.
func loopDisk(t *testing.T, label, ptype string) (disk, part string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(128 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader("label: " + label + "\nstart=2048, type=" + ptype + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v: %s", img, err, out)
	}
	disk = strings.TrimSpace(mustRun(t, "losetup", "-f", "--show", "-P", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", disk).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", disk, err, out)
		}
	})
	part = disk + "p1"
	// Kernels without the partition parsers leave partitioning to partx.
	if !waitFor(part, time.Second) {
		if out, err := exec.Command("partx", "-a", disk).CombinedOutput(); err != nil {
			t.Logf("partx -a %s: %v: %s", disk, err, out)
		}
		if !waitFor(part, 5*time.Second) {
			t.Fatalf("%s did not appear", part)
		}
	}
	return disk, part
}

func waitFor(p string, d time.Duration) bool {
	for end := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// mountOn mounts dev on dir (making it) until cleanup.
func mountOn(t *testing.T, dev, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// readSector reads the disk's first 512 bytes.
func readSector(t *testing.T, disk string) []byte {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
