// Package hostlist turns dolly's host lists into the hosts of a ring: it
// expands the -H list (commas, IPv4 last-octet ranges such as 10.0.1.45-80,
// bracket ranges such as node[01-16]), checks names, resolves them to
// addresses with duplicates refused, and finds which entry of the list is
// the machine it runs on, the way a dolly client does.
package hostlist

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxHosts caps how many hosts one list may expand to: a typo such as
// node[1-1000000] fails instead of eating memory.
const MaxHosts = 65536

// Expand expands a dolly -H host list into host names and addresses, in
// order.
//
// Items are separated by commas (spaces around an item are ignored). An item
// is one of:
//
//   - a host name (node-12 and cluster-1-giga are names: '-' never makes a
//     range in a name) or an IPv4 or IPv6 address;
//   - an IPv4 range on the last octet, 10.0.1.45-80 or 10.0.1.45-10.0.1.80
//     (both ends in one /24), inclusive;
//   - a bracket range, node[01-16] (the lower bound's width sets the zero
//     padding: node01 .. node16) or node[1-3,7]; several groups multiply:
//     rack[1-2]-n[1-2] is rack1-n1, rack1-n2, rack2-n1, rack2-n2.
//
// Empty items, reversed ranges, octets above 255, malformed names and lists
// longer than MaxHosts are errors naming the item. Duplicates are not
// checked here: see CheckDuplicates and Resolve.
func Expand(list string) ([]string, error) {
	items, err := splitTop(list)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			if len(items) == 1 {
				return nil, errors.New("empty host list: give one or more hosts separated by commas")
			}
			return nil, fmt.Errorf("host list %q: item %d is empty (two commas in a row, or a comma at an end)", list, i+1)
		}
		hosts, err := expandItem(item, MaxHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("host list item %d %q: %w", i+1, item, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// splitTop splits list at the commas outside brackets.
func splitTop(list string) ([]string, error) {
	var items []string
	depth, start := 0, 0
	for i := 0; i < len(list); i++ {
		switch list[i] {
		case '[':
			depth++
		case ']':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("host list %q: ']' without '['", list)
			}
		case ',':
			if depth == 0 {
				items = append(items, list[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("host list %q: '[' without ']'", list)
	}
	return append(items, list[start:]), nil
}

// expandItem expands one item into at most limit hosts.
func expandItem(item string, limit int) ([]string, error) {
	if strings.ContainsAny(item, "[]") {
		hosts, err := expandBrackets(item, limit)
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			if err := CheckName(h); err != nil {
				return nil, err
			}
		}
		return hosts, nil
	}
	if isDottedDigits(item, true) && strings.Contains(item, "-") && strings.Contains(item, ".") {
		return expandIPv4Range(item, limit)
	}
	if err := CheckName(item); err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, errTooMany
	}
	return []string{item}, nil
}

var errTooMany = fmt.Errorf("the host list expands to more than %d hosts", MaxHosts)

// expandIPv4Range expands 10.0.1.45-80 and 10.0.1.45-10.0.1.80.
func expandIPv4Range(item string, limit int) ([]string, error) {
	lo, hi, ok := strings.Cut(item, "-")
	if !ok || strings.Contains(hi, "-") {
		return nil, errors.New("an address range is FIRST-LAST, e.g. 10.0.1.45-80")
	}
	first, err := parseIPv4(lo)
	if err != nil {
		return nil, err
	}
	var last [4]byte
	if strings.Contains(hi, ".") {
		a, err := parseIPv4(hi)
		if err != nil {
			return nil, err
		}
		la := a.As4()
		fa := first.As4()
		if la[0] != fa[0] || la[1] != fa[1] || la[2] != fa[2] {
			return nil, fmt.Errorf("range %s: both ends must be in one /24 (only the last octet may vary)", item)
		}
		last = la
	} else {
		n, err := parseOctet(hi)
		if err != nil {
			return nil, err
		}
		last = first.As4()
		last[3] = n
	}
	f := first.As4()
	if last[3] < f[3] {
		return nil, fmt.Errorf("range %s is reversed: %d > %d", item, f[3], last[3])
	}
	if n := int(last[3]) - int(f[3]) + 1; n > limit {
		return nil, errTooMany
	}
	var out []string
	for o := int(f[3]); o <= int(last[3]); o++ {
		a := f
		a[3] = byte(o)
		out = append(out, netip.AddrFrom4(a).String())
	}
	return out, nil
}

// expandBrackets expands prefix[ranges]rest, recursively for rest.
func expandBrackets(item string, limit int) ([]string, error) {
	open := strings.IndexByte(item, '[')
	end := strings.IndexByte(item, ']')
	if open < 0 || end < open {
		return nil, errors.New("unbalanced brackets: write node[01-16]")
	}
	body := item[open+1 : end]
	if strings.IndexByte(body, '[') >= 0 {
		return nil, errors.New("nested brackets")
	}
	prefix, rest := item[:open], item[end+1:]
	if body == "" {
		return nil, errors.New("empty brackets: write node[01-16] or node[1-3,7]")
	}
	var nums []string
	for part := range strings.SplitSeq(body, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		if !isDigits(lo) || (isRange && !isDigits(hi)) {
			return nil, fmt.Errorf("bracket item %q: expected N or N-M (decimal numbers)", part)
		}
		a, errA := strconv.ParseUint(lo, 10, 32)
		b := a
		var errB error
		if isRange {
			b, errB = strconv.ParseUint(hi, 10, 32)
		}
		if errA != nil || errB != nil {
			return nil, fmt.Errorf("bracket item %q: number too large", part)
		}
		if b < a {
			return nil, fmt.Errorf("bracket range %q is reversed", part)
		}
		if b-a+1 > uint64(limit-len(nums)) {
			return nil, errTooMany
		}
		for n := a; n <= b; n++ {
			nums = append(nums, fmt.Sprintf("%0*d", len(lo), n))
		}
	}
	var out []string
	for _, n := range nums {
		if !strings.ContainsAny(rest, "[]") {
			if limit-len(out) < 1 {
				return nil, errTooMany
			}
			out = append(out, prefix+n+rest)
			continue
		}
		tails, err := expandBrackets(rest, limit-len(out))
		if err != nil {
			return nil, err
		}
		for _, t := range tails {
			out = append(out, prefix+n+t)
		}
	}
	return out, nil
}

// CheckName reports whether s can name a host in a ring: an IPv4 address
// in dotted decimal (no leading zeros, which some tools read as octal), an
// IPv6 address, or a host name made of letters, digits, '-', '_' and dots.
// A name of digits only is refused: resolvers read "128" as the address
// 0.0.0.128.
func CheckName(s string) error {
	switch {
	case s == "":
		return errors.New("empty host name")
	case len(s) > 253:
		return fmt.Errorf("host name %.20q... is longer than 253 characters", s)
	case strings.Contains(s, ":"):
		if _, err := netip.ParseAddr(s); err != nil || strings.ContainsFunc(s, notPrintable) {
			return fmt.Errorf("%q is not a host name or an IPv6 address", s)
		}
		return nil
	case isDottedDigits(s, false):
		if strings.Count(s, ".") == 0 {
			return fmt.Errorf("%q is a number, not a host name", s)
		}
		_, err := parseIPv4(s)
		return err
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("host name %q: character %q is not allowed (letters, digits, '-', '_' and '.')", s, c)
		}
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	for _, l := range labels {
		switch {
		case l == "":
			return fmt.Errorf("host name %q has an empty label (two dots in a row, or a leading dot)", s)
		case len(l) > 63:
			return fmt.Errorf("host name %q: label %.20q... is longer than 63 characters", s, l)
		case l[0] == '-':
			return fmt.Errorf("host name %q: a label starts with '-'", s)
		}
	}
	return nil
}

// CheckDuplicates returns a *DuplicateError for the first host named twice
// (names compare case-insensitively), nil when all differ.
func CheckDuplicates(hosts []string) error {
	seen := make(map[string]int, len(hosts))
	for i, h := range hosts {
		k := strings.ToLower(h)
		if j, ok := seen[k]; ok {
			return &DuplicateError{First: j + 1, FirstName: hosts[j], Second: i + 1, SecondName: h}
		}
		seen[k] = i
	}
	return nil
}

// ErrDuplicate is what a *DuplicateError matches with errors.Is.
var ErrDuplicate = errors.New("duplicate host")

// DuplicateError says that two entries of a host list are the same host:
// the same name, or two names for the same address.
type DuplicateError struct {
	// First and Second are 1-based positions in the list, First < Second.
	First, Second int
	// FirstName and SecondName are the entries as written.
	FirstName, SecondName string
	// Addr is the address both resolve to; the zero Addr when the names
	// themselves are equal.
	Addr netip.Addr
}

func (e *DuplicateError) Error() string {
	if e.Addr.IsValid() {
		return fmt.Sprintf("hosts %d (%s) and %d (%s) are the same address %s: list every node once",
			e.First, e.FirstName, e.Second, e.SecondName, e.Addr)
	}
	return fmt.Sprintf("hosts %d (%s) and %d (%s) are the same host: list every node once",
		e.First, e.FirstName, e.Second, e.SecondName)
}

// Is makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// parseIPv4 parses a dotted-decimal IPv4 address, saying which octet is
// wrong.
func parseIPv4(s string) (netip.Addr, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 address (four numbers 0-255 separated by dots)", s)
	}
	var a [4]byte
	for i, p := range parts {
		n, err := parseOctet(p)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("address %s: %w", s, err)
		}
		a[i] = n
	}
	return netip.AddrFrom4(a), nil
}

func parseOctet(p string) (byte, error) {
	if !isDigits(p) {
		return 0, fmt.Errorf("octet %q is not a number", p)
	}
	if len(p) > 1 && p[0] == '0' {
		short := strings.TrimLeft(p, "0")
		if short == "" {
			short = "0"
		}
		return 0, fmt.Errorf("octet %s has a leading zero (octal to some tools): write %s", p, short)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n > 255 {
		return 0, fmt.Errorf("octet %s > 255", p)
	}
	return byte(n), nil
}

// notPrintable reports space, control and non-ASCII characters.
func notPrintable(r rune) bool { return r <= ' ' || r >= 0x7f }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDottedDigits reports whether s is made only of digits and dots (and
// '-' when dash is set), with at least one digit.
func isDottedDigits(s string, dash bool) bool {
	digit := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c == '.', dash && c == '-':
		default:
			return false
		}
	}
	return digit
}
