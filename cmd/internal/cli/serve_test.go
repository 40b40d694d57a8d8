package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/plan"
)

// sfdiskImage makes a sparse image of size bytes partitioned by script.
func sfdiskImage(t *testing.T, name string, size int64, script string) string {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk: apt-get install fdisk")
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", p)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return p
}

func TestNoESP(t *testing.T) {
	const linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	gptESP := sfdiskImage(t, "gpt-esp.img", 64<<20, "label: gpt\nsize=32MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype="+linux+"\n")
	gptNoESP := sfdiskImage(t, "gpt.img", 64<<20, "label: gpt\ntype="+linux+"\n")
	mbr := sfdiskImage(t, "mbr.img", 64<<20, "label: dos\ntype=83, bootable\n")
	mbrESP := sfdiskImage(t, "mbr-esp.img", 64<<20, "label: dos\nsize=16MiB, type=ef\ntype=83\n")
	// As administrators send them: compressed, each node decoding.
	mbrZst, gptESPZst := mbr+".zst", gptESP+".zst"
	for _, p := range []string{mbr, gptESP} {
		if out, err := exec.Command("zstd", "-q", p, "-o", p+".zst").CombinedOutput(); err != nil {
			t.Skipf("zstd: %v %s (apt-get install zstd)", err, out)
		}
	}
	fsImage := filepath.Join(t.TempDir(), "root.ext4")
	if err := os.WriteFile(fsImage, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		files []plan.File
		want  string // "" = no refusal; else a substring
	}{
		{"GPT with ESP", []plan.File{{Input: gptESP, Output: "/dev/vda"}}, ""},
		{"MBR without ESP", []plan.File{{Input: mbr, Output: "/dev/vda"}}, "the image " + mbr + " (dos partition table) has no EFI System Partition"},
		{"GPT without ESP", []plan.File{{Input: gptNoESP, Output: "/dev/sda"}}, "(gpt partition table) has no EFI System Partition"},
		{"MBR without ESP, zstd", []plan.File{{Input: mbrZst, Output: "/dev/vda"}}, "the image " + mbrZst + " (dos partition table) has no EFI System Partition"},
		{"GPT with ESP, zstd", []plan.File{{Input: gptESPZst, Output: "/dev/vda"}}, ""},
		{"MBR with an ESP (type ef)", []plan.File{{Input: mbrESP, Output: "/dev/vda"}}, ""},
		{"one of two disks has an ESP", []plan.File{{Input: mbr, Output: "/dev/vdb"}, {Input: gptESP, Output: "/dev/vda"}}, ""},
		{"a filesystem image for a partition", []plan.File{{Input: fsImage, Output: "/dev/vda2"}}, ""},
		{"an image to a file, not a device", []plan.File{{Input: mbr, Output: "/images/disk.img"}}, ""},
		{"a stage2", []plan.File{{Input: mbr, Output: "/dev/ram0", Mount: "/stage2"}}, ""},
		{"a missing input", []plan.File{{Input: "/nonexistent.img", Output: "/dev/vda"}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := noESP(context.Background(), tt.files)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("noESP = %q, want %q", got, tt.want)
			}
		})
	}
}
