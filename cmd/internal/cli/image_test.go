package cli

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdproject/herd/imagebuilder/golden"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/source"
)

func TestImageUsageErrors(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	tarFile := filepath.Join(dir, "root.tar.zst")
	os.WriteFile(tarFile, []byte("old"), 0o644)
	noKernel := filepath.Join(dir, "vmlinuz-none")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"image"}, "want a command"},
		{"unknown command", []string{"image", "frob"}, "unknown image command"},
		{"capture without source", []string{"image", "capture", "-o", "x.zst"}, "give the device or image file"},
		{"capture without output", []string{"image", "capture", img}, "-o IMAGE.zst"},
		{"capture bad level", []string{"image", "capture", img, "-o", filepath.Join(dir, "y.zst"), "--level", "max"}, "--level"},
		{"capture two sources", []string{"image", "capture", img, img, "-o", "y.zst"}, "unexpected argument"},
		{"info without image", []string{"image", "info"}, "give the image"},
		{"info two images", []string{"image", "info", img, img}, "unexpected argument"},
		{"build bad size", []string{"image", "build", "--size", "big"}, "--size"},
		{"build stray argument", []string{"image", "build", "-o", "x", "extra"}, "unexpected argument"},
		{"build root tar is the image", []string{"image", "build", "-o", img, "--root-tar", img}, "give two files"},
		{"build existing image", []string{"image", "build", "-o", img, "--cache-dir", filepath.Join(dir, "cache")}, img + ": output exists: give --force"},
		{"golden without output", []string{"image", "golden"}, "-o FILE"},
		{"golden bad size", []string{"image", "golden", "-o", "x", "--size", "big"}, "--size"},
		{"golden stray argument", []string{"image", "golden", "-o", "x", "extra"}, "unexpected argument"},
		{"golden bad flag", []string{"image", "golden", "--frob"}, "unknown flag"},
		{"golden root tar is the image", []string{"image", "golden", "-o", img, "--root-tar", img}, "give two files"},
		// An existing output is refused before anything is built (the
		// kernel given is not even read).
		{"golden existing root tar", []string{"image", "golden", "--root-tar", tarFile, "--kernel", noKernel}, tarFile + ": output exists: give --force"},
		{"golden existing root tar with -o", []string{"image", "golden", "-o", filepath.Join(dir, "new.img"), "--root-tar", tarFile, "--kernel", noKernel}, tarFile + ": output exists"},
		{"golden existing image with root tar", []string{"image", "golden", "-o", img, "--root-tar", filepath.Join(dir, "new.tar.zst"), "--kernel", noKernel}, img + ": output exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(Herd, tt.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
		})
	}
	if b, _ := os.ReadFile(tarFile); string(b) != "old" {
		t.Errorf("the refused root tarball was changed: %q", b)
	}
}

// herd image golden --root-tar without -o: the summary names the
// tarball, its size, entries, kernel and shell, and no image is written.
func TestImageGoldenRootTar(t *testing.T) {
	if err := golden.CheckTools(); err != nil {
		t.Skipf("golden image tools: %v", err)
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(kernels) == 0 {
		t.Skip("no kernel in /boot")
	}
	// Any static x86-64 executable does for /sbin/init here: the
	// tarball is not booted (imagebuilder/golden's tests build herd).
	const static = "/sbin/ldconfig"
	if err := golden.CheckStatic(static); err != nil {
		t.Skipf("no static executable to stand in for herd: %v", err)
	}
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "root.tar.zst")
	code, stdout, stderr := run(Herd, "image", "golden", "--root-tar", tarFile, "--herd-binary", static, "-q")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := os.Stat(tarFile)
	if err != nil {
		t.Fatal(err)
	}
	shell := "shell  /bin/sh (" + golden.HostBusybox
	if _, err := os.Stat(golden.HostBusybox); err != nil {
		shell = "shell  none: %post scripts cannot run"
	}
	for _, want := range []string{tarFile + ": ", fmt.Sprintf("(%d bytes), ", st.Size()), " entries, host name golden", "kernel ", "/boot/vmlinuz-", "/boot/initrd.img-", shell} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "partitions") || stderr != "" {
		t.Errorf("an image without -o, or progress with -q:\n%s\n%s", stdout, stderr)
	}
	if names, _ := os.ReadDir(dir); len(names) != 1 {
		t.Errorf("files written: %v, want only root.tar.zst", names)
	}
}

func TestImageHelp(t *testing.T) {
	for _, sub := range []string{"golden", "capture", "info"} {
		code, _, stderr := run(Herd, "image", sub, "--help")
		if code != ExitOK || !strings.Contains(stderr, "Usage: herd image "+sub) {
			t.Errorf("herd image %s --help: exit %d, %q", sub, code, stderr)
		}
	}
	if _, _, stderr := run(Herd, "image", "golden", "--help"); !strings.Contains(stderr, "--root-tar FILE") || !strings.Contains(stderr, "LABEL=root") {
		t.Errorf("herd image golden --help does not describe --root-tar:\n%s", stderr)
	}
	if code, _, stderr := run(Herd, "image", "--help"); code != ExitOK || !strings.Contains(stderr, "capture") {
		t.Errorf("herd image --help: exit %d, %q", code, stderr)
	}
	if code, stdout, _ := run(Herd, "help"); code != ExitOK || !strings.Contains(stdout, "image ") {
		t.Errorf("herd help lacks image: %q", stdout)
	}
}

// A small disk image: an MBR with a bootable Linux partition and some data.
func smallImage(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 1<<20)
	e := b[446:]
	e[0], e[4] = 0x80, 0x83
	binary.LittleEndian.PutUint32(e[8:], 2048)
	binary.LittleEndian.PutUint32(e[12:], 1000)
	b[510], b[511] = 0x55, 0xAA
	copy(b[300<<10:], "some data")
	p := filepath.Join(dir, "small.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageCaptureInfo(t *testing.T) {
	dir := t.TempDir()
	img := smallImage(t, dir)
	out := filepath.Join(dir, "small.img.zst")
	code, stdout, stderr := run(Herd, "image", "capture", img, "-o", out)
	if code != ExitOK {
		t.Fatalf("capture: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"size        1.0 MiB (1048576 bytes)", "data        0.0 MiB (8192 bytes)", "sha256", "compressed", "83 Linux"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("capture output lacks %q:\n%s", want, stdout)
		}
	}
	code, _, stderr = run(Herd, "image", "capture", img, "-o", out)
	if code != ExitUsage || !strings.Contains(stderr, "--force") {
		t.Errorf("capture over an existing output: exit %d, %q", code, stderr)
	}
	if code, _, stderr := run(Herd, "image", "capture", img, "-o", out, "--force", "--level", "fastest"); code != ExitOK {
		t.Errorf("--force: exit %d, %s", code, stderr)
	}

	var raw, zst map[string]any
	for _, x := range []struct {
		path string
		dst  *map[string]any
	}{{img, &raw}, {out, &zst}} {
		code, stdout, stderr := run(Herd, "image", "info", "--json", x.path)
		if code != ExitOK {
			t.Fatalf("info %s: exit %d: %s", x.path, code, stderr)
		}
		if err := json.Unmarshal([]byte(stdout), x.dst); err != nil {
			t.Fatalf("info --json: %v\n%s", err, stdout)
		}
	}
	for _, k := range []string{"size", "data_size", "sha256"} {
		if raw[k] != zst[k] {
			t.Errorf("%s: raw %v, capture %v", k, raw[k], zst[k])
		}
	}
	if zst["format"] != "zstd" || raw["format"] != "raw" {
		t.Errorf("formats %v, %v", raw["format"], zst["format"])
	}
	parts := raw["partition_table"].(map[string]any)["partitions"].([]any)
	p := parts[0].(map[string]any)
	if p["type"] != "0x83" || p["bootable"] != true || p["start"] != 2048.0 || p["size"] != 1000.0*512 {
		t.Errorf("partition %v", p)
	}

	code, stdout, _ = run(Herd, "image", "info", out)
	if code != ExitOK || !strings.Contains(stdout, "format      zstd") || !strings.Contains(stdout, "*") {
		t.Errorf("info: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := run(Herd, "image", "info", filepath.Join(dir, "missing.img")); code != ExitFailed || !strings.Contains(stderr, "no such file") {
		t.Errorf("info of a missing file: exit %d, %q", code, stderr)
	}
}

// TestImageInfoGPT lists a GPT disk's partitions (made by sfdisk) in the
// text and JSON of herd image info.
func TestImageInfoGPT(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk here")
	}
	img := filepath.Join(t.TempDir(), "gpt.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 40<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", "--no-reread", "--no-tell-kernel", img)
	cmd.Stdin = strings.NewReader(`label: gpt
label-id: 0C5E7F31-1B2A-4D3C-9E8F-A1B2C3D4E5F6
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios"
size=20M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="esp"
type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name="root"
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	code, stdout, stderr := run(Herd, "image", "info", img)
	if code != ExitOK {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"partitions  gpt, disk GUID 0C5E7F31-1B2A-4D3C-9E8F-A1B2C3D4E5F6, usable sectors 2048 to 81886",
		"1         2048       2048    1.0 MiB  BIOS boot             bios\n",
		"2         4096      40960   20.0 MiB  EFI System            esp\n",
		"3        45056      34816   17.0 MiB  Linux root (x86-64)   root\n",
		"mbr         protective, disk id 0x00000000",
		"ee GPT",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "only the MBR's entries") {
		t.Errorf("info keeps the protective MBR's note:\n%s", stdout)
	}
	code, stdout, stderr = run(Herd, "image", "info", "--json", img)
	if code != ExitOK {
		t.Fatalf("info --json: exit %d: %s", code, stderr)
	}
	var v struct {
		GPT struct {
			DiskGUID   string `json:"disk_guid"`
			Partitions []struct {
				Number   int    `json:"number"`
				TypeName string `json:"type_name"`
				Name     string `json:"name"`
				Size     int64  `json:"size"`
			} `json:"partitions"`
		} `json:"gpt"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("info --json: %v\n%s", err, stdout)
	}
	if v.GPT.DiskGUID != "0C5E7F31-1B2A-4D3C-9E8F-A1B2C3D4E5F6" || len(v.GPT.Partitions) != 3 ||
		v.GPT.Partitions[1].TypeName != "EFI System" || v.GPT.Partitions[1].Name != "esp" || v.GPT.Partitions[1].Size != 20<<20 {
		t.Errorf("info --json GPT: %+v", v.GPT)
	}

	// A damaged header: the MBR is listed, with why the GPT is not.
	b, _ := os.ReadFile(img)
	b[512+60] ^= 0xff
	os.WriteFile(img, b, 0o644)
	code, stdout, _ = run(Herd, "image", "info", img)
	if code != ExitOK || !strings.Contains(stdout, "gpt         not read: damaged GPT: the header's CRC32") || !strings.Contains(stdout, "only the MBR's entries") {
		t.Errorf("info of a damaged GPT: exit %d\n%s", code, stdout)
	}
}

// TestImageDigestCache: herd image info and capture leave a digest cache
// beside the image that describes it (the file's SHA-256 and tree
// digest, and for the capture's zstd file the decoded image's too); info
// of a changed image rewrites it.
func TestImageDigestCache(t *testing.T) {
	dir := t.TempDir()
	img := smallImage(t, dir)
	out := filepath.Join(dir, "small.img.zst")
	load := func(p string) source.DigestCache {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		d, err := source.ReadDigestCache(p, fi)
		if err != nil {
			t.Fatalf("digest cache of %s: %v", p, err)
		}
		return d
	}
	if code, _, stderr := run(Herd, "image", "capture", img, "-o", out); code != ExitOK {
		t.Fatalf("capture: exit %d: %s", code, stderr)
	}
	raw, _ := os.ReadFile(img)
	packed, _ := os.ReadFile(out)
	zd := load(out)
	if zd.SHA256 != sha256Hex(packed) || zd.Tree != treeHex(packed) || zd.Decoded == nil || zd.Decoded.Compression != "zst" ||
		zd.Decoded.SHA256 != sha256Hex(raw) || zd.Decoded.Tree != treeHex(raw) || zd.Decoded.Size != int64(len(raw)) {
		t.Errorf("capture's digest cache %+v (decoded %+v)", zd, zd.Decoded)
	}
	if _, err := os.Stat(img + source.DigestCacheSuffix); err == nil {
		t.Error("capture wrote a digest cache beside its source")
	}
	if code, _, stderr := run(Herd, "image", "info", img); code != ExitOK {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	if d := load(img); d.SHA256 != sha256Hex(raw) || d.Tree != treeHex(raw) || d.Decoded != nil {
		t.Errorf("info's digest cache of a raw image: %+v", d)
	}
	os.Remove(out + source.DigestCacheSuffix)
	code, stdout, stderr := run(Herd, "image", "info", "--json", out)
	if code != ExitOK {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	if d := load(out); d.SHA256 != zd.SHA256 || *d.Decoded != *zd.Decoded {
		t.Errorf("info's digest cache of the zstd image %+v, capture's %+v", d, zd)
	}
	if !strings.Contains(stdout, `"file_sha256": "`+sha256Hex(packed)+`"`) {
		t.Errorf("info --json lacks the file's digest:\n%s", stdout)
	}
	// Changed: info describes the new content.
	raw[5000] = 1
	if err := os.WriteFile(img, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(Herd, "image", "info", img); code != ExitOK {
		t.Fatalf("info: exit %d: %s", code, stderr)
	}
	if d := load(img); d.SHA256 != sha256Hex(raw) || d.Tree != treeHex(raw) {
		t.Errorf("info of a changed image: %+v", d)
	}
}

func treeHex(b []byte) string {
	h := digest.New(digest.Tree)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
