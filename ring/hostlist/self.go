package hostlist

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrNotInList and ErrAmbiguous are what FindSelf's errors match with
// errors.Is.
var (
	// ErrNotInList: nothing about this machine matches any host.
	ErrNotInList = errors.New("this machine is not in the host list")
	// ErrAmbiguous: this machine matches several hosts and nothing decides.
	ErrAmbiguous = errors.New("this machine matches several hosts")
)

// FindSelf returns the index of this machine in hosts, and how it was found
// (e.g. "interface address 10.0.0.3", "MYNODENAME=node3"), as dolly's
// client does. It tries, in order, and stops at the first step that
// designates exactly one host:
//
//  1. preferred: the address the client was told to listen on, or the local
//     address of the connection the sender opened to it;
//  2. ifaceAddrs: the machine's interface addresses (see InterfaceAddrs);
//  3. the environment variables MYNODENAME, then HOSTNAME, then HOST, read
//     through getenv (nil reads nothing);
//  4. hostname, normally os.Hostname().
//
// Addresses match a host's Addr exactly: on Linux all of 127.0.0.0/8 is
// local, but the interface address 127.0.0.1 does not make this machine
// the host 127.0.0.5; several clients on one machine tell themselves apart
// by their preferred (listen) address. Names match case-insensitively,
// then by their first DNS label (n001 is n001.kek.jp), then, unless
// hyphenNormal, by dolly's interface-suffix convention: the list entry
// node12-giga is the giga interface of the machine node12, and entries
// whose base names before the first '-' agree are the same machine.
//
// A step that matches several hosts is skipped; when no step decides, the
// error matches ErrAmbiguous if some step was ambiguous, ErrNotInList
// otherwise, and says what was tried.
func FindSelf(hosts []Resolved, preferred []netip.Addr, ifaceAddrs []netip.Addr, getenv func(string) string, hostname string, hyphenNormal bool) (index int, how string, err error) {
	if len(hosts) == 0 {
		return -1, "", errors.New("find myself: the host list is empty")
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var ambiguous []string
	var tried []string

	if i, a, amb := matchAddrs(hosts, preferred); i >= 0 {
		return i, "preferred address " + a.String(), nil
	} else if amb != "" {
		ambiguous = append(ambiguous, "the preferred addresses match "+amb)
	}
	if len(preferred) > 0 {
		tried = append(tried, "preferred addresses "+joinAddrs(preferred))
	}

	if i, a, amb := matchAddrs(hosts, ifaceAddrs); i >= 0 {
		return i, "interface address " + a.String(), nil
	} else if amb != "" {
		ambiguous = append(ambiguous, "the interface addresses match "+amb)
	}
	if len(ifaceAddrs) > 0 {
		tried = append(tried, "interface addresses "+joinAddrs(ifaceAddrs))
	}

	type source struct{ how, name string }
	var names []source
	for _, env := range []string{"MYNODENAME", "HOSTNAME", "HOST"} {
		if v := strings.TrimSpace(getenv(env)); v != "" {
			names = append(names, source{env + "=" + v, v})
		}
	}
	if hostname != "" {
		names = append(names, source{"hostname " + hostname, hostname})
	}
	for _, s := range names {
		i, amb := matchName(hosts, s.name, hyphenNormal)
		if i >= 0 {
			return i, s.how, nil
		}
		if amb != "" {
			ambiguous = append(ambiguous, s.how+" matches "+amb)
		}
		tried = append(tried, s.how)
	}

	if len(ambiguous) > 0 {
		return -1, "", fmt.Errorf("%w: %s; give this client the address to listen on (one of the host list's addresses) so it can tell which it is",
			ErrAmbiguous, strings.Join(ambiguous, "; "))
	}
	what := "nothing to compare (no addresses, no names)"
	if len(tried) > 0 {
		what = "none of " + strings.Join(tried, ", ") + " matches"
	}
	return -1, "", fmt.Errorf("%w: %s; check -H or the configuration file, or give this client its listen address",
		ErrNotInList, what)
}

// matchAddrs returns the one host whose address is in addrs and the address
// that matched; or -1 and, when several hosts matched, a description of
// them.
func matchAddrs(hosts []Resolved, addrs []netip.Addr) (int, netip.Addr, string) {
	found := -1
	var foundAddr netip.Addr
	var all []int
	for i, h := range hosts {
		if !h.Addr.IsValid() {
			continue
		}
		ha := norm(h.Addr)
		for _, a := range addrs {
			if a.IsValid() && norm(a) == ha {
				if found < 0 {
					found, foundAddr = i, a
				}
				all = append(all, i)
				break
			}
		}
	}
	if len(all) > 1 {
		return -1, netip.Addr{}, describe(hosts, all)
	}
	return found, foundAddr, ""
}

func norm(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// matchName finds the one host that name designates, trying ever looser
// comparisons; see FindSelf.
func matchName(hosts []Resolved, name string, hyphenNormal bool) (int, string) {
	var passes []func(h Resolved) bool
	if addr, err := netip.ParseAddr(name); err == nil {
		// An address matches exactly, as written or as resolved.
		passes = append(passes, func(h Resolved) bool {
			return strings.EqualFold(h.Name, name) || h.Addr.IsValid() && norm(h.Addr) == norm(addr)
		})
	} else {
		short := shortName(name)
		passes = append(passes,
			func(h Resolved) bool { return strings.EqualFold(h.Name, name) },
			func(h Resolved) bool { return shortName(h.Name) == short },
		)
		if !hyphenNormal {
			passes = append(passes,
				// node12-giga is node12's giga interface.
				func(h Resolved) bool { return strings.HasPrefix(shortName(h.Name), short+"-") },
				// dolly: the names before the first '-' agree.
				func(h Resolved) bool { return baseName(h.Name) == baseName(name) },
			)
		}
	}
	for _, match := range passes {
		var all []int
		for i, h := range hosts {
			if match(h) {
				all = append(all, i)
			}
		}
		switch {
		case len(all) == 1:
			return all[0], ""
		case len(all) > 1:
			return -1, describe(hosts, all)
		}
	}
	return -1, ""
}

// shortName lowercases s and, unless it is an address, drops its domain.
func shortName(s string) string {
	s = strings.ToLower(s)
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	short, _, _ := strings.Cut(s, ".")
	return short
}

// baseName is shortName up to the first '-'.
func baseName(s string) string {
	short := shortName(s)
	if _, err := netip.ParseAddr(short); err == nil {
		return short
	}
	base, _, _ := strings.Cut(short, "-")
	return base
}

func describe(hosts []Resolved, idx []int) string {
	var parts []string
	for _, i := range idx {
		h := hosts[i]
		if h.Addr.IsValid() && h.Addr.String() != h.Name {
			parts = append(parts, fmt.Sprintf("%d (%s, %s)", i+1, h.Name, h.Addr))
		} else {
			parts = append(parts, fmt.Sprintf("%d (%s)", i+1, h.Name))
		}
	}
	return "hosts " + strings.Join(parts, ", ")
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// InterfaceAddrs returns the addresses of this machine's network
// interfaces (IPv4 ones plain, not IPv4-mapped), for FindSelf.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap())
		}
	}
	return out, nil
}
