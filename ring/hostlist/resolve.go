package hostlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ErrNoSuchHost is what Resolve's error for a name that does not resolve
// matches with errors.Is.
var ErrNoSuchHost = errors.New("no such host")

// Resolved is one host of a ring with its address.
type Resolved struct {
	// Name is the host as written in the list (a name or an address).
	Name string
	// Addr is the address the ring connects to; IPv4 addresses are plain
	// (never IPv4-mapped IPv6).
	Addr netip.Addr
}

// resolveWorkers bounds the lookups in flight: enough to hide a slow
// resolver over hundreds of nodes, few enough not to flood it.
const resolveWorkers = 8

// Resolve resolves hosts, in order, to one address each, as dolly's -R
// (network "ip4", the default; "" means "ip4") or -6 (network "ip6") do;
// "ip" takes the first address of either family.
//
// Address literals are used as they are (an IPv6 literal with "ip4", or an
// IPv4 literal with "ip6", is an error). Names go through r (nil means
// net.DefaultResolver), which consults /etc/hosts and then DNS as the
// system is configured; the first address of the asked family wins.
//
// A name that does not resolve is an error that names it and matches
// ErrNoSuchHost. A host listed twice by name, or two entries with the same
// address, is a *DuplicateError naming both entries and their 1-based
// positions.
func Resolve(ctx context.Context, r *net.Resolver, hosts []string, network string) ([]Resolved, error) {
	if network == "" {
		network = "ip4"
	}
	switch network {
	case "ip4", "ip6", "ip":
	default:
		return nil, fmt.Errorf("resolve: network %q: want ip4 (-R), ip6 (-6) or ip", network)
	}
	if r == nil {
		r = net.DefaultResolver
	}
	if err := CheckDuplicates(hosts); err != nil {
		return nil, err
	}

	out := make([]Resolved, len(hosts))
	errs := make([]error, len(hosts))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	sem := make(chan struct{}, resolveWorkers)
	for i, h := range hosts {
		out[i].Name = h
		if a, err := netip.ParseAddr(h); err == nil {
			out[i].Addr, errs[i] = literal(h, a, network)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i].Addr, errs[i] = lookup(ctx, r, h, network)
			if errs[i] != nil {
				cancel() // the first failure decides; stop the rest
			}
		}()
	}
	wg.Wait()
	// Report the first failure in list order, but prefer a real failure
	// over the cancellations it caused in later lookups.
	var first error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			first = err
			break
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}

	seen := make(map[netip.Addr]int, len(out))
	for i, h := range out {
		if j, ok := seen[h.Addr]; ok {
			return nil, &DuplicateError{First: j + 1, FirstName: out[j].Name, Second: i + 1, SecondName: h.Name, Addr: h.Addr}
		}
		seen[h.Addr] = i
	}
	return out, nil
}

func literal(h string, a netip.Addr, network string) (netip.Addr, error) {
	a = a.Unmap()
	switch {
	case network == "ip4" && !a.Is4():
		return netip.Addr{}, fmt.Errorf("host %s: an IPv6 address, but the ring resolves to IPv4: use -6 for IPv6", h)
	case network == "ip6" && a.Is4():
		return netip.Addr{}, fmt.Errorf("host %s: an IPv4 address, but -6 asks for IPv6: drop -6 or give the IPv6 address", h)
	}
	return a, nil
}

func lookup(ctx context.Context, r *net.Resolver, h, network string) (netip.Addr, error) {
	addrs, err := r.LookupNetIP(ctx, network, h)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return netip.Addr{}, fmt.Errorf("host %s: %w: check -H or the configuration file", h, ErrNoSuchHost)
		}
		return netip.Addr{}, fmt.Errorf("host %s: %w", h, err)
	}
	for _, a := range addrs {
		a = a.Unmap()
		if network == "ip4" && !a.Is4() || network == "ip6" && a.Is4() {
			continue
		}
		return a, nil
	}
	fam := map[string]string{"ip4": "IPv4 ", "ip6": "IPv6 ", "ip": ""}[network]
	return netip.Addr{}, fmt.Errorf("host %s: %w (no %saddress): check -H or the configuration file", h, ErrNoSuchHost, fam)
}
