package debimage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/GehirnInc/crypt"
	_ "github.com/GehirnInc/crypt/sha512_crypt" // $6$ hashes, as the agent makes them
)

// writeOverlay writes the files herd puts into the system before the
// hooks run (synced over the root by mmdebstrap).
func writeOverlay(dir string, res *Result, keys []byte) error {
	files := []struct {
		path, content string
		mode          os.FileMode
	}{
		{"etc/fstab", fstab(res.RootUUID, res.ESPID), 0o644},
		{"etc/hostname", Hostname + "\n", 0o644},
		{"etc/hosts", hosts(Hostname), 0o644},
		{strings.TrimPrefix(NetworkFile, "/"), networkConfig, 0o644},
	}
	if keys != nil {
		files = append(files, struct {
			path, content string
			mode          os.FileMode
		}{"root/.ssh/authorized_keys", string(keys), 0o600})
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	if keys != nil {
		for _, d := range []string{"root", "root/.ssh"} {
			if err := os.Chmod(filepath.Join(dir, d), 0o700); err != nil {
				return err
			}
		}
	}
	return nil
}

// fstab is the image's /etc/fstab.
func fstab(rootUUID, espID string) string {
	return "# herd debimage golden image: file systems by UUID. herd's agent\n" +
		"# rewrites this file in every clone.\n" +
		"# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n" +
		fmt.Sprintf("UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n", rootUUID) +
		fmt.Sprintf("UUID=%s\t/boot/efi\tvfat\tumask=0077\t0\t2\n", espID)
}

// hosts is /etc/hosts for a host name, as Debian's installer writes it.
func hosts(name string) string {
	return fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n"+
		"# The following lines are desirable for IPv6 capable hosts\n"+
		"::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", name)
}

// networkConfig is NetworkFile: DHCP on every wired interface.
const networkConfig = `# herd debimage: DHCP on every wired interface. herd's agent writes
# 10-herd.network for each clone, which takes precedence.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`

// finishRoot writes the files that must come after mmdebstrap: the
// machine-id (mmdebstrap empties it), root's password, grub.cfg and the
// ESP's mount point.
func (b *builder) finishRoot(res *Result) error {
	root := b.root
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte(res.MachineID+"\n"), 0o444); err != nil {
		return err
	}
	// A stale D-Bus machine-id would differ from it.
	if p := filepath.Join(root, "var/lib/dbus/machine-id"); fileExists(p) {
		os.Remove(p)
		if err := os.Symlink("/etc/machine-id", p); err != nil {
			return err
		}
	}
	hash := "*"
	if b.password != nil {
		pw := firstLine(b.password)
		if strings.HasPrefix(pw, "$") {
			hash = pw
		} else {
			h, err := crypt.SHA512.New().Generate([]byte(pw), nil)
			if err != nil {
				return fmt.Errorf("hash the root password: %w", err)
			}
			hash = h
		}
	}
	if err := setShadowPassword(filepath.Join(root, "etc/shadow"), "root", hash); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "boot/efi"), 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "boot/grub"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte(grubConfig(res.RootUUID, res.KernelVersion)), 0o644)
}

// setShadowPassword sets user's password field in a shadow file.
func setShadowPassword(path, user, hash string) error {
	if strings.ContainsAny(hash, ":\n") {
		return fmt.Errorf("password hash %q has ':' or a newline", hash)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(b), "\n")
	found := false
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) >= 2 && f[0] == user {
			f[1] = hash
			lines[i] = strings.Join(f, ":")
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s has no entry for %s", path, user)
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), st.Mode().Perm())
}

// kernelVersion is the release of the newest /boot/vmlinuz-* of root
// that has an initrd.img.
func kernelVersion(root string) (string, error) {
	ks, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	var vs []string
	for _, k := range ks {
		v := strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
		if fileExists(filepath.Join(root, "boot/initrd.img-"+v)) {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return "", errors.New("the system has no /boot/vmlinuz-* with its initrd.img: keep linux-image-amd64 and initramfs-tools in the packages")
	}
	sort.Strings(vs)
	return vs[len(vs)-1], nil
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
