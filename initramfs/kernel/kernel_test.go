package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// image builds the first bytes of a bzImage: the setup header with
// protocol proto and kernel_version pointing at version.
func image(proto uint16, ptr uint16, version string) []byte {
	b := make([]byte, 0x2000)
	copy(b[offHeader:], "HdrS")
	binary.LittleEndian.PutUint16(b[offVersion:], proto)
	binary.LittleEndian.PutUint16(b[offKernelVersion:], ptr)
	copy(b[int(ptr)+versionBase:], version+"\x00")
	return b
}

func TestReadVersion(t *testing.T) {
	debian := "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"
	for _, tc := range []struct {
		name    string
		img     []byte
		want    string
		wantErr bool
	}{
		{name: "debian", img: image(0x020f, 0x1000, debian), want: "6.1.0-56-amd64"},
		{name: "bare release", img: image(0x020f, 0x0400, "6.12.9"), want: "6.12.9"},
		{name: "no HdrS", img: make([]byte, 0x2000), wantErr: true},
		{name: "protocol 1.x", img: image(0x0105, 0x1000, debian), wantErr: true},
		{name: "null pointer", img: image(0x020f, 0, debian), wantErr: true},
		{name: "empty string", img: image(0x020f, 0x1000, ""), wantErr: true},
		{name: "pointer past the end", img: image(0x020f, 0x1000, debian)[:0x1100], wantErr: true},
		{name: "short file", img: []byte("MZ"), wantErr: true},
		{name: "binary garbage", img: image(0x020f, 0x1000, "\x01\x02\x03"), wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadVersion(bytes.NewReader(tc.img))
			if tc.wantErr {
				if !errors.Is(err, ErrNotBzImage) {
					t.Fatalf("ReadVersion = %q, %v; want ErrNotBzImage", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadVersion = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestInstalledKernels reads every /boot/vmlinuz-* there is: the release
// in the image is the one in its file name, and names its modules
// directory when that is installed.
func TestInstalledKernels(t *testing.T) {
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(images) == 0 {
		t.Skip("no /boot/vmlinuz-* on this host (apt-get install linux-image-amd64)")
	}
	for _, p := range images {
		v, err := Version(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if want := strings.TrimPrefix(filepath.Base(p), "vmlinuz-"); v != want {
			t.Errorf("%s: release %q, want %q", p, v, want)
		}
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err != nil {
			t.Errorf("%s: release %q has no modules directory: %v", p, v, err)
		}
		t.Logf("%s: %s", p, v)
	}
}

func TestReadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config-6.1.0-56-amd64")
	text := "#\n# Automatically generated file\n#\nCONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n# CONFIG_RD_LZ4 is not set\nCONFIG_EXT4_FS=m\nCONFIG_FAT_DEFAULT_IOCHARSET=\"ascii\"\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := ReadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{"CONFIG_RD_GZIP": "y", "CONFIG_RD_ZSTD": "y", "CONFIG_EXT4_FS": "m", "CONFIG_FAT_DEFAULT_IOCHARSET": `"ascii"`}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("ReadConfig (-want +got):\n%s", d)
	}
	if !c.Enabled("CONFIG_RD_ZSTD") || c.Enabled("CONFIG_RD_LZ4") || c.Enabled("CONFIG_EXT4_FS") {
		t.Errorf("Enabled: wrong answers for %v", c)
	}
	if got := ConfigPath("/boot/vmlinuz-6.1.0-56-amd64", "6.1.0-56-amd64"); got != "/boot/config-6.1.0-56-amd64" {
		t.Errorf("ConfigPath = %s", got)
	}
}

func FuzzReadVersion(f *testing.F) {
	f.Add(image(0x020f, 0x1000, "6.1.0-56-amd64 (debian) #1"))
	f.Add(image(0x0200, 0x0001, "x"))
	f.Add([]byte("HdrS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ReadVersion(bytes.NewReader(b))
		if err == nil && (v == "" || strings.ContainsAny(v, " \x00\n")) {
			t.Fatalf("ReadVersion = %q without error", v)
		}
	})
}
