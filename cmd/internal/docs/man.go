package docs

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
)

// Page is a man page: NAME.SECTION.
type Page struct {
	Name    string
	Section int
	// Roff is the page's source.
	Roff []byte
}

// FileName is the page's file name, e.g. herd-send.1.
func (p Page) FileName() string { return fmt.Sprintf("%s.%d", p.Name, p.Section) }

// ManPages renders a page for every command of roots that has a help of
// its own. version and date go to the page's title line (date may be "").
func ManPages(roots []*Command, version, date string) []Page {
	var cmds []*Command
	for _, r := range roots {
		r.Walk(func(c *Command) {
			if c.OwnHelp {
				cmds = append(cmds, c)
			}
		})
	}
	var pages []Page
	for _, c := range cmds {
		var see []string
		for _, o := range cmds {
			if o != c {
				see = append(see, fmt.Sprintf("%s(%d)", o.Name(), o.Section()))
			}
		}
		md := Markdown(c, version, date, see)
		pages = append(pages, Page{Name: c.Name(), Section: c.Section(), Roff: tidy(escapeMinus(md2man.Render(md)))})
	}
	return pages
}

// Markdown writes c's help as a man page in go-md2man's markdown: NAME
// from the first sentence, SYNOPSIS from the usage lines, DESCRIPTION from
// the prose (indented lines verbatim; a "Label:" line before indented
// ones is a subsection), OPTIONS from the option lines, EXIT STATUS from
// an "Exit status:" paragraph, and SEE ALSO the pages in see
// ("herd-recv(1)").
func Markdown(c *Command, version, date string, see []string) []byte {
	var b strings.Builder
	h := c.Help
	fmt.Fprintf(&b, "# %s %d %q %q %q\n\n", strings.ToUpper(c.Name()), c.Section(), date, "herd "+version, "herd manual")

	fmt.Fprintf(&b, "## NAME\n%s - %s\n\n", c.Name(), nameLine(c))

	b.WriteString("## SYNOPSIS\n")
	prog := strings.Join(c.Path, " ")
	var usage []string // a line that does not start with prog goes on the one before
	for _, u := range h.Usage {
		if n := len(usage); n > 0 && !strings.HasPrefix(u, prog+" ") {
			usage[n-1] += " " + u
		} else {
			usage = append(usage, u)
		}
	}
	for i, u := range usage {
		end := "  \n" // a line break
		if i == len(usage)-1 {
			end = "\n\n"
		}
		if rest, ok := strings.CutPrefix(u, prog); ok {
			fmt.Fprintf(&b, "**%s**%s%s", prog, inline(rest), end)
		} else {
			fmt.Fprintf(&b, "%s%s", inline(u), end)
		}
	}

	desc, exit := splitExitStatus(blocks(h.Prose))
	b.WriteString("## DESCRIPTION\n")
	for _, bl := range desc {
		writeBlock(&b, bl)
	}

	if len(h.Flags) > 0 {
		b.WriteString("## OPTIONS\n")
		for _, f := range h.Flags {
			if f.Short != "" {
				fmt.Fprintf(&b, "**-%s**, ", f.Short)
			}
			fmt.Fprintf(&b, "**--%s**", f.Long)
			if f.Arg != "" {
				fmt.Fprintf(&b, " *%s*", inline(f.Arg))
			}
			fmt.Fprintf(&b, "\n: %s\n\n", inline(f.Usage))
		}
	}

	if len(exit) > 0 {
		b.WriteString("## EXIT STATUS\n")
		for _, bl := range exit {
			writeBlock(&b, bl)
		}
	}

	if len(see) > 0 {
		b.WriteString("## SEE ALSO\n")
		for i, s := range see {
			name, sec, _ := strings.Cut(s, "(")
			sep := ",\n"
			if i == len(see)-1 {
				sep = "\n"
			}
			fmt.Fprintf(&b, "**%s**(%s%s", name, sec, sep)
		}
	}
	return []byte(b.String())
}

// nameLine is the NAME section's description: the first sentence of the
// prose (up to ". " or ": " outside parentheses), without a leading
// program name, a lower-case first letter and no final period.
func nameLine(c *Command) string {
	var para []string
	for _, l := range c.Help.Prose {
		if l == "" && len(para) > 0 {
			break
		}
		if l != "" {
			para = append(para, strings.TrimSpace(l))
		}
	}
	s := strings.Join(para, " ")
	depth := 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case '.', ':':
			if depth == 0 && (i+1 == len(s) || s[i+1] == ' ') {
				s = s[:i]
			}
		}
		if i >= len(s) {
			break
		}
	}
	s = strings.TrimSuffix(s, ".")
	if c.Summary != "" && len(s) > 100 {
		s = c.Summary
	}
	if rest, ok := strings.CutPrefix(s, c.Path[0]+" "); ok {
		s = rest
		if strings.HasPrefix(s, "(") {
			// dolly (herd's implementation) clones ...
			if _, after, ok := strings.Cut(s, ") "); ok {
				s = after
			}
		}
	}
	if len(s) > 1 && s[0] >= 'A' && s[0] <= 'Z' && !(s[1] >= 'A' && s[1] <= 'Z') {
		s = strings.ToLower(s[:1]) + s[1:]
	}
	// Kept plain: md2man cuts the NAME line at " - " of every text piece.
	return strings.NewReplacer("*", "", "_", " ", "`", "'", "<", "", ">", "", "[", "(", "]", ")").Replace(s)
}

// block is a run of the prose: a paragraph (unindented lines), verbatim
// lines (indented), or a label ("Files:") heading verbatim lines.
type block struct {
	label    string
	para     []string
	verbatim []string
}

// blocks splits prose lines into paragraphs and verbatim runs.
func blocks(prose []string) []block {
	var out []block
	var cur block
	flush := func() {
		if cur.label != "" || len(cur.para) > 0 || len(cur.verbatim) > 0 {
			out = append(out, cur)
		}
		cur = block{}
	}
	for i, l := range prose {
		indented := strings.HasPrefix(l, " ")
		switch {
		case l == "":
			flush()
		case indented:
			if len(cur.para) > 0 {
				flush()
			}
			cur.verbatim = append(cur.verbatim, l)
		default:
			if len(cur.verbatim) > 0 {
				flush()
			}
			if label.MatchString(l) && len(cur.para) == 0 && i+1 < len(prose) && strings.HasPrefix(prose[i+1], " ") {
				cur.label = strings.TrimSuffix(l, ":")
				continue
			}
			cur.para = append(cur.para, l)
		}
	}
	flush()
	return out
}

// label is a line that names the indented lines after it: "Files:",
// "Exit status:".
var label = regexp.MustCompile(`^[A-Z][A-Za-z ]{0,30}:$`)

// splitExitStatus moves the "Exit status:" block (a label, or a
// paragraph starting with "Exit status: ") out of the description.
func splitExitStatus(bs []block) (desc, exit []block) {
	for _, b := range bs {
		switch {
		case b.label == "Exit status":
			b.label = ""
			if len(b.verbatim) > 0 {
				b.para, b.verbatim = dedent(b.verbatim), nil
			}
			exit = append(exit, b)
		case len(b.para) > 0 && strings.HasPrefix(b.para[0], "Exit status: "):
			b.para = append([]string{strings.TrimPrefix(b.para[0], "Exit status: ")}, b.para[1:]...)
			exit = append(exit, b)
		default:
			desc = append(desc, b)
		}
	}
	return desc, exit
}

func writeBlock(b *strings.Builder, bl block) {
	if bl.label != "" {
		fmt.Fprintf(b, "### %s\n", inline(bl.label))
	}
	if len(bl.para) > 0 {
		for _, l := range bl.para {
			b.WriteString(inlineLine(l))
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(bl.verbatim) > 0 {
		b.WriteString("```\n")
		for _, l := range dedent(bl.verbatim) {
			b.WriteString(l)
			b.WriteString("\n")
		}
		b.WriteString("```\n\n")
	}
}

// dedent removes the indentation the lines share.
func dedent(lines []string) []string {
	n := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if k := len(l) - len(strings.TrimLeft(l, " ")); n < 0 || k < n {
			n = k
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		if len(l) >= n && n > 0 {
			l = l[n:]
		}
		out[i] = l
	}
	return out
}

// inlineEscaper backslash-escapes what markdown would read as markup
// inside a line: emphasis, code, links, HTML, entities.
var inlineEscaper = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", `\<`, ">", `\>`, "&", `\&`, "!", `\!`, "|", `\|`,
)

func inline(s string) string { return inlineEscaper.Replace(s) }

// blockStart is how a line can open a markdown block: a heading, quote,
// list item, definition, table or horizontal rule.
var blockStart = regexp.MustCompile(`^(#|>|[-+*:=%|]|[0-9]+[.)])`)

// inlineLine escapes a paragraph line: markup inside it, and a start
// that markdown would read as a block's.
func inlineLine(l string) string {
	s := inline(strings.TrimSpace(l))
	if m := blockStart.FindStringIndex(s); m != nil {
		s = s[:m[1]-1] + `\` + s[m[1]-1:]
	}
	return s
}

// tidy drops the blank lines of roff outside example blocks (in fill
// mode they are a request in disguise) and parts an example from the
// paragraph before it.
func tidy(roff []byte) []byte {
	var out []string
	example := false
	for _, l := range strings.Split(string(roff), "\n") {
		switch {
		case l == ".EX":
			example = true
			if n := len(out); n > 0 && !strings.HasPrefix(out[n-1], ".S") {
				out = append(out, ".PP") // apart from the paragraph before
			}
		case l == ".EE":
			example = false
		case l == "" && !example:
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// escapeMinus turns the text lines' hyphens that start a word (options:
// -v, --verbose; a lone -) and every hyphen of such a word
// (--bypass-timeout) into \-, the minus sign, as groff_man(7) asks:
// rendered, they copy and paste as the ASCII hyphen-minus the command
// line wants, and no line breaks inside them. Hyphens inside other words
// (set-up) and request lines stay as they are.
func escapeMinus(roff []byte) []byte {
	lines := strings.Split(string(roff), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			continue
		}
		var b strings.Builder
		word := false   // the previous printed character is a letter or digit
		option := false // inside a word that started with a minus
		for j := 0; j < len(l); j++ {
			c := l[j]
			switch {
			case c == '\\' && j+1 < len(l):
				n := escapeLen(l[j:])
				b.WriteString(l[j : j+n])
				switch l[j+1] {
				case 'f', '&':
					// font change or nothing: printed text goes on
				default:
					word, option = false, false
				}
				j += n - 1
			case c == '-' && (!word || option):
				b.WriteString(`\-`)
				word, option = false, true
			default:
				b.WriteByte(c)
				word = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
				option = option && word
			}
		}
		lines[i] = b.String()
	}
	return []byte(strings.Join(lines, "\n"))
}

// escapeLen is the length of the roff escape sequence s starts with
// (s[0] is a backslash): \x, \fB, \f[B], \(xx, \[name], \*x.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case 'f', '*', 'n':
		if len(s) > 2 && s[2] == '[' {
			if k := strings.IndexByte(s, ']'); k > 0 {
				return k + 1
			}
		}
		if len(s) > 2 && s[2] == '(' {
			return min(len(s), 5)
		}
		return min(len(s), 3)
	case '(':
		return min(len(s), 4)
	case '[':
		if k := strings.IndexByte(s, ']'); k > 0 {
			return k + 1
		}
	}
	return 2
}
