package modalias

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// fakeModTree writes a module tree whose "modules" are text, in every
// supported compression, and returns its directory.
func fakeModTree(t *testing.T) string {
	dir := t.TempDir()
	put := func(rel string) {
		content := []byte("module " + ModuleName(rel))
		var b bytes.Buffer
		switch {
		case strings.HasSuffix(rel, ".xz"):
			w, err := xz.NewWriter(&b)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(content)
			w.Close()
		case strings.HasSuffix(rel, ".zst"):
			w, err := zstd.NewWriter(&b)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(content)
			w.Close()
		case strings.HasSuffix(rel, ".gz"):
			w := gzip.NewWriter(&b)
			w.Write(content)
			w.Close()
		default:
			b.Write(content)
		}
		writeFile(t, dir, rel, b.String())
	}
	for _, m := range []string{
		"kernel/drivers/net/virtio_net.ko.xz",
		"kernel/drivers/net/net_failover.ko.zst",
		"kernel/net/core/failover.ko",
		"kernel/fs/ext4/ext4.ko.gz",
		"kernel/fs/jbd2/jbd2.ko",
		"kernel/fs/mbcache.ko",
		"kernel/lib/crc16.ko",
		"kernel/drivers/block/virtio_blk.ko",
		"kernel/drivers/scsi/sd_mod.ko",
		"kernel/drivers/scsi/scsi_common.ko",
	} {
		put(m)
	}
	writeFile(t, dir, "kernel/drivers/bad.ko.xz", "not xz at all")
	writeFile(t, dir, "modules.dep", `kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.zst kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko.gz: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/bad.ko.xz:
kernel/drivers/missing.ko: kernel/lib/crc16.ko
kernel/drivers/needsbad.ko: kernel/drivers/bad.ko.xz
`)
	writeFile(t, dir, "modules.builtin", "kernel/drivers/virtio/virtio_ring.ko\nkernel/lib/crc32.ko\n")
	writeFile(t, dir, "modules.builtin.modinfo", "crc32c_generic.alias=crc32c\x00crc32c_generic.alias=crypto-crc32c\x00crc32c_generic.license=GPL\x00")
	return dir
}

// recordInserts replaces k's kernel calls with a recorder.
func recordInserts(t *testing.T, k *KernelLoader, results map[string]error) *[]string {
	var got []string
	k.insertFile = func(path string, f *os.File, params string) error {
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if params != "" {
			b = append(b, " "+params...)
		}
		got = append(got, "finit "+string(b))
		return results[ModuleName(path)]
	}
	k.insertImage = func(path string, image []byte, params string) error {
		if params != "" {
			got = append(got, "init "+string(image)+" "+params)
			return results[ModuleName(path)]
		}
		got = append(got, "init "+string(image))
		return results[ModuleName(path)]
	}
	return &got
}

func TestKernelLoader(t *testing.T) {
	dir := fakeModTree(t)
	k, err := NewKernelLoader(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := recordInserts(t, k, map[string]error{"failover": unix.EEXIST})
	for _, m := range []string{"virtio-net", "ext4", "virtio_net", "sd_mod", "virtio_ring", "crc32c", "crc32"} {
		if err := k.Load(m); err != nil {
			t.Errorf("Load(%s): %v", m, err)
		}
	}
	want := []string{
		"finit module failover", // EEXIST: already loaded, fine
		"init module net_failover",
		"init module virtio_net",
		"finit module jbd2",
		"finit module mbcache",
		"finit module crc16",
		"init module ext4",
		"finit module scsi_common",
		"finit module sd_mod",
	}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("inserts (-want +got):\n%s", diff)
	}
	// Parameters go to the module asked for, not to its dependencies.
	*got = nil
	if err := k.LoadParams("virtio_blk", "queue_depth=64"); err != nil {
		t.Errorf("LoadParams: %v", err)
	}
	if diff := cmp.Diff([]string{"finit module virtio_blk queue_depth=64"}, *got); diff != "" {
		t.Errorf("LoadParams inserts (-want +got):\n%s", diff)
	}
	if p, ok := k.Path("virtio_blk"); !ok || p != filepath.Join(dir, "kernel/drivers/block/virtio_blk.ko") {
		t.Errorf("Path(virtio_blk) = %q, %v", p, ok)
	}
}

func TestKernelLoaderErrors(t *testing.T) {
	dir := fakeModTree(t)
	k, err := NewKernelLoader(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := recordInserts(t, k, map[string]error{"virtio_blk": unix.ENOEXEC})
	if err := k.Load("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load(nosuch) = %v, want ErrNotFound", err)
	}
	if err := k.Load("virtio_blk"); !errors.Is(err, unix.ENOEXEC) || !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("Load(virtio_blk) = %v, want ENOEXEC naming the module", err)
	}
	if err := k.Load("missing"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a missing file", err)
	}
	if err := k.Load("needsbad"); err == nil || !strings.Contains(err.Error(), "dependency") || !strings.Contains(err.Error(), "xz") {
		t.Errorf("Load(needsbad) = %v, want a dependency's xz error", err)
	}
	// A failed module is tried again on the next Load.
	if err := k.Load("virtio_blk"); err == nil {
		t.Error("second Load(virtio_blk): no error")
	}
	if n := strings.Count(strings.Join(*got, "\n"), "virtio_blk"); n != 2 {
		t.Errorf("virtio_blk inserted %d times, want 2: %q", n, *got)
	}

	if _, err := NewKernelLoader(t.TempDir()); err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Errorf("NewKernelLoader(empty) = %v, want an error saying to run depmod", err)
	}
	bad := t.TempDir()
	writeFile(t, bad, "modules.dep", "no colon here\n")
	if _, err := NewKernelLoader(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("NewKernelLoader(bad) = %v, want an error naming the line", err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko.xz":    "virtio_net",
		"kernel/drivers/net/ethernet/e1000e.ko":  "e1000e",
		"/lib/modules/x/updates/dkms/zfs.ko.zst": "zfs",
		"kernel/crypto/blake2b-generic.ko.gz":    "blake2b_generic",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}
