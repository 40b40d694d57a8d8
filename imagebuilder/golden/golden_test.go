package golden

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/herdproject/herd/agent/customize"
	"github.com/herdproject/herd/imagebuilder/diskimage"
	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
	"github.com/herdproject/herd/initramfs"
	"github.com/herdproject/herd/internal/logging"
	"github.com/u-root/u-root/pkg/cpio"
)

var (
	herdOnce sync.Once
	herdPath string
	herdErr  error
	herdDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if herdDir != "" {
		os.RemoveAll(herdDir)
	}
	os.Exit(code)
}

// staticHerd builds ./cmd/herd with CGO_ENABLED=0 once per test binary.
func staticHerd(t *testing.T) string {
	t.Helper()
	herdOnce.Do(func() {
		src, err := initramfs.ModuleRoot("")
		if err != nil {
			herdErr = err
			return
		}
		herdDir, herdErr = os.MkdirTemp("", "herd-golden-test-")
		if herdErr != nil {
			return
		}
		herdPath = filepath.Join(herdDir, "herd")
		herdErr = buildHerd(context.Background(), src, herdPath)
	})
	if herdErr != nil {
		t.Skipf("cannot build a static herd (Go toolchain and source tree needed): %v", herdErr)
	}
	return herdPath
}

// needTools skips when the host lacks what Build runs or a kernel.
func needTools(t *testing.T) string {
	t.Helper()
	if err := CheckTools(); err != nil {
		t.Skipf("golden image tools: %v", err)
	}
	k, err := newestKernel("/boot")
	if err != nil {
		t.Skipf("%v", err)
	}
	return k
}

// buildTestImage builds a golden image into a temporary directory (not
// when cfg asks for a root tarball alone).
func buildTestImage(t *testing.T, cfg Config) *Result {
	t.Helper()
	needTools(t)
	cfg.HerdBinary = staticHerd(t)
	if cfg.Output == "" && cfg.RootTar == "" {
		cfg.Output = filepath.Join(t.TempDir(), "golden.img")
	}
	cfg.Log = logging.Func(func(l string) { t.Log(l) })
	res, err := Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// TestBuild builds a real golden image and checks it with the tools an
// operator would use: sfdisk, mtools, e2fsprogs.
func TestBuild(t *testing.T) {
	res := buildTestImage(t, Config{})
	img := res.Output
	const bootOff, rootOff = 2048 * 512, (2048 + 131072) * 512
	st, err := os.Stat(img)
	if err != nil || st.Size() != DefaultSize {
		t.Fatalf("image: %v, size %d, want %d", err, st.Size(), DefaultSize)
	}

	t.Run("sfdisk", func(t *testing.T) {
		var pt struct {
			PartitionTable struct {
				Label      string `json:"label"`
				Partitions []struct {
					Start, Size int64
					Type        string
					Bootable    bool
				} `json:"partitions"`
			} `json:"partitiontable"`
		}
		if err := json.Unmarshal([]byte(output(t, "sfdisk", "-J", img)), &pt); err != nil {
			t.Fatal(err)
		}
		type part struct {
			Start, Size int64
			Type        string
			Bootable    bool
		}
		var got []part
		for _, p := range pt.PartitionTable.Partitions {
			got = append(got, part(p))
		}
		want := []part{{2048, 131072, "e", true}, {133120, 393216 - 133120, "83", false}}
		if pt.PartitionTable.Label != "dos" {
			t.Errorf("label %q", pt.PartitionTable.Label)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("partitions (-want +got):\n%s", d)
		}
	})

	t.Run("mbr", func(t *testing.T) {
		code, err := os.ReadFile(MBRBin)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 512)
		f, _ := os.Open(img)
		f.ReadAt(head, 0)
		f.Close()
		if !bytes.Equal(head[:len(code)], code) {
			t.Error("the first bytes are not syslinux's mbr.bin")
		}
		info, err := diskimage.Inspect(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(res.Table, info.Table); d != "" || !info.Table.BootCode {
			t.Errorf("Inspect's table differs from Build's (-build +inspect):\n%s", d)
		}
		if info.DataSize >= info.Size/2 {
			t.Errorf("data size %d of %d: the image should be mostly holes", info.DataSize, info.Size)
		}
	})

	t.Run("boot partition", func(t *testing.T) {
		at := fmt.Sprintf("%s@@%d", img, bootOff)
		files := strings.Fields(output(t, "mdir", "-a", "-b", "-i", at, "::"))
		for _, want := range []string{"::/vmlinuz", "::/initrd.img", "::/syslinux.cfg", "::/ldlinux.sys", "::/ldlinux.c32"} {
			if !contains(files, want) {
				t.Errorf("boot partition lacks %s: %q", want, files)
			}
		}
		cfg := output(t, "mtype", "-i", at, "::syslinux.cfg")
		for _, want := range []string{"LINUX vmlinuz", "initrd=initrd.img", "root=UUID=" + res.RootUUID, "console=ttyS0", "TIMEOUT 0", "PROMPT 0", "DEFAULT herd"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("syslinux.cfg lacks %q:\n%s", want, cfg)
			}
		}
		// The FAT boot sector: volume ID and hidden sectors (the
		// partition's start, which the boot code adds).
		part := extract(t, img, bootOff, 1<<20)
		if id, err := customize.FindUUID(part); err != nil || id != res.BootID {
			t.Errorf("boot volume ID %q, %v; want %s", id, err, res.BootID)
		}
		b, _ := os.ReadFile(part)
		if hidden := binary.LittleEndian.Uint32(b[0x1C:]); hidden != 2048 {
			t.Errorf("hidden sectors %d, want 2048", hidden)
		}
	})

	t.Run("initrd", func(t *testing.T) {
		dir := t.TempDir()
		gz := filepath.Join(dir, "initrd.img")
		output(t, "mcopy", "-i", fmt.Sprintf("%s@@%d", img, bootOff), "::initrd.img", gz)
		f, err := os.Open(gz)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]cpio.Info{}
		for _, r := range recs {
			got[r.Name] = r.Info
		}
		herdSt, _ := os.Stat(res.HerdBinary)
		if i, ok := got["init"]; !ok || i.Mode != cpio.S_IFREG|0o755 || int64(i.FileSize) != herdSt.Size() {
			t.Errorf("init: %+v, want the herd binary, mode 0755", i)
		}
		if i, ok := got["dev/console"]; !ok || i.Mode&cpio.S_IFMT != cpio.S_IFCHR || i.Rmajor != 5 || i.Rminor != 1 {
			t.Errorf("dev/console: %+v", i)
		}
		mods := "lib/modules/" + res.KernelVersion + "/"
		for _, want := range []string{strings.TrimPrefix(goldeninit.InitrdMarker, "/"), strings.TrimPrefix(goldeninit.NewRoot, "/"), mods + "modules.dep", mods + "modules.alias", mods + "modules.softdep"} {
			if _, ok := got[want]; !ok {
				t.Errorf("initrd lacks %s", want)
			}
		}
		for _, m := range []string{"virtio_blk", "virtio_net", "virtio_pci", "ext4", "jbd2", "crc32c_generic"} {
			if !contains(res.Modules, m) {
				t.Errorf("modules lack %s: %v", m, res.Modules)
			}
			found := false
			for name := range got {
				if strings.HasPrefix(name, mods) && strings.Contains(name, "/"+m+".ko") {
					found = true
				}
			}
			if !found {
				t.Errorf("initrd lacks %s.ko", m)
			}
		}
	})

	t.Run("root partition", func(t *testing.T) {
		fs := fmt.Sprintf("%s?offset=%d", img, rootOff)
		output(t, "e2fsck", "-f", "-n", fs)
		cat := func(p string) string { return output(t, "debugfs", "-R", "cat "+p, fs) }
		if got := cat("/etc/hostname"); got != "golden\n" {
			t.Errorf("/etc/hostname %q", got)
		}
		if got := cat("/etc/machine-id"); got != MachineID+"\n" {
			t.Errorf("/etc/machine-id %q", got)
		}
		fstab := cat("/etc/fstab")
		for _, want := range []string{"UUID=" + res.RootUUID + "\t/\text4", "UUID=" + res.BootID + "\t/boot\tvfat"} {
			if !strings.Contains(fstab, want) {
				t.Errorf("fstab lacks %q:\n%s", want, fstab)
			}
		}
		if got := cat(goldeninit.NetworkDir + "/50-wired.network"); got != WiredNetwork {
			t.Errorf("50-wired.network:\n%s", got)
		}
		stat := output(t, "debugfs", "-R", "stat "+goldeninit.RootInit, fs)
		for _, want := range []string{"Mode:  0755", "User:     0", "Group:     0"} {
			if !strings.Contains(stat, want) {
				t.Errorf("%s: stat lacks %q:\n%s", goldeninit.RootInit, want, stat)
			}
		}
		for p, mode := range map[string]string{"/tmp": "01777", "/root": "0700", "/etc/ssh/ssh_host_rsa_key": "0600"} {
			if stat := output(t, "debugfs", "-R", "stat "+p, fs); !strings.Contains(stat, "Mode:  "+mode+" ") {
				t.Errorf("%s: want mode %s:\n%s", p, mode, stat)
			}
		}
		part := extract(t, img, rootOff, 1<<20)
		if id, err := customize.FindUUID(part); err != nil || id != res.RootUUID {
			t.Errorf("root UUID %q, %v; want %s", id, err, res.RootUUID)
		}
	})

	// The agent's customize step finds what to rewrite in the golden
	// root, and the root stage then reads the clone's identity.
	t.Run("customize fits", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("rdump of root-owned files needs root")
		}
		dir := t.TempDir()
		output(t, "debugfs", "-R", "rdump / "+dir, fmt.Sprintf("%s?offset=%d", img, rootOff))
		mac, _ := net.ParseMAC("52:54:00:00:00:01")
		changes, err := customize.Apply(customize.Options{Root: dir, Identity: customize.Identity{
			Hostname: "node1.cluster", MAC: mac, Interface: "eth1", DHCP: true,
		}})
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(changes, "\n")
		for _, want := range []string{"wrote /etc/hostname (node1)", customize.NetworkdFile, "ssh"} {
			if !strings.Contains(all, want) {
				t.Errorf("customize did not touch %q:\n%s", want, all)
			}
		}
		if strings.Contains(all, "neither systemd-networkd") {
			t.Errorf("customize did not see networkd:\n%s", all)
		}
		id, err := goldeninit.ReadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		if id.Hostname != "node1" || id.MachineID == MachineID || len(id.MachineID) != 32 {
			t.Errorf("clone identity %+v", id)
		}
		cfgs, err := goldeninit.LoadNetConfigs(filepath.Join(dir, goldeninit.NetworkDir))
		if err != nil {
			t.Fatal(err)
		}
		other, _ := net.ParseMAC("52:54:00:00:00:09")
		ifi, cfg, _ := goldeninit.Choose([]goldeninit.Iface{{Name: "eth0", MAC: other}, {Name: "eth1", MAC: mac}}, cfgs)
		if ifi.Name != "eth1" || cfg == nil || filepath.Base(customize.NetworkdFile) != cfg.File || !cfg.DHCP {
			t.Errorf("the clone's root stage would configure %s with %+v", ifi.Name, cfg)
		}
	})
}

// extract copies n bytes at off of img to a file.
func extract(t *testing.T, img string, off, n int64) string {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestBuildOptions(t *testing.T) {
	res := buildTestImage(t, Config{Size: 100<<20 + 1, BootSize: 40 << 20, Hostname: "gold-2"})
	if res.Size != 101<<20 {
		t.Errorf("size %d, want 101 MiB (rounded up)", res.Size)
	}
	if p := res.Table.Partitions; len(p) != 2 || p[0].Sectors != 40<<20/512 || p[1].Start != 2048+40<<20/512 {
		t.Errorf("partitions %+v", p)
	}
	fs := fmt.Sprintf("%s?offset=%d", res.Output, res.Table.Partitions[1].Offset())
	if got := output(t, "debugfs", "-R", "cat /etc/hostname", fs); got != "gold-2\n" {
		t.Errorf("hostname %q", got)
	}
	// Too small for the root file system: the error says what to give.
	_, err := Build(context.Background(), Config{Output: filepath.Join(t.TempDir(), "x.img"), Size: 48 << 20, HerdBinary: res.HerdBinary})
	if err == nil || !strings.Contains(err.Error(), "--size") {
		t.Errorf("48 MiB image: %v", err)
	}
	// An existing output is kept without Force.
	_, err = Build(context.Background(), Config{Output: res.Output, HerdBinary: res.HerdBinary})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name  string
		cfg   Config
		want  string
		tools bool // the error comes after the tool check
	}{
		{"no output", Config{}, "-o FILE", false},
		{"output is a device", Config{Output: os.DevNull, Kernel: "k"}, "not a regular file", false},
		{"bad hostname", Config{Output: "x", Kernel: "k", Hostname: "no_underscores"}, "host name", false},
		{"tiny boot", Config{Output: "x", Kernel: "k", BootSize: 1 << 20}, "at least 16 MiB", false},
		{"no kernel", Config{Output: filepath.Join(dir, "x"), Kernel: filepath.Join(dir, "vmlinuz"), HerdBinary: "/bin/true"}, "vmlinuz", true},
		{"dynamic herd", Config{Output: filepath.Join(dir, "x"), HerdBinary: "/bin/sh"}, "CGO_ENABLED=0", true},
	}
	for _, tt := range tests {
		if tt.tools && CheckTools() != nil {
			continue
		}
		if tt.cfg.Kernel == "" {
			if _, err := newestKernel("/boot"); err != nil {
				continue
			}
		}
		_, err := Build(context.Background(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	if err := CheckStatic("/bin/sh"); !errors.Is(err, ErrNotStatic) {
		t.Errorf("/bin/sh: %v", err)
	}
	text := filepath.Join(t.TempDir(), "x")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	if err := CheckStatic(text); !errors.Is(err, ErrNotStatic) {
		t.Errorf("script: %v", err)
	}
	if err := CheckStatic(staticHerd(t)); err != nil {
		t.Errorf("static herd: %v", err)
	}
}

func TestNewestKernel(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-amd64", "vmlinuz-5.10.0-30-amd64", "config-6.9.0"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	if k, err := newestKernel(dir); err != nil || filepath.Base(k) != "vmlinuz-6.1.0-56-amd64" {
		t.Errorf("newest = %s, %v", k, err)
	}
	if _, err := newestKernel(t.TempDir()); err == nil || !strings.Contains(err.Error(), "--kernel") {
		t.Errorf("empty dir: %v", err)
	}
	for _, tt := range []struct {
		a, b string
		less bool
	}{
		{"6.1.0-9", "6.1.0-10", true},
		{"6.1.0-10", "6.1.0-9", false},
		{"5.10", "6.1", true},
		{"6.1", "6.1.0", true},
		{"6.1.0-rc1", "6.1.0-rc2", true},
	} {
		if got := versionLess(tt.a, tt.b); got != tt.less {
			t.Errorf("versionLess(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}

func TestSyslinuxConfig(t *testing.T) {
	c := syslinuxConfig("1234")
	for _, want := range []string{"\nDEFAULT herd\n", "\nPROMPT 0\n", "\nTIMEOUT 0\n", "LINUX vmlinuz\n", "APPEND initrd=initrd.img root=UUID=1234 rw "} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}

// chownRoot makes files owned by another user (a build as an ordinary
// user) root's inside the file system.
func TestChownRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a file another user's")
	}
	if _, err := buildutil.LookTool("mke2fs"); err != nil {
		t.Skip("e2fsprogs not installed")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("x\n"), 0o644)
	os.Chown(filepath.Join(tree, "etc"), 1000, 1000)
	os.Chown(filepath.Join(tree, "etc", "hostname"), 1000, 1000)
	img := filepath.Join(dir, "img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 40<<20)
	l := layout{rootStart: 2048, rootSectors: 40<<20/512 - 2048}
	if err := makeRoot(context.Background(), img, l, tree, "01234567-89ab-4def-8123-456789abcdef"); err != nil {
		t.Fatal(err)
	}
	fs := fmt.Sprintf("%s?offset=%d", img, 2048*512)
	for _, p := range []string{"/etc", "/etc/hostname"} {
		if st := output(t, "debugfs", "-R", "stat "+p, fs); !strings.Contains(st, "User:     0   Group:     0") {
			t.Errorf("%s:\n%s", p, st)
		}
	}
}
