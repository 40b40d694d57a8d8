package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdproject/herd/imagebuilder/golden/goldeninit"
	"github.com/herdproject/herd/imagebuilder/internal/buildutil"
)

// MachineID is the golden system's /etc/machine-id: fixed, so that a
// clone whose ID herd's agent did not replace is recognizable.
const MachineID = "6865726400000000000000000000676f" // "herd" ... "go"

// WiredNetwork is the golden system's systemd-networkd configuration,
// /etc/systemd/network/50-wired.network: DHCP on any Ethernet
// interface. herd's agent writes a clone's own 10-herd.network, which
// sorts first.
const WiredNetwork = `# herd golden image: DHCP on the wired interfaces. herd's agent writes
# 10-herd.network for each clone (matched by MAC address), which comes
# first.
[Match]
Name=en* eth*

[Network]
DHCP=yes
`

// NetworkdMark is the path by which herd's agent recognizes a
// systemd-networkd system (agent/customize): a link to /sbin/init here,
// whose root stage reads NetworkDir as networkd would.
const NetworkdMark = "/usr/lib/systemd/systemd-networkd"

// rootFile is one entry of the golden root.
type rootFile struct {
	path    string
	content string
	mode    os.FileMode
}

// rootFiles returns the golden root's configuration files.
func rootFiles(cfg *Config, rootUUID, bootID, kernelVersion string) []rootFile {
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n", cfg.Hostname)
	fstab := fmt.Sprintf("# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\nUUID=%s\t/\text4\terrors=remount-ro\t0\t1\nUUID=%s\t/boot\tvfat\tumask=0077\t0\t2\n", rootUUID, bootID)
	osRelease := fmt.Sprintf("PRETTY_NAME=\"herd golden image (Linux %s)\"\nNAME=\"herd golden\"\nID=herd-golden\nHOME_URL=\"https://github.com/herdproject/herd\"\n", kernelVersion)
	files := []rootFile{
		{"/etc/hostname", cfg.Hostname + "\n", 0o644},
		{"/etc/hosts", hosts, 0o644},
		{"/etc/machine-id", MachineID + "\n", 0o444},
		{"/etc/fstab", fstab, 0o644},
		{"/etc/os-release", osRelease, 0o644},
		{goldeninit.NetworkDir + "/50-wired.network", WiredNetwork, 0o644},
		{"/etc/herd-golden", fmt.Sprintf("herd golden image: kernel %s, root UUID %s, boot %s\n/sbin/init is herd: it prints %q and powers off\n", kernelVersion, rootUUID, bootID, goldeninit.BootedPrefix+" host=... ip=... machine-id=..."), 0o644},
	}
	// Placeholder host keys: herd's agent removes a clone's keys so that
	// it makes its own.
	for _, k := range []string{"rsa", "ecdsa", "ed25519"} {
		name := "/etc/ssh/ssh_host_" + k + "_key"
		files = append(files,
			rootFile{name, "# placeholder " + k + " host key of herd's golden image (no SSH server here)\n", 0o600},
			rootFile{name + ".pub", "ssh-" + k + " AAAAplaceholder golden\n", 0o644})
	}
	return files
}

// writeRoot fills dir with the golden root: the herd binary as
// /sbin/init, the configuration files and the mount points.
func writeRoot(dir, herd string, files []rootFile) error {
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "boot", "root", "var/lib", "usr/lib/systemd", "etc/ssh"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	// os.Chmod takes the sticky bit as os.ModeSticky, not 0o1000.
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(dir, "root"), 0o700); err != nil {
		return err
	}
	init := filepath.Join(dir, goldeninit.RootInit)
	if err := os.MkdirAll(filepath.Dir(init), 0o755); err != nil {
		return err
	}
	if err := buildutil.CopyFile(herd, init, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(goldeninit.RootInit, filepath.Join(dir, NetworkdMark)); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, strings.TrimPrefix(f.path, "/"))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.content), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil { // not the umask's
			return err
		}
	}
	return nil
}
