// Package modalias loads the kernel modules the present hardware needs,
// as udev and modprobe would, without either: it reads every device's
// modalias under /sys/devices, matches them against modules.alias, and
// loads the matching modules (and their soft dependencies) until no new
// module loads. u-root's kmodule loads modules by name only; this package
// supplies the names.
//
// Matching follows kmod: a modules.alias pattern matches a device's
// modalias as fnmatch(3) without flags ('*', '?', bracket expressions,
// backslash escapes; '*' also matches '/'), after both are normalised as
// kmod's alias_normalize does ('-' reads as '_', except inside brackets).
// Module names are normalised the same way ("virtio-net" is virtio_net).
//
// KernelLoader is the real Loader: it resolves a module name to its file
// through modules.dep, loads the dependencies first, and inserts the
// module with finit_module(2), or init_module(2) for .ko.xz, .ko.zst and
// .ko.gz files, decompressed in memory.
package modalias

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Alias is one line of modules.alias: devices whose modalias matches
// Pattern are driven by Module.
type Alias struct {
	// Pattern is the glob as written ("pci:v00001AF4d00001000sv*sd*bc*sc*i*").
	Pattern string
	// Module is the module name, normalised ('-' → '_').
	Module string
}

// ParseAliases reads a modules.alias file: "alias PATTERN MODULE" lines,
// '#' comments and blank lines. Other modprobe.d directives (options,
// softdep, blacklist, install, remove, include) are skipped, so a
// modprobe.d file reads too; an alias line without exactly a pattern and
// a module, or an unknown directive, is an error naming the line.
func ParseAliases(r io.Reader) ([]Alias, error) {
	var out []Alias
	err := eachLine(r, func(n int, f []string) error {
		switch f[0] {
		case "alias":
			if len(f) != 3 {
				return fmt.Errorf("modules.alias line %d: want \"alias PATTERN MODULE\", got %d words", n, len(f))
			}
			out = append(out, Alias{Pattern: f[1], Module: NormalizeName(f[2])})
		case "options", "softdep", "weakdep", "blacklist", "install", "remove", "include":
		default:
			return fmt.Errorf("modules.alias line %d: unknown directive %q", n, f[0])
		}
		return nil
	})
	return out, err
}

// ParseSoftdeps reads a modules.softdep file ("softdep MOD pre: A B post:
// C"; '#' comments) into module → its "pre:" modules in order, which must
// be loaded before it. Several lines for one module add up. "post:"
// modules are checked but not returned: they are not needed for the
// module to work, and the hardware that needs them brings its own alias.
// Words before "pre:" or "post:" are ignored, as kmod ignores them.
// Other directives are skipped, so a modprobe.d file reads too.
func ParseSoftdeps(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	err := eachLine(r, func(n int, f []string) error {
		if f[0] != "softdep" {
			return nil
		}
		if len(f) < 3 {
			return fmt.Errorf("modules.softdep line %d: want \"softdep MODULE pre: ... post: ...\"", n)
		}
		mod := NormalizeName(f[1])
		section := ""
		for _, w := range f[2:] {
			switch w {
			case "pre:", "post:":
				section = w
				continue
			}
			switch section {
			case "pre:":
				out[mod] = appendNew(out[mod], NormalizeName(w))
			default:
				// "post:" modules, and words before either marker,
				// which kmod ignores too (linux 6.1's cifs has
				// "softdep cifs gcm").
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ExtraSoftdeps returns the soft dependencies herd adds to
// modules.softdep's: modules the kernel asks for by crypto or charset
// name at mount time, which modules.dep cannot list and modules.softdep
// may lack (issue 4): ext4 needs crc32c_generic, vfat the code page 437
// and ASCII charsets. Each call returns a new map.
func ExtraSoftdeps() map[string][]string {
	return map[string][]string{
		"ext4": {"crc32c_generic"},
		"vfat": {"nls_cp437", "nls_ascii"},
	}
}

// Match returns the modules whose alias pattern matches modalias, in
// file order, each once.
func Match(aliases []Alias, modalias string) []string {
	var out []string
	for _, a := range aliases {
		if fnmatch(a.Pattern, modalias) {
			out = appendNew(out, a.Module)
		}
	}
	return out
}

// NormalizeName returns a module name as the kernel and kmod know it:
// '-' becomes '_'.
func NormalizeName(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// eachLine calls fn with the words of every line of r that is not blank
// or a comment, numbered from 1. kmod's config reader allows a comment
// only at the start of a line, as here.
func eachLine(r io.Reader, fn func(n int, words []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, strings.Fields(line)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// norm is alias_normalize for one byte outside brackets.
func norm(c byte) byte {
	if c == '-' {
		return '_'
	}
	return c
}

// fnmatch reports whether s matches the glob pattern p as glibc's
// fnmatch(p, s, 0) does after kmod's normalisation of both: '-' outside
// brackets compares as '_'. '*' is matched by the usual backtracking to
// the last star, which is exact for patterns without FNM_PATHNAME and
// takes time O(len(p)·len(s)) at worst.
func fnmatch(p, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				for pi < len(p) && p[pi] == '*' {
					pi++
				}
				if pi == len(p) {
					return true
				}
				starP, starS = pi, si
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if ok, next, valid := matchBracket(p, pi, norm(s[si])); valid {
					if ok {
						pi = next
						si++
						continue
					}
					break // mismatch: backtrack below
				}
				// No closing ']': '[' is an ordinary character.
				if s[si] == '[' {
					pi++
					si++
					continue
				}
			case '\\':
				if pi+1 < len(p) && norm(p[pi+1]) == norm(s[si]) {
					pi += 2
					si++
					continue
				}
				// A trailing backslash matches nothing, as in glibc.
			default:
				if norm(c) == norm(s[si]) {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// matchBracket matches c against the bracket expression starting at
// p[start] == '['. valid is false when the expression has no closing
// ']' (then '[' is literal); otherwise ok says whether c is in the set
// and next is the index after the ']'. Supported: negation by '!' or '^',
// ']' first as a member, ranges, backslash escapes and the POSIX classes
// [:alpha:] and the rest.
func matchBracket(p string, start int, c byte) (ok bool, next int, valid bool) {
	i := start + 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	matched := false
	first := true
	for {
		if i >= len(p) {
			return false, 0, false
		}
		ch := p[i]
		if ch == ']' && !first {
			i++
			break
		}
		first = false
		if ch == '[' && i+1 < len(p) && p[i+1] == ':' {
			if end := strings.Index(p[i+2:], ":]"); end >= 0 {
				if inClass(p[i+2:i+2+end], c) {
					matched = true
				}
				i += 2 + end + 2
				continue
			}
		}
		if ch == '\\' && i+1 < len(p) {
			i++
			ch = p[i]
		}
		lo := ch
		i++
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi := p[i+1]
			i += 2
			if hi == '\\' && i < len(p) {
				hi = p[i]
				i++
			}
			if lo <= c && c <= hi {
				matched = true
			}
			continue
		}
		if c == lo {
			matched = true
		}
	}
	return matched != negate, i, true
}

func inClass(name string, c byte) bool {
	isUpper := c >= 'A' && c <= 'Z'
	isLower := c >= 'a' && c <= 'z'
	isDigit := c >= '0' && c <= '9'
	switch name {
	case "alpha":
		return isUpper || isLower
	case "digit":
		return isDigit
	case "alnum":
		return isUpper || isLower || isDigit
	case "upper":
		return isUpper
	case "lower":
		return isLower
	case "xdigit":
		return isDigit || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	case "space":
		return c == ' ' || c >= '\t' && c <= '\r'
	case "blank":
		return c == ' ' || c == '\t'
	case "punct":
		return c > ' ' && c < 0x7f && !(isUpper || isLower || isDigit)
	case "print":
		return c >= ' ' && c < 0x7f
	case "graph":
		return c > ' ' && c < 0x7f
	case "cntrl":
		return c < ' ' || c == 0x7f
	}
	return false
}
