package debimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/GehirnInc/crypt"
)

func TestSetShadowPassword(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(p, []byte("root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n"), 0o640)
	if err := setShadowPassword(p, "root", "$6$salt$hash"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "root:$6$salt$hash:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n"; string(b) != want {
		t.Errorf("shadow %q, want %q", b, want)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", st.Mode())
	}
	if err := setShadowPassword(p, "nobody", "*"); err == nil {
		t.Error("no such user: no error")
	}
	if err := setShadowPassword(p, "root", "a:b"); err == nil {
		t.Error("':' in the hash: no error")
	}
}

func TestConfigFiles(t *testing.T) {
	f := fstab("11111111-2222-4333-8444-555555555555", "ABCD-1234")
	for _, w := range []string{"UUID=11111111-2222-4333-8444-555555555555\t/\text4\terrors=remount-ro\t0\t1\n", "UUID=ABCD-1234\t/boot/efi\tvfat\tumask=0077\t0\t2\n"} {
		if !strings.Contains(f, w) {
			t.Errorf("fstab lacks %q:\n%s", w, f)
		}
	}
	g := grubConfig("u-u-i-d", "6.1.0-99-amd64")
	for _, w := range []string{
		"serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n",
		"set timeout=1\n",
		"search --no-floppy --fs-uuid --set=root u-u-i-d\n",
		"linux /boot/vmlinuz-6.1.0-99-amd64 root=UUID=u-u-i-d ro console=tty0 console=ttyS0,115200 herd.grub=$grub_platform\n",
		"initrd /boot/initrd.img-6.1.0-99-amd64\n",
	} {
		if !strings.Contains(g, w) {
			t.Errorf("grub.cfg lacks %q:\n%s", w, g)
		}
	}
	if e := earlyConfig("u-u-i-d"); e != "search --no-floppy --fs-uuid --set=root u-u-i-d\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n" {
		t.Errorf("early config %q", e)
	}
	l := newLayout(2<<30, 100<<20)
	if l.biosStart != 2048 || l.biosSectors != 2048 || l.espStart != 4096 || l.espSectors != 204800 || l.rootStart != 208896 ||
		(l.rootStart+l.rootSectors)*sectorSize != 2<<30-1<<20 {
		t.Errorf("layout %+v", l)
	}
}

// TestSystemFiles writes herd's files into a fake root as a build does:
// the overlay (before the hooks) and what comes after mmdebstrap.
func TestSystemFiles(t *testing.T) {
	dir := t.TempDir()
	res := &Result{RootUUID: "11111111-2222-4333-8444-555555555555", ESPID: "ABCD-1234", MachineID: "0123456789abcdef0123456789abcdef", KernelVersion: "6.1.0-9-amd64"}
	overlay := filepath.Join(dir, "overlay")
	if err := writeOverlay(overlay, res, []byte("ssh-ed25519 AAAA admin\n")); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{"root": 0o700 | os.ModeDir, "root/.ssh": 0o700 | os.ModeDir, "root/.ssh/authorized_keys": 0o600,
		"etc/hostname": 0o644, "etc/hosts": 0o644, "etc/fstab": 0o644, "etc/systemd/network/50-dhcp.network": 0o644} {
		st, err := os.Stat(filepath.Join(overlay, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), mode)
		}
	}
	if err := writeOverlay(filepath.Join(dir, "nokeys"), res, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nokeys/root")); err == nil {
		t.Error("no keys, yet a /root in the overlay")
	}

	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(filepath.Join(root, "var/lib/dbus"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:20000:0:99999:7:::\n"), 0o640)
	os.WriteFile(filepath.Join(root, "var/lib/dbus/machine-id"), []byte("stale\n"), 0o644)
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret\nsecond line ignored\n"), 0o600)
	cfg := Config{RootPasswordFile: pwFile}
	pw, _, err := cfg.inputs()
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{cfg: &cfg, root: root, password: pw}
	if err := b.finishRoot(res); err != nil {
		t.Fatal(err)
	}
	shadow, _ := os.ReadFile(filepath.Join(root, "etc/shadow"))
	hash := strings.Split(string(shadow), ":")[1]
	if !strings.HasPrefix(hash, "$6$") || crypt.SHA512.New().Verify(hash, []byte("s3cret")) != nil {
		t.Errorf("root's hash %q does not verify s3cret", hash)
	}
	if id, _ := os.ReadFile(filepath.Join(root, "etc/machine-id")); string(id) != res.MachineID+"\n" {
		t.Errorf("machine-id %q", id)
	}
	if l, _ := os.Readlink(filepath.Join(root, "var/lib/dbus/machine-id")); l != "/etc/machine-id" {
		t.Errorf("dbus machine-id links to %q", l)
	}
	if cfg, _ := os.ReadFile(filepath.Join(root, "boot/grub/grub.cfg")); !strings.Contains(string(cfg), "linux /boot/vmlinuz-6.1.0-9-amd64 root=UUID="+res.RootUUID) {
		t.Errorf("grub.cfg:\n%s", cfg)
	}

	// Without a password, root stays locked; an empty first line is refused.
	os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root::20000:0:99999:7:::\n"), 0o640)
	b = &builder{cfg: &Config{}, root: root}
	if err := b.finishRoot(res); err != nil {
		t.Fatal(err)
	}
	if shadow, _ := os.ReadFile(filepath.Join(root, "etc/shadow")); !strings.HasPrefix(string(shadow), "root:*:") {
		t.Errorf("no password: shadow %q, want root locked", shadow)
	}
	os.WriteFile(pwFile, []byte("\nx\n"), 0o600)
	if _, _, err := cfg.inputs(); err == nil {
		t.Error("empty password line: no error")
	}
}
