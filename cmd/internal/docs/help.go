package docs

import (
	"regexp"
	"strings"
)

// Help is a command's --help text, taken apart.
type Help struct {
	// Text is the help as the command printed it.
	Text string
	// Usage holds the synopsis lines: "herd send [OPTIONS] ...", without
	// "Usage:" and the alignment of the lines after the first.
	Usage []string
	// Prose is the text between the usage and the options, blank lines
	// included, without the "Options:" line.
	Prose []string
	// Flags are the options, in the order printed.
	Flags []Flag
}

// Flag is one option line of pflag's PrintDefaults.
type Flag struct {
	// Short is the one-letter name ("H"), "" when there is none.
	Short string
	// Long is the name without dashes ("hosts").
	Long string
	// Arg is the value's placeholder ("FILE", "string", "'IN > OUT'"),
	// "" for an option that takes no value.
	Arg string
	// Usage is the description, pflag's "(default ...)" included.
	Usage string
}

// Spelling is the option as the help shows it: "-H, --hosts".
func (f Flag) Spelling() string {
	if f.Short == "" {
		return "--" + f.Long
	}
	return "-" + f.Short + ", --" + f.Long
}

// ValueKind says what an option's value names, for completion: "file",
// "dir", "value" (anything else) or "" (no value).
func (f Flag) ValueKind() string {
	a := strings.ToUpper(f.Arg)
	switch {
	case f.Arg == "":
		return ""
	case strings.Contains(a, "DIR"):
		return "dir"
	case strings.Contains(a, "FILE"), strings.Contains(a, "PATH"), strings.Contains(a, "DEVICE"),
		strings.Contains(a, "IMAGE"), strings.Contains(a, "IN > OUT"):
		return "file"
	}
	return "value"
}

// flagLine is a PrintDefaults line: "  -x, --name ARG   usage" or
// "      --name ARG   usage"; at least three spaces part the option from
// its description.
var flagLine = regexp.MustCompile(`^(?:  -([^- ]), |      )--([A-Za-z0-9][-A-Za-z0-9_.]*)(?: (\S.*?))?(?: {3,}(\S.*))?$`)

// ParseHelp takes a --help text apart: the "Usage:" lines first, then the
// prose, then the options PrintDefaults printed at the end (after an
// "Options:" line or not).
func ParseHelp(text string) Help {
	h := Help{Text: text}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " \t")
	}
	i := 0
	if len(lines) > 0 && strings.HasPrefix(lines[0], "Usage: ") {
		h.Usage = append(h.Usage, strings.TrimSpace(strings.TrimPrefix(lines[0], "Usage: ")))
		for i = 1; i < len(lines) && strings.HasPrefix(lines[i], "       ") && strings.TrimSpace(lines[i]) != ""; i++ {
			h.Usage = append(h.Usage, strings.TrimSpace(lines[i]))
		}
	}
	// The options are the last lines, each a flag line or the
	// continuation of one (a usage with a newline, indented deeper).
	end := len(lines)
	start := end
	for j := end - 1; j >= i; j-- {
		if flagLine.MatchString(lines[j]) {
			start = j
			continue
		}
		if strings.HasPrefix(lines[j], "        ") && j > i {
			continue // a continuation: kept only if a flag line precedes it
		}
		break
	}
	for j := start; j < end; j++ {
		if m := flagLine.FindStringSubmatch(lines[j]); m != nil {
			h.Flags = append(h.Flags, Flag{Short: m[1], Long: m[2], Arg: m[3], Usage: m[4]})
		} else if n := len(h.Flags); n > 0 {
			h.Flags[n-1].Usage += " " + strings.TrimSpace(lines[j])
		}
	}
	prose := lines[i:start]
	if n := len(prose); n > 0 && prose[n-1] == "Options:" {
		prose = prose[:n-1]
	}
	for len(prose) > 0 && prose[0] == "" {
		prose = prose[1:]
	}
	for len(prose) > 0 && prose[len(prose)-1] == "" {
		prose = prose[:len(prose)-1]
	}
	h.Prose = prose
	return h
}

// subcommandWord is a usage token naming sub-commands: "image",
// "build|golden|capture|info", "[list]".
var subcommandWord = regexp.MustCompile(`^\[?([a-z][a-z0-9]*(?:\|[a-z][a-z0-9]*)*)\]?$`)

// Subcommands lists the sub-command words the usage lines name after
// the command's own words (path, e.g. ["herd", "image"]): for
// "herd image build|golden|capture|info ...", build, golden, capture and
// info; options and their values ("[OPTIONS]", "--ka") are skipped.
// Words after a sub-command come back as its own: "herd power bootdev
// pxe|disk" gives bootdev with pxe and disk under it.
func (h Help) Subcommands(path []string) []Word {
	var words []Word
	for _, u := range h.Usage {
		f := strings.Fields(u)
		if len(f) < len(path) || !equal(f[:len(path)], path) {
			continue
		}
		level := &words
		for _, tok := range f[len(path):] {
			if tok == "[OPTIONS]" || strings.HasPrefix(tok, "-") || strings.HasPrefix(tok, "[-") {
				continue
			}
			m := subcommandWord.FindStringSubmatch(tok)
			if m == nil {
				break
			}
			var last *Word
			for _, name := range strings.Split(m[1], "|") {
				last = addWord(level, name)
			}
			if strings.Contains(m[1], "|") {
				break // alternatives: what follows belongs to each
			}
			level = &last.Subs
		}
	}
	return words
}

// Word is a sub-command word of a usage line and the words after it.
type Word struct {
	Name string
	Subs []Word
}

func addWord(level *[]Word, name string) *Word {
	for i := range *level {
		if (*level)[i].Name == name {
			return &(*level)[i]
		}
	}
	*level = append(*level, Word{Name: name})
	return &(*level)[len(*level)-1]
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Commands parses a "Commands:" list of the prose (herd's): each
// indented line "  NAME   summary" up to the next blank line.
func (h Help) Commands() []Summary {
	var out []Summary
	in := false
	for _, l := range h.Prose {
		switch {
		case l == "Commands:":
			in = true
		case in && l == "":
			return out
		case in:
			name, summary, _ := strings.Cut(strings.TrimSpace(l), " ")
			out = append(out, Summary{Name: name, Text: strings.TrimSpace(summary)})
		}
	}
	return out
}

// Summary is a command's line in its parent's list.
type Summary struct{ Name, Text string }
