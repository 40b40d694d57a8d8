package kmod

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko.xz":        "virtio_net",
		"kernel/arch/x86/crypto/crc32c-intel.ko.zst": "crc32c_intel",
		"kernel/fs/ext4/ext4.ko":                     "ext4",
		"crc32c-generic":                             "crc32c_generic",
		"nls_cp437.ko.gz":                            "nls_cp437",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	db, err := Open("testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string][]string{"ext4": {"crc32c_generic"}, "vfat": {"nls_cp437", "nls_ascii"}}
	for _, tc := range []struct {
		name  string
		names []string
		extra map[string][]string
		want  Selection
	}{
		{
			name:  "virtio_net and its modules.dep closure",
			names: []string{"virtio_net"},
			want:  Selection{Modules: []string{"failover", "net_failover", "virtio_net", "virtio_ring"}},
		},
		{
			name:  "ext4: modules.dep, the crypto-crc32c softdep through modules.alias, jbd2's softdep",
			names: []string{"ext4"},
			want:  Selection{Modules: []string{"crc16", "crc32c_generic", "crc32c_intel", "ext4", "jbd2", "mbcache"}},
		},
		{
			name:  "vfat: the codepage and iocharset softdeps only come from extra",
			names: []string{"vfat"},
			extra: extra,
			want:  Selection{Modules: []string{"fat", "nls_ascii", "nls_cp437", "vfat"}},
		},
		{
			name:  "vfat without extra softdeps",
			names: []string{"vfat"},
			want:  Selection{Modules: []string{"fat", "vfat"}},
		},
		{
			name:  "built in, missing, dash spelling, duplicates",
			names: []string{"virtio_pci", "af_packet", "mlx5_core", "crc32c-intel", "crc32c_intel", "nosuch"},
			want:  Selection{Modules: []string{"crc32c_intel"}, Builtin: []string{"af_packet", "virtio_pci"}, Missing: []string{"mlx5_core", "nosuch"}},
		},
		{
			name:  "softdeps that resolve to nothing are ignored",
			names: []string{"btrfs"},
			want:  Selection{Modules: []string{"btrfs", "raid6_pq"}},
		},
		{
			name:  "transitive deps of deps",
			names: []string{"e1000e"},
			want:  Selection{Modules: []string{"e1000e", "pps_core", "ptp"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := db.Select(tc.names, tc.extra)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Select(%v) (-want +got):\n%s", tc.names, d)
			}
		})
	}
	if got := db.Path("crc32c-intel"); got != "kernel/arch/x86/crypto/crc32c-intel.ko.xz" {
		t.Errorf("Path(crc32c-intel) = %q", got)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("Open(empty dir) = %v, want an error naming modules.dep", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("no colon here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("Open accepted a modules.dep line without ':'")
	}
}

// TestStageInstalled stages virtio_net and ext4 from this host's newest
// kernel and checks what depmod generated: a modules.dep for exactly the
// staged set, and the aliases and softdeps of the staged modules.
func TestStageInstalled(t *testing.T) {
	dirs, _ := filepath.Glob("/lib/modules/*/modules.dep")
	if len(dirs) == 0 {
		t.Skip("no /lib/modules/*/modules.dep on this host (apt-get install linux-image-amd64)")
	}
	if _, err := lookDepmod(); err != nil {
		t.Skip(err)
	}
	dir := filepath.Dir(dirs[len(dirs)-1])
	release := filepath.Base(dir)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sel := db.Select([]string{"virtio_net", "ext4"}, map[string][]string{"ext4": {"crc32c_generic"}})
	if len(sel.Missing) > 0 {
		t.Skipf("kernel %s lacks %v", release, sel.Missing)
	}
	root := t.TempDir()
	if err := db.Stage(context.Background(), sel.Modules, root, release); err != nil {
		t.Fatal(err)
	}
	staged, err := Open(filepath.Join(root, "lib", "modules", release))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sel.Modules {
		if !staged.Has(m) {
			t.Errorf("staged modules.dep lacks %s", m)
		}
	}
	if n := len(staged.paths); n != len(sel.Modules) {
		t.Errorf("staged modules.dep lists %d modules, want the %d staged: %v", n, len(sel.Modules), sel.Modules)
	}
	alias, err := os.ReadFile(filepath.Join(root, "lib", "modules", release, "modules.alias"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(alias), " virtio_net\n") || !strings.Contains(string(alias), "alias crypto-crc32c crc32c_generic") {
		t.Errorf("staged modules.alias lacks virtio_net's or crc32c_generic's aliases:\n%s", alias)
	}
	if out, err := exec.Command("modinfo", "-b", root, "-k", release, "-F", "depends", "virtio_net").CombinedOutput(); err == nil {
		t.Logf("modinfo virtio_net depends: %s", strings.TrimSpace(string(out)))
	}
	t.Logf("staged %d modules for %s: %v", len(sel.Modules), release, sel.Modules)
}

func FuzzOpen(f *testing.F) {
	f.Add("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n", "softdep a pre: x post: y\n", "alias x b\n")
	f.Add("# comment\n\n", "softdep\n", "alias a* b\n")
	f.Fuzz(func(t *testing.T, dep, softdep, alias string) {
		dir := t.TempDir()
		for name, text := range map[string]string{"modules.dep": dep, "modules.softdep": softdep, "modules.alias": alias} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		db, err := Open(dir)
		if err != nil {
			return
		}
		var names []string
		for n := range db.paths {
			names = append(names, n)
		}
		sel := db.Select(append(names, "missing"), map[string][]string{"a": {"b"}})
		for _, m := range sel.Modules {
			if !db.Has(m) {
				t.Fatalf("Select returned %q, which is not a module", m)
			}
		}
	})
}
