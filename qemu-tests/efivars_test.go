//go:build qemu

package qemutests

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEFIVarsAddBootOption writes a disk option into a fresh copy of
// OVMF's variable store and reads it back: first in BootOrder, active,
// with its name.
func TestEFIVarsAddBootOption(t *testing.T) {
	if _, err := os.Stat(OVMFVars); err != nil {
		t.Skip("no OVMF: apt-get install ovmf")
	}
	n := Node{Name: "n1", Firmware: UEFIPXE, Vars: filepath.Join(t.TempDir(), "vars.fd")}
	if err := copyVars(n.Vars); err != nil {
		t.Fatal(err)
	}
	if got, err := n.BootOrder(); err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v, %v; want no BootOrder", got, err)
	}
	for _, desc := range []string{"first", "herd: installed system"} {
		if err := n.AddDiskBootOption(7, desc, 1, espGUID, 2048, 65536, `\EFI\BOOT\BOOTX64.EFI`); err != nil {
			t.Fatal(err)
		}
	}
	got, err := n.BootOrder()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (BootOption{Num: 7, Description: "herd: installed system", Active: true}) {
		t.Errorf("BootOrder %v, want only Boot0007 \"herd: installed system\", active", got)
	}
}
