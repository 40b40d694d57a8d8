package customize

import (
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/herdproject/herd/internal/uuid"
)

// hostsLine is the line /etc/hosts gets for the node, as Debian's
// installer writes it: the name resolves without DNS, to an address that
// is always up.
func hostsLine(id identity) string {
	if id.domain == "" {
		return "127.0.1.1\t" + id.host
	}
	return "127.0.1.1\t" + id.fqdn() + " " + id.host
}

// hosts replaces the 127.0.1.1 line of /etc/hosts (the first; later ones
// are dropped) or inserts one after the last 127.0.0.1 line, else first;
// every other line stays as it was. A missing file is created with the
// loopback names.
func (t *tree) hosts(id identity) error {
	const name = "/etc/hosts"
	b, ok, err := t.read(name)
	if err != nil {
		return err
	}
	line := hostsLine(id)
	if !ok {
		content := "127.0.0.1\tlocalhost\n" + line + "\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
		if err := t.write(name, []byte(content), 0o644, false); err != nil {
			return err
		}
		t.note("wrote %s (new: %s)", name, strings.ReplaceAll(line, "\t", " "))
		return nil
	}
	content := rewriteHosts(string(b), line)
	if content == string(b) {
		t.note("kept %s (already %s)", name, strings.ReplaceAll(line, "\t", " "))
		return nil
	}
	if err := t.write(name, []byte(content), 0o644, false); err != nil {
		return err
	}
	t.note("wrote %s (%s)", name, strings.ReplaceAll(line, "\t", " "))
	return nil
}

// rewriteHosts replaces the first 127.0.1.1 line of a hosts file with
// line and drops the others, or inserts line after the last 127.0.0.1
// line (else first); other lines stay.
func rewriteHosts(content, line string) string {
	var out []string
	replaced := false
	after := -1 // index in out after which to insert
	for _, l := range splitLines(content) {
		f := strings.Fields(stripComment(l))
		if len(f) > 0 && f[0] == "127.0.1.1" {
			if !replaced {
				out = append(out, line)
				replaced = true
			}
			continue
		}
		out = append(out, l)
		if len(f) > 0 && f[0] == "127.0.0.1" {
			after = len(out) - 1
		}
	}
	if !replaced {
		out = append(out[:after+1], append([]string{line}, out[after+1:]...)...)
	}
	return joinLines(out, content)
}

// splitLines splits s into lines without their "\n"; a final newline
// does not make an empty last line.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// joinLines joins lines with "\n", ending with a newline unless orig was
// non-empty and had none. An empty last line always gets its newline:
// without it, it would read back as the final newline of the line before.
func joinLines(lines []string, orig string) string {
	s := strings.Join(lines, "\n")
	if orig == "" || strings.HasSuffix(orig, "\n") || len(lines) > 0 && lines[len(lines)-1] == "" {
		s += "\n"
	}
	return s
}

func stripComment(l string) string {
	if i := strings.IndexByte(l, '#'); i >= 0 {
		return l[:i]
	}
	return l
}

// newMachineID returns a random 128-bit ID in 32 lower-case hex digits,
// marked as a version 4 UUID as systemd's own (sd_id128_randomize) are.
func newMachineID() (string, error) {
	b, err := uuid.Random()
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// machineID writes a fresh /etc/machine-id, and the same ID to
// /var/lib/dbus/machine-id when that is a regular file (it is often a
// link to /etc/machine-id, then left alone).
func (t *tree) machineID(identity) error {
	const name = "/etc/machine-id"
	old, _, err := t.read(name)
	if err != nil {
		return err
	}
	id, err := newMachineID()
	if err != nil {
		return fmt.Errorf("random machine ID: %w", err)
	}
	if err := t.write(name, []byte(id+"\n"), 0o444, false); err != nil {
		return err
	}
	switch strings.TrimSpace(string(old)) {
	case "uninitialized", "":
		// systemd treats an empty or "uninitialized" machine-id as a
		// first boot (ConditionFirstBoot=); herd writes the ID anyway,
		// since clones must differ from their first DHCP request on.
		t.note("wrote %s (%s; it was empty or \"uninitialized\": systemd's first-boot units will not run)", name, id)
	default:
		t.note("wrote %s (%s)", name, id)
	}
	const dbus = "/var/lib/dbus/machine-id"
	fi, err := t.lstat(dbus)
	if err != nil {
		return err
	}
	if fi != nil && fi.Mode().IsRegular() {
		if err := t.write(dbus, []byte(id+"\n"), 0o444, false); err != nil {
			return err
		}
		t.note("wrote %s (the same ID)", dbus)
	}
	return nil
}

// sshKeygenMechanisms are files whose presence in an image means the SSH
// host keys are made at boot when missing.
var sshKeygenMechanisms = []struct{ path, what string }{
	{"/usr/lib/systemd/system/sshd-keygen@.service", "sshd-keygen@.service"},
	{"/lib/systemd/system/sshd-keygen@.service", "sshd-keygen@.service"},
	{"/usr/lib/systemd/system/sshd-keygen.service", "sshd-keygen.service"},
	{"/lib/systemd/system/sshd-keygen.service", "sshd-keygen.service"},
	{"/usr/lib/systemd/system/sshdgenkeys.service", "sshdgenkeys.service"},
	{"/lib/systemd/system/sshdgenkeys.service", "sshdgenkeys.service"},
	{"/usr/sbin/sshd-gen-keys-start", "sshd.service's sshd-gen-keys-start"},
	{"/etc/systemd/system/regenerate_ssh_host_keys.service", "regenerate_ssh_host_keys.service"},
	{"/usr/lib/systemd/system/regenerate_ssh_host_keys.service", "regenerate_ssh_host_keys.service"},
	{"/lib/systemd/system/regenerate_ssh_host_keys.service", "regenerate_ssh_host_keys.service"},
}

// sshKeygenScripts are unit files and init scripts that make the keys
// themselves when they mention ssh-keygen (Alpine's OpenRC sshd, some
// distributions' sshd.service).
var sshKeygenScripts = []string{
	"/etc/systemd/system/sshd.service",
	"/etc/systemd/system/ssh.service",
	"/usr/lib/systemd/system/sshd.service",
	"/usr/lib/systemd/system/ssh.service",
	"/lib/systemd/system/sshd.service",
	"/lib/systemd/system/ssh.service",
	"/etc/init.d/sshd",
	"/etc/init.d/ssh",
}

// sshKeygenMechanism names what makes the host keys at boot in the
// image, "" when nothing does.
func (t *tree) sshKeygenMechanism() string {
	for _, m := range sshKeygenMechanisms {
		if t.exists(m.path) {
			return m.what + " (" + m.path + ")"
		}
	}
	for _, p := range sshKeygenScripts {
		b, ok, err := t.read(p)
		if err == nil && ok && strings.Contains(string(b), "ssh-keygen") {
			return p
		}
	}
	return ""
}

// sshKeys removes /etc/ssh/ssh_host_*_key and their .pub files (links
// themselves, never their targets). When the image has an SSH server and
// nothing that makes keys at boot, keygen (if set) makes new ones in root.
func (t *tree) sshKeys(_ identity, root string, keygen func(string) error) error {
	const dir = "/etc/ssh"
	entries, err := t.readDir(dir)
	if err != nil {
		return err
	}
	var removed []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !isHostKey(n) {
			continue
		}
		p := path.Join(dir, n)
		if err := t.remove(p); err != nil {
			return err
		}
		removed = append(removed, p)
		t.note("removed %s", p)
	}
	hasServer := t.anyExists([]string{"/usr/sbin/sshd", "/sbin/sshd"})
	if len(removed) == 0 && !hasServer {
		return nil
	}
	if m := t.sshKeygenMechanism(); m != "" {
		t.note("SSH host keys are made again on first boot by %s", m)
		return nil
	}
	if !hasServer || keygen == nil {
		t.note("note: nothing in the image makes SSH host keys at boot (no sshd-keygen unit): sshd will not start until `ssh-keygen -A` runs; add it to the image or the plan's %%post")
		return nil
	}
	if err := keygen(root); err != nil {
		return fmt.Errorf("make this node's SSH host keys: %w", err)
	}
	var made []string
	entries, err = t.readDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isHostKey(e.Name()) && !strings.HasSuffix(e.Name(), ".pub") {
			made = append(made, e.Name())
		}
	}
	if len(made) == 0 {
		return fmt.Errorf("make this node's SSH host keys: no %s/ssh_host_*_key afterwards", dir)
	}
	t.note("made this node's SSH host keys: %s", strings.Join(made, " "))
	return nil
}

// machineStateFiles are files that hold one machine's state and that a
// clone must make for itself: systemd's random seed (clones would start
// with the same entropy) and credential secret, the DHCP clients' leases
// (they carry the golden machine's DUID and address), NetworkManager's
// secret key (stable IPv6 addresses) and leases.
var machineStateFiles = []string{
	"/var/lib/systemd/random-seed",
	"/var/lib/systemd/credential.secret",
	"/var/lib/NetworkManager/secret_key",
}

// machineStateDirs are directories whose lease files (*.lease, *.leases)
// are removed.
var machineStateDirs = []string{"/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/NetworkManager", "/var/lib/systemd/network"}

// machineState removes per-machine state (machineStateFiles and the
// leases in machineStateDirs). systemd-networkd's DUID and IAID derive
// from the machine-id, which machineID has made new.
func (t *tree) machineState(identity) error {
	for _, f := range machineStateFiles {
		if !t.exists(f) {
			continue
		}
		if err := t.remove(f); err != nil {
			return err
		}
		t.note("removed %s", f)
	}
	for _, d := range machineStateDirs {
		if !t.isDir(d) {
			continue
		}
		ents, err := t.readDir(d)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.IsDir() || !(strings.HasSuffix(e.Name(), ".lease") || strings.HasSuffix(e.Name(), ".leases")) {
				continue
			}
			p := path.Join(d, e.Name())
			if err := t.remove(p); err != nil {
				return err
			}
			t.note("removed %s", p)
		}
	}
	return nil
}

// isHostKey matches ssh_host_*_key and ssh_host_*_key.pub.
func isHostKey(n string) bool {
	n = strings.TrimSuffix(n, ".pub")
	ok, _ := path.Match("ssh_host_*_key", n)
	return ok
}
