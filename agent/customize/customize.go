// Package customize makes a freshly written clone of a golden system an
// individual: it edits the installed tree at a root directory (the
// mounted root filesystem, or an unpacked tree) from the node's
// identity.
//
// Apply writes, in order:
//
//   - /etc/hostname: the short host name and a newline;
//   - /etc/hosts: the "127.0.1.1 host.domain host" line, replaced or
//     inserted after the 127.0.0.1 line, every other line kept;
//   - /etc/machine-id: a fresh random ID (clones sharing one get the same
//     DHCP DUID from systemd-networkd, and so the same address), and the
//     same ID in /var/lib/dbus/machine-id when that is a regular file;
//   - /etc/ssh/ssh_host_*_key and .pub removed, and new ones made by
//     Options.SSHKeygen when the image has an SSH server and nothing that
//     makes them at boot (else the clone makes its own on first boot);
//   - per-machine state a clone must not share removed: systemd's random
//     seed and credential secret, DHCP client leases (they carry the
//     golden machine's DUID), NetworkManager's secret key and leases;
//   - network configuration for each of systemd-networkd, ifupdown and
//     NetworkManager that the image has (see network.go);
//   - /etc/fstab: the fs_spec of the entries named in
//     Options.FstabByUUID rewritten to UUID=..., every other byte kept.
//
// Every file is reached through an os.Root at Options.Root: no path,
// ".." or symbolic link leads outside it. A file that is a symbolic link
// is written through only when it resolves to a regular file inside the
// root; one pointing outside (an absolute link, as the installed system
// would read it relative to its own root, included) is refused with an
// error. Existing files are rewritten in place, so they keep their
// owner, mode and extended attributes (SELinux labels).
package customize

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Identity is what makes a node itself: from its DHCP lease and herd's
// inventory.
type Identity struct {
	// Hostname is the node's host name. Required. A dotted name
	// ("node1.cluster") is split into host and domain when Domain is
	// empty; otherwise only its first label is the host name.
	Hostname string
	// Domain is the DNS domain ("" = none).
	Domain string
	// MAC is the address of the interface to configure: the network
	// configuration matches it. nil = match Interface by name.
	MAC net.HardwareAddr
	// Interface is the interface's name in the installed system
	// ("eth0", "enp1s0"): ifupdown needs it; networkd and NetworkManager
	// use it only without MAC.
	Interface string
	// IP is the address with its prefix length (static configuration).
	IP netip.Prefix
	// Gateway is the default route (invalid = none).
	Gateway netip.Addr
	// DNS are the name servers (static configuration).
	DNS []netip.Addr
	// DHCP writes configuration that asks DHCP at boot rather than the
	// static IP, Gateway and DNS (which are then ignored). Without DHCP,
	// IP is required.
	DHCP bool
}

// Options say what Apply customizes and how.
type Options struct {
	// Root is the installed system's root directory. Required.
	Root string
	// Identity is the node's identity.
	Identity Identity
	// FstabByUUID maps fstab mount points (fs_file, as written: "/",
	// "/boot", "none") to filesystem UUIDs: those entries' fs_spec
	// becomes UUID=<uuid>. The key "swap" also names the entry whose
	// fs_vfstype is swap. nil = leave /etc/fstab alone.
	FstabByUUID map[string]string
	// Logf receives a line per change as it happens (nil = no log).
	Logf func(string, ...any)
	// Now gives the time written in the headers of generated files (nil
	// = time.Now).
	Now func() time.Time
	// SSHKeygen, when set, makes the host keys of an image that has an
	// SSH server but nothing that makes keys at boot (Debian's sshd does
	// not start without them): Apply calls it with Root after removing
	// the golden image's keys. herd's agent runs the image's own
	// `ssh-keygen -A` chrooted into Root. nil = only note the problem.
	SSHKeygen func(root string) error
}

// ErrOutsideRoot is wrapped by the error for a file whose path or
// symbolic link leads outside Options.Root.
var ErrOutsideRoot = errors.New("leads outside the installed system's root")

// Apply customizes the tree at opts.Root for opts.Identity. changes has a
// human-readable line per change or finding ("wrote /etc/hostname",
// "note: ..."), also when err is not nil: Apply stops at the first
// error, and changes says what was done until then.
func Apply(opts Options) (changes []string, err error) {
	id, err := checkIdentity(opts.Identity)
	if err != nil {
		return nil, fmt.Errorf("customize: %w", err)
	}
	if opts.Root == "" {
		return nil, errors.New("customize: no root directory")
	}
	r, err := os.OpenRoot(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("customize: %w", err)
	}
	defer r.Close()
	t := &tree{r: r, logf: opts.Logf, now: opts.Now}
	if t.logf == nil {
		t.logf = func(string, ...any) {}
	}
	if t.now == nil {
		t.now = time.Now
	}
	steps := []struct {
		name string
		fn   func(identity) error
	}{
		{"hostname", t.hostname},
		{"hosts", t.hosts},
		{"machine-id", t.machineID},
		{"ssh host keys", func(id identity) error { return t.sshKeys(id, opts.Root, opts.SSHKeygen) }},
		{"per-machine state", t.machineState},
		{"network", t.network},
		{"fstab", func(identity) error { return t.fstab(opts.FstabByUUID) }},
	}
	for _, s := range steps {
		if err := s.fn(id); err != nil {
			return t.changes, fmt.Errorf("customize %s: %s: %w", opts.Root, s.name, err)
		}
	}
	return t.changes, nil
}

// identity is Identity checked, with the host name split.
type identity struct {
	Identity
	host, domain string
}

// fqdn is "host.domain", or host without a domain.
func (id identity) fqdn() string {
	if id.domain == "" {
		return id.host
	}
	return id.host + "." + id.domain
}

func checkIdentity(in Identity) (identity, error) {
	id := identity{Identity: in}
	name := strings.TrimSuffix(in.Hostname, ".")
	if name == "" {
		return id, errors.New("no host name")
	}
	host, rest, _ := strings.Cut(name, ".")
	id.host = host
	id.domain = strings.TrimSuffix(in.Domain, ".")
	if id.domain == "" {
		id.domain = rest
	}
	if !validLabel(id.host) {
		return id, fmt.Errorf("host name %q: want letters, digits and '-' (RFC 1123)", in.Hostname)
	}
	if id.domain != "" {
		for _, l := range strings.Split(id.domain, ".") {
			if !validLabel(l) {
				return id, fmt.Errorf("domain %q: want dot-separated labels of letters, digits and '-'", id.domain)
			}
		}
	}
	if len(id.fqdn()) > 253 {
		return id, fmt.Errorf("host name %q: longer than 253 characters", id.fqdn())
	}
	if in.Interface != "" && (len(in.Interface) > 15 || strings.ContainsAny(in.Interface, "/: \t\n\\\"'") || in.Interface == "." || in.Interface == "..") {
		return id, fmt.Errorf("interface name %q: want 1-15 characters without '/', ':', quotes or spaces", in.Interface)
	}
	if !in.DHCP {
		if !in.IP.IsValid() {
			return id, errors.New("no address: give Identity.IP, or set DHCP")
		}
		if in.Gateway.IsValid() && in.Gateway.Is4() != in.IP.Addr().Is4() {
			return id, fmt.Errorf("gateway %s and address %s are of different families", in.Gateway, in.IP)
		}
	}
	return id, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// tree edits files under one root and records what it did.
type tree struct {
	r       *os.Root
	logf    func(string, ...any)
	now     func() time.Time
	changes []string
}

// note records a change or finding.
func (t *tree) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	t.changes = append(t.changes, s)
	t.logf("%s", s)
}

// rel turns "/etc/hostname" into the root-relative "etc/hostname".
func rel(name string) string { return strings.TrimLeft(name, "/") }

// guard returns the error for a path that leads outside the root, with
// the link's target when name is a symbolic link; other errors pass.
func (t *tree) guard(op, name string, err error) error {
	if err == nil {
		return nil
	}
	// os.Root refuses such paths whatever this says; the check only
	// picks the message (the os package does not export its error).
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
		if target, lerr := t.r.Readlink(rel(name)); lerr == nil {
			if strings.HasPrefix(target, "/") {
				// The installed system would read it inside its root,
				// but from here it points at the agent's own files.
				return fmt.Errorf("refusing to %s %s: it is an absolute symbolic link (to %q), which herd does not follow as it %w", op, name, target, ErrOutsideRoot)
			}
			return fmt.Errorf("refusing to %s %s: it is a symbolic link to %q, which %w", op, name, target, ErrOutsideRoot)
		}
		return fmt.Errorf("refusing to %s %s: its path %w", op, name, ErrOutsideRoot)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// lstat is os.Root.Lstat with the guard's errors; (nil, nil) when name
// does not exist.
func (t *tree) lstat(name string) (fs.FileInfo, error) {
	fi, err := t.r.Lstat(rel(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, t.guard("stat", name, err)
	}
	return fi, nil
}

// exists reports whether name exists (as anything, links not followed).
func (t *tree) exists(name string) bool {
	_, err := t.r.Lstat(rel(name))
	return err == nil
}

// isDir reports whether name is a directory (links followed inside the
// root).
func (t *tree) isDir(name string) bool {
	fi, err := t.r.Stat(rel(name))
	return err == nil && fi.IsDir()
}

// read returns name's content, following symbolic links inside the root;
// (nil, false, nil) when it does not exist.
func (t *tree) read(name string) ([]byte, bool, error) {
	fi, err := t.lstat(name)
	if err != nil || fi == nil {
		return nil, false, err
	}
	b, err := t.r.ReadFile(rel(name))
	if errors.Is(err, fs.ErrNotExist) && fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := t.r.Readlink(rel(name))
		return nil, false, fmt.Errorf("read %s: a symbolic link to %q, which does not exist", name, target)
	}
	if err != nil {
		return nil, false, t.guard("read", name, err)
	}
	return b, true, nil
}

// write replaces name's content. An existing file is rewritten in place
// (owner, mode and xattrs kept) unless setMode; a new one gets perm. A
// symbolic link is written through when it resolves to a regular file
// inside the root, and refused otherwise.
func (t *tree) write(name string, data []byte, perm fs.FileMode, setMode bool) error {
	fi, err := t.lstat(name)
	if err != nil {
		return err
	}
	if fi != nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := t.r.Readlink(rel(name))
		st, err := t.r.Stat(rel(name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("refusing to write %s: a symbolic link to %q, which does not exist", name, target)
			}
			return t.guard("write", name, err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("refusing to write %s: a symbolic link to %q, which is not a regular file", name, target)
		}
	} else if fi != nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("refusing to write %s: not a regular file (%s)", name, fi.Mode().Type())
	}
	open := func() (*os.File, error) {
		return t.r.OpenFile(rel(name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	}
	f, err := open()
	if errors.Is(err, fs.ErrPermission) && fi != nil && fi.Mode().IsRegular() {
		// A read-only file (machine-id is 0444) and we are not root:
		// make it writable, and give it its mode back afterwards.
		if t.r.Chmod(rel(name), fi.Mode().Perm()|0o200) == nil {
			f, err = open()
			if !setMode {
				perm, setMode = fi.Mode().Perm(), true
			}
		}
	}
	if err != nil {
		return t.guard("write", name, err)
	}
	_, werr := f.Write(data)
	var cerr error
	if setMode || fi == nil {
		cerr = f.Chmod(perm) // the umask does not decide
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", name, werr)
	}
	return nil
}

// mkdirAll makes directory name and its parents inside the root.
func (t *tree) mkdirAll(name string, perm fs.FileMode) error {
	if err := t.r.MkdirAll(rel(name), perm); err != nil {
		return t.guard("create directory", name, err)
	}
	return nil
}

// remove removes name (a link itself, not its target); a missing file is
// no error.
func (t *tree) remove(name string) error {
	err := t.r.Remove(rel(name))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return t.guard("remove", name, err)
}

// readDir lists directory name inside the root, sorted by name; nil
// when it does not exist.
func (t *tree) readDir(name string) ([]fs.DirEntry, error) {
	f, err := t.r.Open(rel(name))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, t.guard("list", name, err)
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", name, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	return entries, nil
}

// hostname writes /etc/hostname.
func (t *tree) hostname(id identity) error {
	if err := t.mkdirAll("/etc", 0o755); err != nil {
		return err
	}
	if err := t.write("/etc/hostname", []byte(id.host+"\n"), 0o644, false); err != nil {
		return err
	}
	t.note("wrote /etc/hostname (%s)", id.host)
	return nil
}
