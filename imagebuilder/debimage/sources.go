package debimage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source is one apt source: one type, one URI, one suite, as the
// one-line format writes it (sources.list(5), "ONE-LINE-STYLE FORMAT").
// A deb822 stanza with several types, URIs or suites becomes one Source
// for each combination.
type Source struct {
	// Type is "deb" or "deb-src".
	Type string
	// URI is the repository's address, e.g. http://deb.debian.org/debian.
	URI string
	// Suite is the distribution (bookworm, bookworm-security), or a path
	// ending in "/" for a flat repository.
	Suite string
	// Components are main, contrib, ...; none for a flat repository.
	Components []string
	// Options are the one-line format's [key=value ...] options, in
	// order, with deb822 names mapped onto one-line ones (Signed-By →
	// signed-by, Architectures → arch).
	Options []Option
	// File is where the source was read from, and Line its line (the
	// stanza's first line for deb822).
	File string
	Line int
}

// Option is one key=value option of a source.
type Option struct {
	Key, Value string
}

// String is the source in the one-line format, as mmdebstrap takes a
// mirror argument: "deb [signed-by=/usr/share/keyrings/x.gpg] URI SUITE
// COMPONENTS".
func (s Source) String() string {
	var b strings.Builder
	b.WriteString(s.Type)
	if len(s.Options) > 0 {
		b.WriteString(" [")
		for i, o := range s.Options {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(o.Key + "=" + o.Value)
		}
		b.WriteByte(']')
	}
	b.WriteString(" " + s.URI + " " + s.Suite)
	for _, c := range s.Components {
		b.WriteString(" " + c)
	}
	return b.String()
}

// ErrNoSources is wrapped by the error of HostSources when no source of
// the host is for the wanted suite.
var ErrNoSources = errors.New("no apt source for the suite")

// ParseSourcesList parses the one-line format of /etc/apt/sources.list
// and sources.list.d/*.list: "TYPE [OPTIONS] URI SUITE [COMPONENT...]",
// '#' starts a comment. Types other than deb and deb-src are an error,
// as apt makes them; file names the input in errors and in each Source.
func ParseSourcesList(r io.Reader, file string) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		s, err := parseOneLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		s.File, s.Line = file, n
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

func parseOneLine(line string) (Source, error) {
	var s Source
	typ, rest := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		typ, rest = line[:i], strings.TrimSpace(line[i:])
	}
	if typ != "deb" && typ != "deb-src" {
		return s, fmt.Errorf("type %q: want deb or deb-src", typ)
	}
	s.Type = typ
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return s, errors.New("options: no closing ']'")
		}
		for _, f := range strings.Fields(rest[1:end]) {
			k, v, ok := strings.Cut(f, "=")
			if !ok || k == "" {
				return s, fmt.Errorf("option %q: want key=value", f)
			}
			s.Options = append(s.Options, Option{k, v})
		}
		rest = rest[end+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return s, errors.New("want URI and suite after the type")
	}
	s.URI, s.Suite, s.Components = f[0], f[1], f[2:]
	if strings.HasSuffix(s.Suite, "/") != (len(s.Components) == 0) {
		if len(s.Components) == 0 {
			return s, fmt.Errorf("suite %q: want components (or a flat repository's path ending in '/')", s.Suite)
		}
		return s, fmt.Errorf("suite %q ends in '/' (a flat repository), which takes no components", s.Suite)
	}
	return s, nil
}

// deb822Keys maps deb822 field names (lower case) onto the one-line
// format's option names where they differ; the others are lower-cased.
var deb822Keys = map[string]string{
	"architectures": "arch",
	"languages":     "lang",
	"targets":       "target",
}

// ParseDeb822 parses the deb822 format of sources.list.d/*.sources:
// stanzas of "Field: value" lines separated by blank lines, values
// continued on lines starting with a space or tab, '#' lines comments.
// A stanza with "Enabled: no" is skipped. Signed-By with an embedded
// key (a multi-line value) is dropped from the options: it cannot be
// given in the one-line format, and mmdebstrap finds a keyring itself.
func ParseDeb822(r io.Reader, file string) ([]Source, error) {
	var out []Source
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var fields []deb822Field
	start, n := 0, 0
	flush := func() error {
		if len(fields) == 0 {
			return nil
		}
		srcs, err := stanzaSources(fields)
		fields = nil
		if err != nil {
			return fmt.Errorf("%s:%d: %w", file, start, err)
		}
		for i := range srcs {
			srcs[i].File, srcs[i].Line = file, start
		}
		out = append(out, srcs...)
		return nil
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			if err := flush(); err != nil {
				return nil, err
			}
		case line[0] == ' ' || line[0] == '\t':
			if len(fields) == 0 {
				return nil, fmt.Errorf("%s:%d: continuation line without a field", file, n)
			}
			f := &fields[len(fields)-1]
			f.value += "\n" + strings.TrimSpace(line)
			f.multi = true
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("%s:%d: %q: want Field: value", file, n, line)
			}
			if len(fields) == 0 {
				start = n
			}
			fields = append(fields, deb822Field{name: name, value: strings.TrimSpace(value)})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// deb822Field is one field of a stanza; multi when it had continuation
// lines.
type deb822Field struct {
	name, value string
	multi       bool
}

// stanzaSources turns one stanza into its sources: every combination of
// Types, URIs and Suites (in that order), none when Enabled is no.
func stanzaSources(fields []deb822Field) ([]Source, error) {
	get := map[string]string{}
	var opts []Option
	for _, f := range fields {
		key := strings.ToLower(f.name)
		if _, dup := get[key]; dup {
			return nil, fmt.Errorf("field %s given twice", f.name)
		}
		get[key] = f.value
		switch key {
		case "types", "uris", "suites", "components", "enabled":
			continue
		}
		if f.multi {
			if key == "signed-by" {
				continue // an embedded key: see ParseDeb822
			}
			return nil, fmt.Errorf("field %s: a multi-line value is not an option", f.name)
		}
		if k, ok := deb822Keys[key]; ok {
			key = k
		}
		opts = append(opts, Option{key, strings.Join(strings.Fields(f.value), ",")})
	}
	switch strings.ToLower(get["enabled"]) {
	case "", "yes":
	case "no":
		return nil, nil
	default:
		return nil, fmt.Errorf("Enabled: %q: want yes or no", get["enabled"])
	}
	types, uris, suites := strings.Fields(get["types"]), strings.Fields(get["uris"]), strings.Fields(get["suites"])
	comps := strings.Fields(get["components"])
	if len(types) == 0 || len(uris) == 0 || len(suites) == 0 {
		return nil, errors.New("a stanza needs Types, URIs and Suites")
	}
	var out []Source
	for _, t := range types {
		if t != "deb" && t != "deb-src" {
			return nil, fmt.Errorf("type %q: want deb or deb-src", t)
		}
		for _, u := range uris {
			for _, s := range suites {
				flat := strings.HasSuffix(s, "/")
				if flat != (len(comps) == 0) {
					if flat {
						return nil, fmt.Errorf("suite %q ends in '/' (a flat repository), which takes no components", s)
					}
					return nil, fmt.Errorf("suite %q: want Components", s)
				}
				out = append(out, Source{Type: t, URI: u, Suite: s, Components: comps, Options: opts})
			}
		}
	}
	return out, nil
}

// HostSources reads the apt sources of the system whose root is root
// ("/" for this host): etc/apt/sources.list, then
// etc/apt/sources.list.d/*.list and *.sources in name order (as apt
// does; other names, like *.disabled, are ignored). A missing file is
// no error.
func HostSources(root string) ([]Source, error) {
	var out []Source
	read := func(path string, parse func(io.Reader, string) ([]Source, error)) error {
		f, err := os.Open(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		srcs, err := parse(f, path)
		if err != nil {
			return err
		}
		out = append(out, srcs...)
		return nil
	}
	if err := read(filepath.Join(root, "etc/apt/sources.list"), ParseSourcesList); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "etc/apt/sources.list.d")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(dir, name)
		var err error
		switch {
		case strings.HasSuffix(name, ".list"):
			err = read(p, ParseSourcesList)
		case strings.HasSuffix(name, ".sources"):
			err = read(p, ParseDeb822)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// InSuiteFamily reports whether suite belongs to the release named
// family: the release itself, its -updates, -security, -backports,
// -proposed-updates suites and the old "family/updates" security
// suite.
func InSuiteFamily(suite, family string) bool {
	if suite == family || suite == family+"/updates" {
		return true
	}
	rest, ok := strings.CutPrefix(suite, family+"-")
	return ok && rest != "" && !strings.ContainsAny(rest, "/ ")
}

// SelectSources keeps the binary ("deb") sources of the suite family
// (see InSuiteFamily), without duplicates, in order.
func SelectSources(srcs []Source, family string) []Source {
	var out []Source
	seen := map[string]bool{}
	for _, s := range srcs {
		if s.Type != "deb" || !InSuiteFamily(s.Suite, family) {
			continue
		}
		line := s.String()
		if seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, s)
	}
	return out
}
