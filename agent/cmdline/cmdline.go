// Package cmdline reads the herd agent's settings from the kernel command
// line (/proc/cmdline).
//
// Two forms map onto the same Settings:
//
// herd's own parameters, as herd's iPXE scripts and pxelinux configs pass
// them:
//
//	herd.server=URL|HOST[:PORT]  the management host (herd serve); a bare host gets port 8080
//	herd.url=URL                 herd's HTTP base URL (what the boot scripts write)
//	herd.if=NAME                 the boot interface
//	herd.mac=MAC                 the node's MAC as the inventory knows it
//	herd.name=NAME               the node's name as the inventory knows it
//	herd.retries=N               tries to reach the server before rebooting (default 3)
//	herd.timeout=SECONDS|DURATION  each try's timeout ("100", "2m"; default 120s)
//	herd.key=KEY                 the ring's shared key (dolly's -P)
//	herd.allow=PATTERN[,PATTERN...]  write only to outputs matching one of these absolute shell patterns
//	                             (herd recv's --allow; e.g. /dev/vd*,/dev/ram*)
//	herd.kexec[=BOOL]            kexec into the installed kernel instead of rebooting
//	herd.debug[=BOOL]            a rescue shell on failure
//	BOOTIF=01-aa-bb-cc-dd-ee-ff  the booted NIC, as pxelinux (IPAPPEND 2) and iPXE write it
//
// and the Mandriva cluster-cloning guide's installer argument:
//
//	automatic=method:dolly,dolly_timeout:100,interface:eth0,network:dhcp
//
// whose keys map as: method → Method ("dolly" or "herd"; ka, nfs, http
// and the others are errors), dolly_timeout → Timeout (seconds),
// interface → Interface ("auto" means none given), network → Network
// (only "dhcp": herd takes its identity from DHCP), server → Server. Other
// automatic keys (directory, ip, ...) are listed in Unknown.
//
// Choices where the kernel or the originals are loose:
//
//   - An explicit herd.* parameter wins over the same setting from
//     automatic=, whichever comes first on the line. Among repeats of one
//     parameter the last wins, as the kernel does for its own.
//   - Words are split as the kernel's next_arg does: on spaces outside
//     double quotes; one pair of quotes around a value (herd.name="a b")
//     or around a whole word ("herd.name=a b") is removed, quotes
//     elsewhere are kept. Words after "--" (arguments for init; the agent
//     is init) are read the same way.
//   - console= (the kernel's own) is read into Consoles, so the agent can
//     write to the consoles itself; words after "--" are not the kernel's
//     and are not consoles.
//   - Unknown herd.* keys are not errors: they are listed in Unknown so
//     the agent can warn. Everything else on the line (root=, quiet,
//     initrd=, "rescue dollymethod") is ignored.
//   - A value that does not parse is an error naming the parameter: the
//     agent should stop at a rescue shell rather than guess.
//   - herd.allow= is a comma-separated list (empty items are skipped, so
//     a pattern cannot contain a comma); a repeat replaces it as a whole.
//     Each pattern must be absolute and valid for filepath.Match. Without
//     herd.allow= the agent writes wherever the sender says; with it, the
//     stage2's output (/dev/ram0 or the --stage2-output file) must be
//     allowed too.
package cmdline

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herdproject/herd/contract"
)

// Defaults filled in by Parse.
const (
	// DefaultRetries is how many times the agent tries to reach the
	// server before rebooting: the Mandriva guide's "three times".
	DefaultRetries = 3
	// DefaultTimeout is one try's timeout: the Mandriva guide's default
	// of 120 seconds.
	DefaultTimeout = 120 * time.Second
	// DefaultPort is herd serve's HTTP port, added to a herd.server=
	// given as a bare host.
	DefaultPort = 8080
)

// Methods and networks Parse accepts; see Settings.Method and Network.
const (
	MethodHerd  = "herd"
	MethodDolly = "dolly"
	NetworkDHCP = "dhcp"
)

// Settings are the agent's settings from the kernel command line. Parse
// fills the defaults; the zero value means "nothing given".
type Settings struct {
	// Server is the management host's base URL, normalised: herd.server=
	// given as a URL is kept as written without a trailing "/" (a URL
	// without a port uses its scheme's port); given as HOST or HOST:PORT
	// it becomes "http://HOST:PORT" with port 8080 when absent, IPv6
	// literals bracketed. "" = take it from DHCP (next-server, option 66)
	// or from URL.
	Server string
	// URL is herd.url=, herd's HTTP base URL as the boot scripts pass it
	// ("http://10.0.0.1:8080"), without a trailing "/". "" = not given.
	URL string
	// Interface is the boot interface (herd.if=, Mandriva interface:).
	// "" = choose: the one whose MAC is BootIF, else the first with link.
	Interface string
	// BootIF is the booted NIC's MAC from BOOTIF= (pxelinux/iPXE form
	// "01-aa-bb-cc-dd-ee-ff": ARP hardware type, then the address). nil =
	// not given.
	BootIF net.HardwareAddr
	// MAC is herd.mac=, the node's MAC in herd's inventory. nil = not
	// given.
	MAC net.HardwareAddr
	// Name is herd.name=, the node's name in herd's inventory.
	Name string
	// Retries is how many times to try reaching the server before
	// rebooting (herd.retries=; at least 1; default 3).
	Retries int
	// Timeout is each try's timeout (herd.timeout=, Mandriva
	// dolly_timeout:; positive; default 120s).
	Timeout time.Duration
	// Key is herd.key=, the ring's shared key. Settings.String hides it.
	Key string
	// Allow is herd.allow=: absolute shell patterns (filepath.Match, e.g.
	// "/dev/vd*") one of which every output must match, symbolic links
	// resolved (relay.Config.Allow, herd recv's --allow). nil = any
	// output.
	Allow []string
	// Kexec asks for kexec into the installed kernel instead of a reboot.
	Kexec bool
	// Debug asks for a rescue shell on failure instead of a reboot.
	Debug bool
	// Method is the Mandriva method: "herd" (the default, also when only
	// herd.* parameters are given) or "dolly" (method:dolly).
	Method string
	// Network is the Mandriva network: setting; always "dhcp".
	Network string
	// Consoles are the kernel's consoles, from console= before "--", as
	// device names under /dev without the options ("ttyS0" for
	// console=ttyS0,115200n8), in the order given: the last is the one
	// /dev/console is. nil = none given.
	Consoles []string
	// Unknown lists herd.* parameters and automatic= keys Parse does not
	// know, as written ("herd.foo=1", "automatic=directory:/cs4"), for
	// warnings.
	Unknown []string
}

// String renders s for logs, with Key hidden.
func (s Settings) String() string {
	t := s
	if t.Key != "" {
		t.Key = "(hidden)"
	}
	type plain Settings // no String method: no recursion
	return fmt.Sprintf("%+v", plain(t))
}

// ErrSyntax is wrapped by every error Parse returns for a bad value.
var ErrSyntax = errors.New("bad kernel command line")

// ParseFile reads a kernel command line from path (normally /proc/cmdline)
// and parses it.
func ParseFile(path string) (Settings, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Settings{}, fmt.Errorf("read kernel command line: %w", err)
	}
	s, err := Parse(string(b))
	if err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Parse parses a kernel command line. See the package comment for the
// parameters and the rules.
func Parse(cmdline string) (Settings, error) {
	var s Settings
	// herd.* and automatic= are applied separately so that herd.* wins
	// whatever the order.
	var herd, auto []param
	forInit := false // after "--": init's arguments, not the kernel's
	for _, w := range Split(cmdline) {
		p := splitParam(w)
		switch {
		case w == "--":
			forInit = true
		case p.key == "console" && !forInit:
			if name, _, _ := strings.Cut(p.val, ","); name != "" {
				s.Consoles = append(s.Consoles, name)
			}
		case p.key == "automatic":
			auto = append(auto, p)
		case p.key == contract.ArgBootIF || strings.HasPrefix(p.key, "herd."):
			herd = append(herd, p)
		}
	}
	for _, p := range auto {
		if err := s.applyAutomatic(p); err != nil {
			return Settings{}, err
		}
	}
	for _, p := range herd {
		if err := s.applyHerd(p); err != nil {
			return Settings{}, err
		}
	}
	if s.Retries == 0 {
		s.Retries = DefaultRetries
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Method == "" {
		s.Method = MethodHerd
	}
	if s.Network == "" {
		s.Network = NetworkDHCP
	}
	return s, nil
}

// param is one word of the command line: key, and value when the word had
// an '='.
type param struct {
	word, key, val string
	hasVal         bool
}

func splitParam(w string) param {
	k, v, ok := strings.Cut(w, "=")
	return param{word: w, key: k, val: v, hasVal: ok}
}

func bad(name, val, why string) error {
	return fmt.Errorf("%w: %s=%q: %s", ErrSyntax, name, val, why)
}

func (s *Settings) applyHerd(p param) error {
	need := func() error {
		if !p.hasVal || p.val == "" {
			return fmt.Errorf("%w: %s: needs a value (%s=...)", ErrSyntax, p.key, p.key)
		}
		return nil
	}
	switch p.key {
	case contract.ArgServer:
		if err := need(); err != nil {
			return err
		}
		u, err := normalizeServer(p.val)
		if err != nil {
			return bad(p.key, p.val, err.Error())
		}
		s.Server = u
	case contract.ArgURL:
		if err := need(); err != nil {
			return err
		}
		u, err := url.Parse(p.val)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(p.key, p.val, "want an http:// or https:// URL")
		}
		s.URL = strings.TrimRight(p.val, "/")
	case contract.ArgIf:
		if err := need(); err != nil {
			return err
		}
		if err := checkIfName(p.val); err != nil {
			return bad(p.key, p.val, err.Error())
		}
		s.Interface = p.val
	case contract.ArgBootIF:
		if err := need(); err != nil {
			return err
		}
		mac, err := parseBootIF(p.val)
		if err != nil {
			return bad(p.key, p.val, err.Error())
		}
		s.BootIF = mac
	case contract.ArgMAC:
		if err := need(); err != nil {
			return err
		}
		mac, err := net.ParseMAC(p.val)
		if err != nil {
			return bad(p.key, p.val, "want a MAC address like 52:54:00:12:34:56")
		}
		s.MAC = mac
	case contract.ArgName:
		if err := need(); err != nil {
			return err
		}
		s.Name = p.val
	case contract.ArgRetries:
		if err := need(); err != nil {
			return err
		}
		n, err := strconv.Atoi(p.val)
		if err != nil || n < 1 {
			return bad(p.key, p.val, "want a whole number of tries, at least 1")
		}
		s.Retries = n
	case contract.ArgTimeout:
		if err := need(); err != nil {
			return err
		}
		d, err := parseTimeout(p.val)
		if err != nil {
			return bad(p.key, p.val, err.Error())
		}
		s.Timeout = d
	case contract.ArgKey:
		if err := need(); err != nil {
			return err
		}
		s.Key = p.val
	case contract.ArgAllow:
		if err := need(); err != nil {
			return err
		}
		pats, err := parseAllow(p.val)
		if err != nil {
			return bad(p.key, p.val, err.Error())
		}
		s.Allow = pats
	case contract.ArgKexec, contract.ArgDebug:
		on := true
		if p.hasVal {
			b, err := parseBool(p.val)
			if err != nil {
				return bad(p.key, p.val, err.Error())
			}
			on = b
		}
		if p.key == contract.ArgKexec {
			s.Kexec = on
		} else {
			s.Debug = on
		}
	default:
		s.Unknown = append(s.Unknown, p.word)
	}
	return nil
}

// applyAutomatic applies a Mandriva "automatic=k:v,k:v" parameter.
func (s *Settings) applyAutomatic(p param) error {
	if !p.hasVal || p.val == "" {
		return fmt.Errorf("%w: automatic: needs a value (automatic=method:dolly,network:dhcp)", ErrSyntax)
	}
	for _, kv := range strings.Split(p.val, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, ":")
		name := "automatic=" + k
		if !ok {
			return fmt.Errorf("%w: automatic=%q: %q is not KEY:VALUE", ErrSyntax, p.val, kv)
		}
		switch k {
		case "method":
			switch m := strings.ToLower(v); m {
			case MethodDolly, MethodHerd:
				s.Method = m
			default:
				return fmt.Errorf("%w: %s:%s: herd installs by its ring only; use method:dolly", ErrSyntax, name, v)
			}
		case "network":
			if strings.ToLower(v) != NetworkDHCP {
				return fmt.Errorf("%w: %s:%s: herd takes the node's identity from DHCP; only network:dhcp is supported (give the address in herd's inventory)", ErrSyntax, name, v)
			}
			s.Network = NetworkDHCP
		case "interface":
			if v == "" || v == "auto" {
				s.Interface = ""
				continue
			}
			if err := checkIfName(v); err != nil {
				return fmt.Errorf("%w: %s:%s: %v", ErrSyntax, name, v, err)
			}
			s.Interface = v
		case "dolly_timeout":
			d, err := parseTimeout(v)
			if err != nil {
				return fmt.Errorf("%w: %s:%s: %v", ErrSyntax, name, v, err)
			}
			s.Timeout = d
		case "server":
			u, err := normalizeServer(v)
			if err != nil {
				return fmt.Errorf("%w: %s:%s: %v", ErrSyntax, name, v, err)
			}
			s.Server = u
		default:
			s.Unknown = append(s.Unknown, "automatic="+kv)
		}
	}
	return nil
}

// parseTimeout takes whole seconds ("100", Mandriva's dolly_timeout) or a
// Go duration ("90s", "2m"); the result must be positive.
func parseTimeout(v string) (time.Duration, error) {
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n > int64(1<<63-1)/int64(time.Second) {
			return 0, errors.New("too long")
		}
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, errors.New("want seconds (100) or a duration (2m)")
		}
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

// parseAllow splits herd.allow='s value on commas and checks each pattern:
// absolute, and valid for filepath.Match.
func parseAllow(v string) ([]string, error) {
	var pats []string
	for _, p := range strings.Split(v, ",") {
		switch {
		case p == "":
			continue
		case !filepath.IsAbs(p):
			return nil, fmt.Errorf("pattern %q is not absolute: want one such as /dev/vd*", p)
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %v (want a shell pattern such as /dev/vd*)", p, err)
		}
		pats = append(pats, p)
	}
	if len(pats) == 0 {
		return nil, errors.New("no pattern: want PATTERN[,PATTERN...], such as /dev/vd*,/dev/ram*")
	}
	return pats, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "y", "yes", "on", "true":
		return true, nil
	case "0", "n", "no", "off", "false":
		return false, nil
	}
	return false, errors.New("want 1/0, yes/no, on/off or true/false")
}

// checkIfName accepts what the kernel accepts as an interface name
// (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/', ':' or space.
func checkIfName(v string) error {
	if v == "" || len(v) > 15 || v == "." || v == ".." || strings.ContainsAny(v, "/: \t\n") {
		return errors.New("not an interface name (1-15 characters, no '/', ':' or spaces)")
	}
	return nil
}

// parseBootIF parses pxelinux's BOOTIF: the ARP hardware type in two hex
// digits, then the address, each byte in two hex digits, separated by
// '-' ("01-52-54-00-12-34-56"). The types known are 01 (Ethernet) and 06
// (IEEE 802) with 6 bytes, and 20 (InfiniBand, RFC 4391) with 20.
func parseBootIF(v string) (net.HardwareAddr, error) {
	const want = "want 01-aa-bb-cc-dd-ee-ff (ARP type, then the address)"
	parts := strings.Split(v, "-")
	for _, p := range parts {
		if len(p) != 2 || !isHex(p[0]) || !isHex(p[1]) {
			return nil, errors.New(want)
		}
	}
	hw := parts[1:]
	if n := map[string]int{"01": 6, "06": 6, "20": 20}[parts[0]]; n == 0 || len(hw) != n {
		return nil, errors.New(want)
	}
	mac := make(net.HardwareAddr, len(hw))
	for i, p := range hw {
		b, _ := strconv.ParseUint(p, 16, 8)
		mac[i] = byte(b)
	}
	return mac, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// normalizeServer turns herd.server='s value into a base URL; see
// Settings.Server.
func normalizeServer(v string) (string, error) {
	if strings.Contains(v, "://") {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
			return "", errors.New("want an http:// or https:// URL, or HOST[:PORT]")
		}
		if p := u.Port(); p != "" {
			if _, err := parsePort(p); err != nil {
				return "", err
			}
		}
		// The scheme as url.Parse reads it: lower case ("HTTP://h" is
		// http://h).
		return strings.TrimRight(u.Scheme+v[strings.Index(v, ":"):], "/"), nil
	}
	if a, err := netip.ParseAddr(v); err == nil && a.Is6() {
		return "http://" + net.JoinHostPort(a.String(), strconv.Itoa(DefaultPort)), nil
	}
	host, port := v, strconv.Itoa(DefaultPort)
	if h, p, err := net.SplitHostPort(v); err == nil {
		if _, err := parsePort(p); err != nil {
			return "", err
		}
		host, port = h, p
	} else if strings.ContainsAny(v, ":[]") {
		return "", errors.New("want HOST, HOST:PORT, [IPv6]:PORT or a URL")
	}
	if host == "" || strings.ContainsAny(host, "/?#@ %\\") {
		return "", errors.New("want HOST, HOST:PORT, [IPv6]:PORT or a URL")
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func parsePort(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: want 1-65535", p)
	}
	return n, nil
}

// Split splits a command line into words as the kernel's next_arg does
// (lib/cmdline.c, kernel/params.c): words are separated by whitespace
// outside double quotes; a quote opening the word, or the value after
// '=', is removed together with the word's last character when that is
// a quote; other quotes stay. A trailing newline, as /proc/cmdline has,
// is whitespace.
func Split(cmdline string) []string {
	var words []string
	s := cmdline
	for {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		if s == "" {
			return words
		}
		quoted := false
		if s[0] == '"' {
			s = s[1:]
			quoted = true
		}
		inQuote := quoted
		eq := -1
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if isSpace(c) && !inQuote {
				break
			}
			if eq < 0 && i > 0 && c == '=' { // the kernel ignores an '=' in front
				eq = i
			}
			if c == '"' {
				inQuote = !inQuote
			}
		}
		word := s[:i]
		s = s[i:]
		// The kernel cuts the closing quote of a quoted value or a
		// quoted word (each at most once: it is the same last byte).
		cut := false
		if eq >= 0 && eq+1 < len(word) && word[eq+1] == '"' {
			word = word[:eq+1] + word[eq+2:]
			if strings.HasSuffix(word, `"`) && len(word) > eq+1 {
				word = word[:len(word)-1]
				cut = true
			}
		}
		if quoted && !cut && strings.HasSuffix(word, `"`) {
			word = word[:len(word)-1]
		}
		words = append(words, word)
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
