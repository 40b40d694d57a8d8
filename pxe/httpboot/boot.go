package httpboot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/herdproject/herd/contract"
	"github.com/herdproject/herd/pxe/inventory"
	"github.com/herdproject/herd/pxe/nodestate"
)

// Boot is what a node's boot entry says; IPXEScript and PxelinuxConfig
// render it.
type Boot struct {
	// Node is the inventory node; its MAC and Name go on the kernel
	// command line.
	Node inventory.Node
	// LocalBoot selects the entry: boot the local disk, or install.
	LocalBoot bool
	// BaseURL is herd's HTTP service ("http://10.0.0.1:8080"): herd.url
	// on the kernel command line, and where iPXE fetches
	// BaseURL/files/<Kernel> and <Initrd>.
	BaseURL string
	// Kernel and Initrd are paths under the boot tree. The pxelinux
	// config names them relative to it, so they come over the same
	// protocol as the config (TFTP, or HTTP with lpxelinux).
	Kernel, Initrd string
	// KernelArgs are added to the install command line.
	KernelArgs string
}

// kernelArgs is the install boot's command line after "initrd=...": the
// agent finds herd and its identity there.
func (b Boot) kernelArgs() (string, error) {
	if !safeName(b.Node.Name) {
		return "", fmt.Errorf("node name %q: want letters, digits, '-' and '.'", b.Node.Name)
	}
	if len(b.Node.MAC) == 0 {
		return "", fmt.Errorf("node %s has no MAC", b.Node.Name)
	}
	if strings.ContainsAny(b.KernelArgs+b.BaseURL+b.Kernel+b.Initrd, "\r\n") {
		return "", errors.New("boot entry fields must be one line")
	}
	args := contract.BootArgs{URL: b.BaseURL, MAC: b.Node.MAC, Name: b.Node.Name}.String()
	if a := strings.TrimSpace(b.KernelArgs); a != "" {
		args += " " + a
	}
	return args, nil
}

func safeName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// exitToNext are the iPXE script lines that end iPXE so that the firmware
// goes on to its next boot device (the disk, after the network).
//
// BIOS (SeaBIOS, and PXE ROMs generally) does that whatever iPXE returns.
// UEFI does not: EDK2's boot manager (BdsDxe, OVMF's too) shows its menu,
// and waits there, when a boot option's image returns EFI_SUCCESS, which
// is what a bare "exit" (status 0) makes iPXE return; only an error makes
// it go on down BootOrder. So on UEFI iPXE exits with status 1, which it
// returns to the firmware as an error (seen in QEMU with OVMF 2022.11 and
// Debian's iPXE 1.0.0+git-20190125, through OVMF's PXE and snponly.efi,
// and as iPXE's EFI option ROM).
const exitToNext = "iseq ${platform} efi && exit 1 ||\nexit\n"

// IPXEScript renders b as an iPXE script. The install entry fetches the
// kernel and initramfs from BaseURL/files/; the local entry exits iPXE,
// so the firmware goes on to its next boot device, the disk (see
// exitToNext).
func IPXEScript(b Boot) ([]byte, error) {
	args, err := b.kernelArgs()
	if err != nil {
		return nil, err
	}
	var s bytes.Buffer
	id := fmt.Sprintf("%s (%s)", b.Node.Name, b.Node.MAC)
	s.WriteString("#!ipxe\n")
	if b.LocalBoot {
		fmt.Fprintf(&s, "# herd: %s is installed: boot from the local disk\n", id)
		fmt.Fprintf(&s, "echo herd: %s boots from its disk\n", id)
		s.WriteString(exitToNext)
		return s.Bytes(), nil
	}
	fmt.Fprintf(&s, "# herd: install %s\n", id)
	fmt.Fprintf(&s, "echo herd: installing %s from %s\n", id, b.BaseURL)
	fmt.Fprintf(&s, "kernel %s/files/%s initrd=%s %s\n", b.BaseURL, b.Kernel, path.Base(b.Initrd), args)
	fmt.Fprintf(&s, "initrd %s/files/%s\n", b.BaseURL, b.Initrd)
	s.WriteString("boot\n")
	return s.Bytes(), nil
}

// PxelinuxConfig renders b as a pxelinux config with the Mandriva cloning
// guide's labels: "local" (LOCALBOOT 0) and "install", the DEFAULT chosen
// by LocalBoot. The prompt waits 5 s, so an operator at the console can
// type the other label.
func PxelinuxConfig(b Boot) ([]byte, error) {
	args, err := b.kernelArgs()
	if err != nil {
		return nil, err
	}
	def := "install"
	if b.LocalBoot {
		def = "local"
	}
	var s bytes.Buffer
	fmt.Fprintf(&s, "# herd: %s (%s)\n", b.Node.Name, b.Node.MAC)
	fmt.Fprintf(&s, "DEFAULT %s\n", def)
	s.WriteString("PROMPT 1\n")
	s.WriteString("TIMEOUT 50\n")
	s.WriteString("LABEL local\n")
	s.WriteString("  LOCALBOOT 0\n")
	s.WriteString("LABEL install\n")
	fmt.Fprintf(&s, "  KERNEL %s\n", b.Kernel)
	fmt.Fprintf(&s, "  APPEND initrd=%s %s\n", b.Initrd, args)
	return s.Bytes(), nil
}

// localConfig is pxelinux.cfg/default when the boot tree has none: a
// machine herd does not know boots its disk.
var localConfig = []byte(`# herd: a machine not in the inventory boots from its disk
DEFAULT local
PROMPT 0
LABEL local
  LOCALBOOT 0
`)

// ParseMAC reads a MAC in lower or upper case with ':' or '-' between
// every two hex digits (one separator throughout), 6 to 20 octets.
func ParseMAC(s string) (net.HardwareAddr, error) {
	sep := byte(':')
	if strings.IndexByte(s, '-') >= 0 {
		sep = '-'
	}
	parts := strings.Split(s, string(sep))
	if len(parts) < 6 || len(parts) > 20 {
		return nil, fmt.Errorf("MAC %q: want 6 hex octets separated by ':' or '-'", s)
	}
	mac := make(net.HardwareAddr, len(parts))
	for i, p := range parts {
		if len(p) != 2 || !isHex(p[0]) || !isHex(p[1]) {
			return nil, fmt.Errorf("MAC %q: want 6 hex octets separated by ':' or '-'", s)
		}
		mac[i] = unhex(p[0])<<4 | unhex(p[1])
	}
	return mac, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// boot returns node's boot entry and records that its boot firmware asked
// for it (via names the protocol for the message): an install entry
// marks the node booting (step loading installer), a local one only
// updates its LastReport and step (booting from disk), so an installed
// node that reboots stays done.
func (h *Handler) boot(node inventory.Node, via string) (Boot, error) {
	now := h.cfg.Now()
	var st inventory.Status
	err := h.cfg.Store.Update(node.Name, func(s *inventory.Status) error {
		if s.LocalBoot {
			s.LastReport = now
			nodestate.SetStep(s, contract.StepDiskBoot, now)
		} else if err := nodestate.Transition(s, contract.StateBooting, "fetched its install boot entry over "+via, now); err != nil {
			return err
		} else {
			nodestate.SetStep(s, contract.StepLoading, now)
		}
		st = *s
		return nil
	})
	if err != nil {
		// Serving the boot entry matters more than recording the fetch.
		h.log.Warn(fmt.Sprintf("httpboot: node %s: recording the boot: %v", node.Name, err))
		if st, err = h.cfg.Store.Get(node.Name); err != nil {
			return Boot{}, fmt.Errorf("node %s: %w", node.Name, err)
		}
	} else if !st.LocalBoot {
		h.log.Debug(fmt.Sprintf("httpboot: node %s (%s) booting: install entry over %s", node.Name, node.MAC, via))
	}
	return Boot{
		Node:       node,
		LocalBoot:  st.LocalBoot,
		BaseURL:    h.cfg.BaseURL,
		Kernel:     h.cfg.Kernel,
		Initrd:     h.cfg.Initrd,
		KernelArgs: h.cfg.KernelArgs,
	}, nil
}

// serveIPXE answers GET /boot/<mac>.ipxe. A MAC not in the inventory gets
// 200 with a script that says so and exits (the firmware boots its next
// device): iPXE does not run, or show, the body of an error response, and
// the console message is what tells the administrator to add the node.
func (h *Handler) serveIPXE(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	m, ok := strings.CutSuffix(file, ".ipxe")
	if !ok {
		http.NotFound(w, r)
		return
	}
	mac, err := ParseMAC(m)
	if err != nil {
		writeText(w, http.StatusBadRequest, []byte(err.Error()+"\n"))
		return
	}
	node, ok := h.cfg.Inventory.ByMAC(mac)
	if !ok {
		h.log.Info(fmt.Sprintf("httpboot: %s asked for a boot script for %s, which is not in the inventory", r.RemoteAddr, mac))
		writeText(w, http.StatusOK, unknownScript(mac, h.cfg.Inventory.File))
		return
	}
	b, err := h.boot(node, "HTTP (iPXE)")
	if err != nil {
		writeText(w, http.StatusInternalServerError, []byte(err.Error()+"\n"))
		return
	}
	script, err := IPXEScript(b)
	if err != nil {
		writeText(w, http.StatusInternalServerError, []byte(err.Error()+"\n"))
		return
	}
	writeText(w, http.StatusOK, script)
}

func unknownScript(mac net.HardwareAddr, file string) []byte {
	if file == "" {
		file = "the inventory"
	}
	return fmt.Appendf(nil, `#!ipxe
# herd: %[1]s is not in the inventory
echo herd: %[1]s is not in %[2]s: add a node line for it to install it
echo herd: booting the next device in 5 seconds
sleep 5
%[3]s`, mac, safeText(file), exitToNext)
}

// safeText drops what could end or extend an iPXE script line.
func safeText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == '$' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// servePxelinux answers GET /pxelinux.cfg/<file>: 01-<mac> for a node of
// the inventory, default; anything else (pxelinux's IP-address names, an
// unknown MAC) is 404, so pxelinux goes on down its search list.
func (h *Handler) servePxelinux(w http.ResponseWriter, r *http.Request) {
	data, found, err := h.pxelinuxFile(r.PathValue("file"), "HTTP (pxelinux)")
	switch {
	case err != nil:
		writeText(w, http.StatusInternalServerError, []byte(err.Error()+"\n"))
	case !found:
		http.NotFound(w, r)
	default:
		writeText(w, http.StatusOK, data)
	}
}

func (h *Handler) pxelinuxFile(name, via string) ([]byte, bool, error) {
	if name == "default" {
		f, err := h.root.Open("pxelinux.cfg/default")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				h.log.Warn(fmt.Sprintf("httpboot: pxelinux.cfg/default: %v", err))
			}
			return localConfig, true, nil
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, 1<<20))
		return data, err == nil, err
	}
	m, ok := strings.CutPrefix(name, "01-")
	if !ok {
		return nil, false, nil
	}
	mac, err := ParseMAC(m)
	if err != nil {
		return nil, false, nil
	}
	node, ok := h.cfg.Inventory.ByMAC(mac)
	if !ok {
		h.log.Info(fmt.Sprintf("httpboot: pxelinux config asked for %s, which is not in the inventory", mac))
		return nil, false, nil
	}
	b, err := h.boot(node, via)
	if err != nil {
		return nil, false, err
	}
	data, err := PxelinuxConfig(b)
	return data, err == nil, err
}

// PxelinuxFile returns the pxelinux config for a path relative to the
// boot tree ("pxelinux.cfg/01-52-54-00-00-00-01", "pxelinux.cfg/default"),
// as the HTTP route does, and records the fetch the same way; ok = false
// for any other path. Its signature is tftp.Config.Generate's, so the TFTP
// server hands out the same configs:
//
//	tftp.Config{..., Generate: h.PxelinuxFile}
func (h *Handler) PxelinuxFile(remote net.Addr, file string) (data []byte, ok bool) {
	name, ok := strings.CutPrefix(file, "pxelinux.cfg/")
	if !ok || strings.Contains(name, "/") {
		return nil, false
	}
	if name == "default" {
		// The TFTP server serves the boot tree's own file itself.
		if _, err := h.root.Stat("pxelinux.cfg/default"); err == nil {
			return nil, false
		}
	}
	data, ok, err := h.pxelinuxFile(name, "TFTP")
	if err != nil {
		h.log.Warn(fmt.Sprintf("httpboot: %s %s: %v", remote, file, err))
		return nil, false
	}
	return data, ok
}
