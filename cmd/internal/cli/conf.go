package cli

// herd.conf: the options of herd serve and herd pxe in a file.
//
// The file is TOML (github.com/BurntSushi/toml): one "key = value" per
// option, the key being the option's long name, at the top level (no
// tables: one file serves both commands, each taking the keys it has and
// leaving the other's). Values take TOML's types: strings, integers,
// booleans, and arrays of strings for repeatable options (file = ["a >
// b", "c >> /"]); durations are strings ("10m") or a number of seconds.
// Every flag is a key, through pflag itself: a key's value goes through
// the flag's own Set, as if given on the command line, unless the
// command line set that flag (it wins). Not keys: config and
// print-config, and a BMC password (only bmc-password-file).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/herdproject/herd/ring/dollyconf"
	"github.com/spf13/pflag"
)

const (
	// defaultConfPath is read when it exists and --config is not given.
	defaultConfPath = "/etc/herd/herd.conf"
	// confPathEnv, when set, replaces defaultConfPath (tests, or a second
	// setup on one host); "none" reads no file.
	confPathEnv = "HERD_CONFIG"
	// confNone as --config or $HERD_CONFIG reads no file.
	confNone = "none"
)

// confFlags are --config and --print-config.
type confFlags struct {
	path  *string
	print *bool
}

func addConfFlags(fs *pflag.FlagSet) *confFlags {
	return &confFlags{
		path: fs.String("config", "", "read the options from the herd.conf `FILE` (TOML, keys the long option names; the command line wins); default "+
			defaultConfPath+" when it exists, or $"+confPathEnv+"; "+confNone+": no file"),
		print: fs.Bool("print-config", false, "print the options (defaults, herd.conf and command line merged) as a herd.conf, and exit"),
	}
}

// confNotKeys are flags a herd.conf cannot set.
var confNotKeys = map[string]bool{"config": true, "print-config": true, "help": true}

// Where a flag's value came from.
const (
	fromDefault = "default"
	fromFile    = "file"
	fromFlag    = "command line"
)

// confResult is what apply did: the file read ("" none) and, per flag
// name, where its value came from (fromFlag, fromFile; absent: default).
type confResult struct {
	file string
	from map[string]string
}

// apply reads herd.conf after fs parsed the command line and sets every
// flag the command line did not set. Keys that are not flags of fs but
// are flags of other (nil: none) are the other command's: checked by
// setting them there, and left. With --print-config it prints the result
// on env.Stdout and returns printed true: the command stops there.
func (c *confFlags) apply(env Env, fs *pflag.FlagSet, prog string, other *pflag.FlagSet) (printed bool, err error) {
	path, explicit := c.file(env, fs)
	res := &confResult{from: map[string]string{}}
	fs.Visit(func(fl *pflag.Flag) { res.from[fl.Name] = fromFlag })
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, os.ErrNotExist) && !explicit:
		case err != nil && explicit:
			return false, usagef("--config: %v", err)
		case err != nil:
			return false, usagef("herd.conf: %v (--config none reads no file)", err)
		default:
			res.file = path
			entries, err := parseConf(path, data)
			if err != nil {
				return false, err
			}
			if err := applyConf(fs, path, entries, other, res.from); err != nil {
				return false, err
			}
		}
	}
	if !*c.print {
		return false, nil
	}
	return true, printConf(env.Stdout, fs, prog, res, false)
}

// file is the herd.conf to read ("" none), and whether the user named it
// (--config: it must exist).
func (c *confFlags) file(env Env, fs *pflag.FlagSet) (path string, explicit bool) {
	if fs.Changed("config") {
		if *c.path == confNone || *c.path == "" {
			return "", false
		}
		return *c.path, true
	}
	path = defaultConfPath
	if env.Getenv != nil {
		if p := env.Getenv(confPathEnv); p != "" {
			path = p
		}
	}
	if path == confNone {
		return "", false
	}
	return path, false
}

// confEntry is one key of a herd.conf, as TOML decoded its value, with
// its line (0: not known).
type confEntry struct {
	key   string
	value any
	line  int
}

// confErrorf is a herd.conf error at file:line (line 0: the file's).
func confErrorf(file string, line int, format string, args ...any) error {
	if line > 0 {
		file += ":" + strconv.Itoa(line)
	}
	return usagef("%s: %s", file, fmt.Sprintf(format, args...))
}

// errProbe stops a probe's decoding: the decoder's error carries the
// key's position.
var errProbe = errors.New("probe")

// probe captures a value; its error makes the decoder say where the key is.
type probe struct{ v any }

func (p *probe) UnmarshalTOML(v any) error { p.v = v; return errProbe }

// parseConf reads a herd.conf's top-level keys, in file order.
func parseConf(file string, data []byte) ([]confEntry, error) {
	var top map[string]toml.Primitive
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&top)
	if err != nil {
		if looksDolly(data) {
			return nil, confErrorf(file, 0, "this is a dolly configuration file (the files to send), not a herd.conf: give it with -f %s (long name --session-config)", file)
		}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, confErrorf(file, pe.Position.Line, "%s", pe.Message)
		}
		return nil, confErrorf(file, 0, "%v", err)
	}
	var out []confEntry
	for _, k := range md.Keys() {
		if len(k) != 1 {
			continue // inside a table: the table's key is refused
		}
		e := confEntry{key: k[0]}
		var p probe
		err := md.PrimitiveDecode(top[e.key], &p)
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.line = pe.Position.Line
		}
		e.value = p.v
		out = append(out, e)
	}
	return out, nil
}

// looksDolly says whether data is a dolly, openSUSE dolly or dolly+
// configuration file: it parses as one, or it starts as one.
func looksDolly(data []byte) bool {
	if _, err := dollyconf.Parse("", bytes.NewReader(data)); err == nil {
		return true
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if w := strings.Fields(line); len(w) > 0 {
			return w[0] == "infile" || w[0] == "iofiles"
		}
	}
	return false
}

// applyConf sets the flags of fs from entries, but not those the command
// line set (from[name] == fromFlag); it records fromFile for the others.
// A key that is not a flag of fs is set in other when it is one of its
// flags (another command's: checked, not used), refused otherwise.
func applyConf(fs *pflag.FlagSet, file string, entries []confEntry, other *pflag.FlagSet, from map[string]string) error {
	for _, e := range entries {
		fail := func(format string, args ...any) error {
			return confErrorf(file, e.line, "key %q: %s", e.key, fmt.Sprintf(format, args...))
		}
		if strings.Contains(e.key, "password") && !strings.HasSuffix(e.key, "-file") {
			return fail("a password does not belong in herd.conf: put it in a file only root can read and name that file with bmc-password-file (or set $%s)", powerPasswordEnv)
		}
		if confNotKeys[e.key] {
			return fail("an option of the command line only, not a herd.conf key")
		}
		set, fl := fs, fs.Lookup(e.key)
		if fl == nil && other != nil {
			set, fl = other, other.Lookup(e.key)
		}
		if fl == nil {
			if _, table := e.value.(map[string]any); table {
				return fail("unknown key: herd.conf has no tables, its keys are the options' long names at the top (herd serve --print-config lists them)")
			}
			return fail("unknown key: the keys are the options' long names (herd serve --print-config lists them)")
		}
		vals, err := confValues(fl, e.value)
		if err != nil {
			return fail("%v", err)
		}
		if set == fs && from[e.key] == fromFlag {
			continue
		}
		for _, v := range vals {
			if err := set.Set(e.key, v); err != nil {
				var ie *pflag.InvalidValueError
				if errors.As(err, &ie) {
					err = ie.Unwrap()
				}
				return fail("%q: %v", v, err)
			}
		}
		if set == fs && len(vals) > 0 {
			from[e.key] = fromFile
		}
	}
	return nil
}

// confValues turns a key's TOML value into what fl's Set takes: one
// string, or one per item for a repeatable flag.
func confValues(fl *pflag.Flag, v any) ([]string, error) {
	typ := fl.Value.Type()
	switch typ {
	case "bool":
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, wantType("a boolean (true or false)", v)
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		if n, ok := v.(int64); ok {
			return []string{strconv.FormatInt(n, 10)}, nil
		}
		return nil, wantType("an integer", v)
	case "duration":
		switch d := v.(type) {
		case string:
			return []string{d}, nil
		case int64:
			return []string{strconv.FormatInt(d, 10)}, nil
		case float64:
			return []string{strconv.FormatFloat(d, 'f', -1, 64)}, nil
		}
		return nil, wantType(`a duration ("90s", "10m") or a number of seconds`, v)
	}
	if _, ok := fl.Value.(pflag.SliceValue); ok {
		switch a := v.(type) {
		case string:
			return []string{a}, nil
		case []any:
			out := make([]string, 0, len(a))
			for _, x := range a {
				s, ok := x.(string)
				if !ok {
					return nil, wantType("an array of strings", v)
				}
				out = append(out, s)
			}
			return out, nil
		}
		return nil, wantType("an array of strings", v)
	}
	if s, ok := v.(string); ok {
		return []string{s}, nil
	}
	return nil, wantType("a string", v)
}

// wantType is the error for a value of the wrong TOML type.
func wantType(want string, v any) error {
	return fmt.Errorf("want %s, not %s", want, tomlType(v))
}

// tomlType names a decoded TOML value's type as the TOML spec does.
func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date or time"
	}
	return fmt.Sprintf("a %T", v)
}

// printConf writes fs's options as a herd.conf: per flag, a comment (its
// help's first sentence, where its value came from) and "key = value";
// with example, every key commented out with its default (res is nil).
func printConf(w io.Writer, fs *pflag.FlagSet, prog string, res *confResult, example bool) error {
	var b bytes.Buffer
	if example {
		fmt.Fprintf(&b, "# herd.conf: the options of herd serve and herd pxe (each takes the keys it\n"+
			"# has). TOML: the options' long names as keys; strings quoted, durations as\n"+
			"# strings (\"10m\") or seconds, repeatable options as arrays of strings. The\n"+
			"# command line wins over this file. Every key below is commented out and\n"+
			"# shows its default; herd serve --print-config shows what herd will use.\n")
	} else {
		src := "defaults and the command line (no herd.conf read)"
		if res.file != "" {
			src = "defaults, " + res.file + " and the command line"
		}
		fmt.Fprintf(&b, "# %s's options: %s.\n# A valid herd.conf (--config FILE).\n", prog, src)
	}
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if confNotKeys[fl.Name] || err != nil {
			return
		}
		_, usage := pflag.UnquoteUsage(fl)
		if i := strings.Index(usage, ". "); i >= 0 {
			usage = usage[:i]
		}
		var line string
		if line, err = confLine(fl, example); err != nil {
			return
		}
		if example {
			fmt.Fprintf(&b, "\n%s# %s", confComment(usage), line)
			return
		}
		from := res.from[fl.Name]
		if from == "" {
			from = fromDefault
		}
		fmt.Fprintf(&b, "\n%s%s", confComment(usage+" ["+from+"]"), line)
	})
	if err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

// confComment is text as comment lines of at most 78 columns (a longer
// word keeps its line).
func confComment(text string) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		if n > 0 && n+1+len(w) > 78 {
			b.WriteString("\n")
			n = 0
		}
		if n == 0 {
			b.WriteString("#")
			n = 1
		}
		b.WriteString(" " + w)
		n += 1 + len(w)
	}
	b.WriteString("\n")
	return b.String()
}

// confLine is fl's "key = value\n" line in TOML: its value, or with def
// its default.
func confLine(fl *pflag.Flag, def bool) (string, error) {
	s := fl.Value.String()
	if def {
		s = fl.DefValue
	}
	var v any = s
	switch typ := fl.Value.Type(); {
	case typ == "bool":
		v = s == "true"
	case strings.HasPrefix(typ, "int") || strings.HasPrefix(typ, "uint"):
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return "", fmt.Errorf("--%s %q: %v", fl.Name, s, err)
		}
		v = n
	default:
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			items := sv.GetSlice()
			if def {
				items = nil // a repeatable flag's default here is none
			}
			v = append([]string{}, items...)
		}
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{fl.Name: v}); err != nil {
		return "", fmt.Errorf("--%s: %v", fl.Name, err)
	}
	return b.String(), nil
}
