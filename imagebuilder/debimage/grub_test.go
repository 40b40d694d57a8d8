package debimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// syntheticBootImg is shaped like GRUB 2.06's boot.img: a jump, a BPB
// area, code bytes, the drive check jump at 0x66, 0x55 0xaa.
func syntheticBootImg() []byte {
	b := make([]byte, sectorSize)
	for i := range b {
		b[i] = byte(0xc0 + i%7) // "code" everywhere
	}
	b[0], b[1], b[2] = 0xeb, 0x63, 0x90
	b[bootDrive] = 0xff
	b[bootDriveCheck], b[bootDriveCheck+1] = 0xeb, 0x05
	clear(b[bootTableStart:bootTableEnd])
	b[510], b[511] = 0x55, 0xaa
	return b
}

// syntheticMBR is a protective MBR as sfdisk writes it, with marks in
// the BPB area that setup must keep.
func syntheticMBR() []byte {
	b := make([]byte, sectorSize)
	for i := bootBPBStart; i < bootBPBEnd; i++ {
		b[i] = byte(i)
	}
	copy(b[0x1b8:], []byte{0xde, 0xad, 0xbe, 0xef, 0, 0})
	// One protective entry: type 0xee from LBA 1 to the end.
	copy(b[0x1be:], []byte{0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 0xff, 0xff, 0x3f, 0x00})
	b[510], b[511] = 0x55, 0xaa
	return b
}

func TestPatchBootSector(t *testing.T) {
	boot, mbr := syntheticBootImg(), syntheticMBR()
	var coreLBA uint64 = 0x0102030405060708
	out, err := PatchBootSector(boot, mbr, coreLBA)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != sectorSize {
		t.Fatalf("%d bytes", len(out))
	}
	for i := 0; i < sectorSize; i++ {
		var want byte
		switch {
		case i >= bootBPBStart && i < bootBPBEnd:
			want = mbr[i] // the BPB area: the disk's
		case i >= bootTableStart && i < bootTableEnd:
			want = mbr[i] // disk signature and partition table: the disk's
		case i >= bootKernelSector && i < bootKernelSector+8:
			want = byte(coreLBA >> (8 * (i - bootKernelSector)))
		case i == bootDrive:
			want = 0xff
		case i == bootDriveCheck || i == bootDriveCheck+1:
			want = 0x90
		default:
			want = boot[i] // boot.img's code and signature
		}
		if out[i] != want {
			t.Errorf("byte %#03x = %#02x, want %#02x", i, out[i], want)
		}
	}
	if got := binary.LittleEndian.Uint64(out[0x5c:]); got != coreLBA {
		t.Errorf("kernel sector %#x, want %#x", got, coreLBA)
	}
	if !bytes.Equal(out[0x1be:0x1ce], mbr[0x1be:0x1ce]) {
		t.Error("protective partition entry changed")
	}
	if boot[bootDriveCheck] != 0xeb {
		t.Error("PatchBootSector changed its input")
	}

	// Refusals.
	if _, err := PatchBootSector(boot[:100], mbr, 1); !errors.Is(err, ErrBadGRUBImage) {
		t.Errorf("short boot.img: %v", err)
	}
	bad := syntheticBootImg()
	bad[bootDriveCheck] = 0x00
	if _, err := PatchBootSector(bad, mbr, 1); !errors.Is(err, ErrBadGRUBImage) {
		t.Errorf("no jump at the drive check: %v", err)
	}
	noSig := syntheticMBR()
	noSig[510] = 0
	if _, err := PatchBootSector(boot, noSig, 1); err == nil {
		t.Error("unpartitioned first sector: no error")
	}
}

// syntheticCore is shaped like grub-mkimage -O i386-pc output:
// diskboot.img (its blocklist start=2 len=0 segment=0x820 at the end),
// then sectors of kernel with a Reed-Solomon field, not a whole number
// of sectors.
func syntheticCore(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	clear(b[firstBlocklist-2*blocklistSize : sectorSize])
	binary.LittleEndian.PutUint64(b[firstBlocklist:], 2)
	binary.LittleEndian.PutUint16(b[firstBlocklist+10:], 0x820)
	binary.LittleEndian.PutUint32(b[sectorSize+kernelRSRedundancy:], 0xdeadbeef)
	return b
}

func TestPatchCore(t *testing.T) {
	const size = 327*sectorSize - 100
	core := syntheticCore(size)
	out, err := PatchCore(core, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 327*sectorSize {
		t.Fatalf("%d bytes, want 327 sectors", len(out))
	}
	bl := out[firstBlocklist:sectorSize]
	if got := binary.LittleEndian.Uint64(bl); got != 2049 {
		t.Errorf("blocklist start %d, want 2049", got)
	}
	if got := binary.LittleEndian.Uint16(bl[8:]); got != 326 {
		t.Errorf("blocklist len %d, want 326", got)
	}
	if got := binary.LittleEndian.Uint16(bl[10:]); got != 0x820 {
		t.Errorf("blocklist segment %#x, want 0x820", got)
	}
	if term := out[firstBlocklist-blocklistSize : firstBlocklist]; !bytes.Equal(term, make([]byte, blocklistSize)) {
		t.Errorf("no terminator below the blocklist: % x", term)
	}
	if got := binary.LittleEndian.Uint32(out[sectorSize+kernelRSRedundancy:]); got != 0 {
		t.Errorf("Reed-Solomon redundancy %#x, want 0", got)
	}
	// Everything else as it was, the padding zeros.
	for i := range out {
		inBlock := i >= firstBlocklist-blocklistSize && i < sectorSize
		inRS := i >= sectorSize+kernelRSRedundancy && i < sectorSize+kernelRSRedundancy+4
		if inBlock || inRS {
			continue
		}
		want := byte(0)
		if i < len(core) {
			want = core[i]
		}
		if out[i] != want {
			t.Fatalf("byte %#x = %#02x, want %#02x", i, out[i], want)
		}
	}

	// A core.img that had blocklists (one already installed): cleared.
	old := syntheticCore(4 * sectorSize)
	binary.LittleEndian.PutUint64(old[firstBlocklist:], 99)
	binary.LittleEndian.PutUint16(old[firstBlocklist+8:], 5)
	binary.LittleEndian.PutUint64(old[firstBlocklist-blocklistSize:], 300)
	binary.LittleEndian.PutUint16(old[firstBlocklist-blocklistSize+8:], 7)
	binary.LittleEndian.PutUint16(old[firstBlocklist-blocklistSize+10:], 0x1000)
	out, err = PatchCore(old, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(out[firstBlocklist:]); got != 11 {
		t.Errorf("start %d, want 11", got)
	}
	if got := binary.LittleEndian.Uint16(out[firstBlocklist+8:]); got != 3 {
		t.Errorf("len %d, want 3", got)
	}
	if term := out[firstBlocklist-blocklistSize : firstBlocklist]; !bytes.Equal(term, make([]byte, blocklistSize)) {
		t.Errorf("old second blocklist left: % x", term)
	}

	if _, err := PatchCore(make([]byte, 100), 1); !errors.Is(err, ErrBadGRUBImage) {
		t.Errorf("short core: %v", err)
	}
	if _, err := PatchCore(make([]byte, 4*sectorSize), 1); !errors.Is(err, ErrBadGRUBImage) {
		t.Errorf("segment 0: %v", err)
	}
	if _, err := PatchCore(syntheticCore((maxCoreSectors+1)*sectorSize), 1); err == nil {
		t.Error("core too large: no error")
	}
}

// TestInstallBIOS writes both into a file: boot.img over the MBR,
// core.img at its LBA, nothing else touched.
func TestInstallBIOS(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	disk := make([]byte, 64*sectorSize)
	copy(disk, syntheticMBR())
	for i := sectorSize; i < len(disk); i++ {
		disk[i] = 0x5a
	}
	os.WriteFile(img, disk, 0o644)
	bootFile, coreFile := filepath.Join(dir, "boot.img"), filepath.Join(dir, "core.img")
	os.WriteFile(bootFile, syntheticBootImg(), 0o644)
	core := syntheticCore(3*sectorSize + 1)
	os.WriteFile(coreFile, core, 0o644)

	n, err := installBIOS(img, bootFile, coreFile, 8, 16)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("%d sectors, want 4", n)
	}
	got, _ := os.ReadFile(img)
	wantMBR, _ := PatchBootSector(syntheticBootImg(), syntheticMBR(), 8)
	wantCore, _ := PatchCore(core, 8)
	if !bytes.Equal(got[:sectorSize], wantMBR) {
		t.Error("first sector is not the patched boot.img")
	}
	if !bytes.Equal(got[8*sectorSize:12*sectorSize], wantCore) {
		t.Error("sectors 8-11 are not the patched core.img")
	}
	for _, r := range [][2]int{{sectorSize, 8 * sectorSize}, {12 * sectorSize, len(got)}} {
		for i := r[0]; i < r[1]; i++ {
			if got[i] != 0x5a {
				t.Fatalf("byte %#x changed", i)
			}
		}
	}
	if _, err := installBIOS(img, bootFile, coreFile, 8, 3); err == nil {
		t.Error("core.img larger than the partition: no error")
	}
}

// TestHostGRUBImages checks the offsets against this host's GRUB files
// when it has them (grub-pc-bin).
func TestHostGRUBImages(t *testing.T) {
	boot, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		t.Skip("no /usr/lib/grub/i386-pc/boot.img (apt-get install grub-pc-bin)")
	}
	if _, err := PatchBootSector(boot, syntheticMBR(), 2048); err != nil {
		t.Errorf("boot.img: %v", err)
	}
	diskboot, err := os.ReadFile("/usr/lib/grub/i386-pc/diskboot.img")
	if err != nil {
		t.Skip(err)
	}
	if seg := binary.LittleEndian.Uint16(diskboot[firstBlocklist+10:]); seg != 0x820 {
		t.Errorf("diskboot.img's blocklist segment %#x, want 0x820", seg)
	}
}
