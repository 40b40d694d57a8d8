package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFindLoader(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []string
		want  string // "" = errNoLoader
	}{
		{"debian grub and removable", []string{"EFI/debian/grubx64.efi", "EFI/BOOT/BOOTX64.EFI"}, `\EFI\debian\grubx64.efi`},
		{"shim before grub", []string{"EFI/debian/grubx64.efi", "EFI/debian/shimx64.efi"}, `\EFI\debian\shimx64.efi`},
		{"removable only, lower case", []string{"efi/boot/bootx64.efi"}, `\efi\boot\bootx64.efi`},
		{"systemd-boot", []string{"EFI/systemd/systemd-bootx64.efi", "EFI/Linux/x.efi"}, `\EFI\systemd\systemd-bootx64.efi`},
		{"vendors in name order", []string{"EFI/rocky/grubx64.efi", "EFI/centos/grubx64.efi"}, `\EFI\centos\grubx64.efi`},
		{"grub in any vendor before systemd-boot", []string{"EFI/a/systemd-bootx64.efi", "EFI/z/GRUBX64.EFI"}, `\EFI\z\GRUBX64.EFI`},
		{"no EFI directory", []string{"syslinux.cfg"}, ""},
		{"EFI without loaders", []string{"EFI/debian/grub.cfg", "EFI/BOOT/fbx64.efi"}, ""},
		{"empty", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("MZ"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := findLoader(root)
			if tt.want == "" {
				if !errors.Is(err, errNoLoader) {
					t.Errorf("findLoader = %q, %v; want errNoLoader", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("findLoader = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLinkByUUID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "disk", "by-uuid")
	fss := []planFS{{dev: "/dev/vda2", uuid: "ae66e55d-2475-4150-8bac-773e1fd85c9e"}, {dev: "/dev/vda1", uuid: "1234-ABCD"}, {dev: "/dev/vda3"}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stale link from an earlier try is replaced.
	if err := os.Symlink("/dev/old", filepath.Join(dir, "1234-ABCD")); err != nil {
		t.Fatal(err)
	}
	linkByUUID(dir, fss, func(f string, a ...any) { t.Errorf("printf: "+f, a...) })
	for uuid, want := range map[string]string{"ae66e55d-2475-4150-8bac-773e1fd85c9e": "/dev/vda2", "1234-ABCD": "/dev/vda1"} {
		if got, err := os.Readlink(filepath.Join(dir, uuid)); err != nil || got != want {
			t.Errorf("%s → %q, %v; want %s", uuid, got, err, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d links, want 2 (a filesystem without UUID gets none)", len(ents))
	}
}
