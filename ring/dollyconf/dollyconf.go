// Package dollyconf parses the configuration files of dolly (ETH Zurich),
// openSUSE dolly (0.70 and later) and dolly+ (KEK) into a plan.Session.
//
// The three formats, told apart by the first keyword and by whether a
// "server" line comes before the client names:
//
// Classic (ETH dolly; its README fixes the order):
//
//	[compressed] infile PATH [split]
//	[compressed] outfile PATH [split SIZE]      SIZE: 2G, 512M, 100k, 1T (or "2 G")
//	segsize N | add N:SUF1[:SUF2...] | fanout N | hyphennormal   optional, any order
//	server NAME
//	firstclient NAME
//	lastclient NAME
//	clients N
//	NAME ...                                    N names, one or more per line
//	endconfig
//
// OpenSUSE (dolly 0.70 and later): infile, outfile, the optional keywords,
// then the client names and endconfig; no server, firstclient, lastclient
// or clients lines.
//
// DollyPlus: "iofiles N", then N entries "INPUT > OUTPUT" (raw) or
// "INPUT >> OUTPUT" (cooked: decoded by the input's name), then the
// classic part from the optional keywords on. dolly+ ignores firstclient
// and lastclient but requires them.
//
// The file is read as a stream of words separated by spaces, tabs and
// newlines, so the one-line renderings of these files found in manuals
// ("infile a outfile b server s firstclient ... endconfig") parse the same
// as the one-keyword-per-line originals; a keyword's value, and the three
// parts of an iofiles entry, must be on the keyword's line. '#' starts a
// comment anywhere on a line. Spaces around '>' are optional ("a>b").
//
// Choices where the originals are loose or silent:
//
//   - The keywords (infile, outfile, compressed, iofiles, segsize, add,
//     fanout, hyphennormal, server, firstclient, lastclient, clients,
//     client, endconfig) are reserved: none can be a client name.
//   - "client N" (the KEK slides), "fannout" (dolly's README example) and
//     "hypennormal", "hypenormal", "hypheninterface" are accepted with a
//     warning.
//   - firstclient and lastclient are checked against the first and last
//     names only with a warning: dolly only uses them loosely and dolly+
//     not at all. They match when equal (ignoring case and the domain) or,
//     unless hyphennormal, when the name is one of the client's interfaces
//     (cluster-1-giga for cluster-1).
//   - Text after endconfig is ignored, as dolly does, with a warning.
//   - A client listed twice is an error; so is a count that does not match
//     the names.
//   - Relative outfile paths stay relative (dolly prefixes '/'): the
//     sender or the node decides what they are relative to.
package dollyconf

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/herdproject/herd/internal/parseerr"
	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
)

// Format is the dialect a configuration file is written in.
type Format int

const (
	// Classic is ETH dolly's format: infile, outfile, server, firstclient,
	// lastclient, clients N, the names, endconfig.
	Classic Format = iota
	// OpenSUSE is openSUSE dolly's (0.70 and later): infile, outfile, the
	// names, endconfig.
	OpenSUSE
	// DollyPlus is dolly+'s: iofiles N with "in > out" / "in >> out"
	// entries, then the classic part.
	DollyPlus
)

func (f Format) String() string {
	switch f {
	case Classic:
		return "dolly"
	case OpenSUSE:
		return "openSUSE dolly"
	case DollyPlus:
		return "dolly+"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Config is a parsed configuration file.
type Config struct {
	// Plan is the session the file describes.
	Plan plan.Session
	// Format is the dialect the file is written in.
	Format Format
	// FirstClient and LastClient are as written (Classic and DollyPlus);
	// empty for OpenSUSE.
	FirstClient, LastClient string
	// Clients is the "clients N" count, equal to len(Plan.Hosts) once
	// parsed; for OpenSUSE, len(Plan.Hosts).
	Clients int
	// Warnings are non-fatal remarks, each "file:line: text".
	Warnings []string
}

// ParseError is a fatal error in a configuration file: "FILE:LINE: MSG".
type ParseError = parseerr.Error

// MaxSize is the largest configuration file Parse reads.
const MaxSize = 16 << 20

// ParseFile reads and parses the configuration file at path.
func ParseFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dolly configuration: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse parses a configuration file read from r; name is used in errors
// and warnings. Errors about the file's content are *ParseError.
func Parse(name string, r io.Reader) (*Config, error) {
	data, err := parseerr.ReadAll(name, r, MaxSize, "a dolly configuration file")
	if err != nil {
		return nil, err
	}
	p := &parser{name: name, cfg: &Config{}}
	p.toks, p.eofLine = tokenize(data)
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.cfg, nil
}

// token is one word of the file and the line it is on.
type token struct {
	text string
	line int
}

// tokenize splits data into words, dropping '#' comments; it also returns
// the number of the file's last line.
func tokenize(data []byte) ([]token, int) {
	var toks []token
	line := 0
	for len(data) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			l, data = data, nil
		}
		if i := bytes.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		for _, w := range strings.Fields(string(l)) {
			toks = append(toks, token{w, line})
		}
	}
	return toks, max(line, 1)
}

// Keywords, and the accepted misspellings that stand for them.
var keywords = map[string]string{
	"compressed": "compressed", "infile": "infile", "outfile": "outfile", "iofiles": "iofiles",
	"segsize": "segsize", "add": "add", "fanout": "fanout", "hyphennormal": "hyphennormal",
	"server": "server", "firstclient": "firstclient", "lastclient": "lastclient",
	"clients": "clients", "endconfig": "endconfig",

	"client":          "clients",
	"fannout":         "fanout",
	"hypennormal":     "hyphennormal",
	"hypenormal":      "hyphennormal",
	"hypheninterface": "hyphennormal",
}

func isKeyword(s string) bool { _, ok := keywords[s]; return ok }

// isOption reports the optional keywords that come before server (or
// before the names in the OpenSUSE format).
func isOption(s string) bool {
	switch keywords[s] {
	case "segsize", "add", "fanout", "hyphennormal":
		return true
	}
	return false
}

const optionList = "segsize, add, fanout, hyphennormal"

type parser struct {
	name    string
	toks    []token
	pos     int
	eofLine int
	cfg     *Config
	seen    map[string]int // optional keyword -> line, for duplicates
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &ParseError{File: p.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.cfg.Warnings = append(p.cfg.Warnings, fmt.Sprintf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...)))
}

func (p *parser) atEOF() bool { return p.pos >= len(p.toks) }

func (p *parser) peek() token {
	if p.atEOF() {
		return token{line: p.eofLine}
	}
	return p.toks[p.pos]
}

func (p *parser) next() token {
	t := p.peek()
	if !p.atEOF() {
		p.pos++
	}
	return t
}

// describe names a token for a message: the quoted word, or "end of file".
func (p *parser) describe(t token) string {
	if t.text == "" {
		return "end of file"
	}
	return strconv.Quote(t.text)
}

// value returns the word after keyword kw on kw's line; what says what the
// value is, for the error.
func (p *parser) value(kw token, what string) (token, error) {
	if p.atEOF() || p.peek().line != kw.line {
		return token{}, p.errorf(kw.line, "%s needs %s on its line: %s", kw.text, what, usage[keywords[kw.text]])
	}
	return p.next(), nil
}

var usage = map[string]string{
	"infile":      "'[compressed] infile PATH [split]'",
	"outfile":     "'[compressed] outfile PATH [split SIZE]'",
	"iofiles":     "'iofiles N' followed by N lines 'INPUT > OUTPUT' or 'INPUT >> OUTPUT'",
	"segsize":     "'segsize N' (TCP segment size in bytes)",
	"add":         "'add N:SUFFIX1:...:SUFFIXN', e.g. 'add 1:-fast'",
	"fanout":      "'fanout N' (1 is a chain)",
	"server":      "'server NAME'",
	"firstclient": "'firstclient NAME'",
	"lastclient":  "'lastclient NAME'",
	"clients":     "'clients N' followed by the N client names",
}

// number parses a keyword's decimal value in [lo, hi].
func (p *parser) number(kw, v token, lo, hi int) (int, error) {
	if !isDigits(v.text) {
		return 0, p.errorf(v.line, "%s: %q is not a number: %s", kw.text, v.text, usage[keywords[kw.text]])
	}
	n, err := strconv.Atoi(v.text)
	if err != nil || n < lo || n > hi {
		return 0, p.errorf(v.line, "%s %s: must be between %d and %d", kw.text, v.text, lo, hi)
	}
	return n, nil
}

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

func (p *parser) parse() error {
	first := p.peek()
	switch {
	case p.atEOF():
		return p.errorf(1, "empty configuration: expected infile, compressed infile or iofiles")
	case first.text == "iofiles":
		p.cfg.Format = DollyPlus
		if err := p.parseIOFiles(); err != nil {
			return err
		}
	case first.text == "infile" || first.text == "compressed":
		if err := p.parseInOut(); err != nil {
			return err
		}
		p.cfg.Format = OpenSUSE
		if p.classicAhead() {
			p.cfg.Format = Classic
		}
	default:
		return p.errorf(first.line, "expected infile, compressed infile or iofiles at the start, got %s", p.describe(first))
	}
	if err := p.parseOptions(); err != nil {
		return err
	}
	var err error
	if p.cfg.Format == OpenSUSE {
		err = p.parseOpenSUSENames()
	} else {
		err = p.parseClassicTail()
	}
	if err != nil {
		return err
	}
	if !p.atEOF() {
		t := p.peek()
		p.warnf(t.line, "text after endconfig ignored (starting with %q)", t.text)
	}
	if err := p.cfg.Plan.Validate(); err != nil { // cannot happen: the parser checks more
		return p.errorf(p.eofLine, "%v", err)
	}
	return nil
}

// classicAhead reports whether a server, firstclient, lastclient or
// clients keyword comes before endconfig: the classic format rather than
// openSUSE's.
//
// Only such a keyword with its value on its line counts: alone on its
// line it is a host of openSUSE's list that is called so.
func (p *parser) classicAhead() bool {
	toks := p.toks[p.pos:]
	for i, t := range toks {
		switch keywords[t.text] {
		case "endconfig":
			return false
		case "server", "firstclient", "lastclient", "clients":
			if i+1 < len(toks) && toks[i+1].line == t.line {
				return true
			}
		}
	}
	return false
}

// parseInOut parses the classic "[compressed] infile PATH [split]" and
// "[compressed] outfile PATH [split SIZE]".
func (p *parser) parseInOut() error {
	var f plan.File
	in, compressed, err := p.fileKeyword("infile", "")
	if err != nil {
		return err
	}
	path, err := p.value(in, "a path")
	if err != nil {
		return err
	}
	f.Input, f.CompressedIn = path.text, compressed
	if !p.atEOF() && p.peek().line == in.line && p.peek().text == "split" {
		p.next()
		f.SplitIn = true
	}
	if compressed && !strings.HasSuffix(f.Input, ".gz") {
		p.warnf(in.line, "compressed infile %s does not end in .gz: is it gzip-compressed? (nodes will gunzip it)", f.Input)
	}

	out, compressed, err := p.fileKeyword("outfile", "after infile (line "+strconv.Itoa(in.line)+")")
	if err != nil {
		return err
	}
	path, err = p.value(out, "a path")
	if err != nil {
		return err
	}
	f.Output, f.CompressedOut = path.text, compressed
	if !p.atEOF() && p.peek().line == out.line && p.peek().text == "split" {
		split := p.next()
		size, err := p.splitSize(split)
		if err != nil {
			return err
		}
		f.SplitOut = size
	}
	p.cfg.Plan.Files = append(p.cfg.Plan.Files, f)
	return nil
}

// fileKeyword reads "[compressed] KW" and returns the KW token.
func (p *parser) fileKeyword(kw, after string) (token, bool, error) {
	t := p.next()
	compressed := false
	if t.text == "compressed" {
		compressed = true
		c := t
		t = p.next()
		if t.text != kw {
			return t, false, p.errorf(t.line, "expected %s after compressed (line %d), got %s", kw, c.line, p.describe(t))
		}
	}
	if t.text != kw {
		if after != "" {
			after = " " + after
		}
		return t, false, p.errorf(t.line, "expected %s%s, got %s: %s", kw, after, p.describe(t), usage[kw])
	}
	return t, compressed, nil
}

// splitSize parses the SIZE of "outfile PATH split SIZE": digits and a
// multiplier k, M, G or T (powers of 1024), joined or as the next word.
func (p *parser) splitSize(split token) (int64, error) {
	if p.atEOF() || p.peek().line != split.line {
		return 0, p.errorf(split.line, "outfile split needs a size such as 2G (k, M, G or T)")
	}
	v := p.next()
	text := v.text
	digits := strings.TrimRight(text, "kKMGT")
	unit := text[len(digits):]
	if unit == "" && !p.atEOF() && p.peek().line == v.line && len(p.peek().text) == 1 && strings.Contains("kKMGT", p.peek().text) {
		unit = p.next().text
	}
	if !isDigits(digits) || len(unit) > 1 {
		return 0, p.errorf(v.line, "split size %q: expected a number and k, M, G or T, e.g. split 2G", v.text)
	}
	if unit == "" {
		return 0, p.errorf(v.line, "split size %s has no multiplier: write %sk, %sM, %sG or %sT", digits, digits, digits, digits, digits)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	shift := map[string]uint{"k": 10, "K": 10, "M": 20, "G": 30, "T": 40}[unit]
	if err != nil || n > (1<<62)>>shift {
		return 0, p.errorf(v.line, "split size %s%s is too large", digits, unit)
	}
	if n == 0 {
		return 0, p.errorf(v.line, "split size 0: must be at least 1%s", unit)
	}
	return n << shift, nil
}

// parseIOFiles parses dolly+'s "iofiles N" and its N entries.
func (p *parser) parseIOFiles() error {
	kw := p.next()
	v, err := p.value(kw, "a count")
	if err != nil {
		return err
	}
	n, err := p.number(kw, v, 1, 1<<20)
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		f, err := p.ioEntry(kw, n, i)
		if err != nil {
			return err
		}
		p.cfg.Plan.Files = append(p.cfg.Plan.Files, f)
	}
	// More entries than announced?
	if !p.atEOF() && !isKeyword(p.peek().text) {
		if pcs := p.linePieces(3); isEntry(pcs) {
			return p.errorf(kw.line, "iofiles %d, but more entries follow: %q on line %d: make the count match the entries",
				n, joinPieces(pcs), p.peek().line)
		}
	}
	return nil
}

// piece is part of a word of an iofiles line: text, or an operator made of
// '>'.
type piece struct {
	text string
	op   bool
	tok  int // index of the word in p.toks
}

// linePieces splits the words from p.pos to the end of their line at the
// '>' operators, stopping after max pieces (an entry needs a few, and a
// long one-line file must not make every entry rescan the line).
func (p *parser) linePieces(max int) []piece {
	var pcs []piece
	line := p.peek().line
	for i := p.pos; i < len(p.toks) && p.toks[i].line == line && len(pcs) < max; i++ {
		s := p.toks[i].text
		for s != "" && len(pcs) < max {
			j := strings.IndexByte(s, '>')
			switch {
			case j < 0:
				pcs = append(pcs, piece{s, false, i})
				s = ""
			case j > 0:
				pcs = append(pcs, piece{s[:j], false, i})
				s = s[j:]
			default:
				k := len(s) - len(strings.TrimLeft(s, ">"))
				pcs = append(pcs, piece{s[:k], true, i})
				s = s[k:]
			}
		}
	}
	return pcs
}

// isEntry reports whether pcs start like an iofiles entry: a word then an
// operator.
func isEntry(pcs []piece) bool { return len(pcs) >= 2 && !pcs[0].op && pcs[1].op }

func joinPieces(pcs []piece) string {
	var b strings.Builder
	for i, pc := range pcs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pc.text)
	}
	return b.String()
}

const entryUsage = "write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)"

// ioEntry parses entry i of n: INPUT, '>' or '>>', OUTPUT, on one line.
func (p *parser) ioEntry(kw token, n, i int) (plan.File, error) {
	if p.atEOF() {
		return plan.File{}, p.errorf(kw.line, "iofiles %d, but the file ends after %d entries", n, i-1)
	}
	t := p.peek()
	pcs := p.linePieces(6) // INPUT > OUTPUT, then a look at what follows
	if isKeyword(t.text) && (len(pcs) < 2 || !pcs[1].op) {
		return plan.File{}, p.errorf(kw.line, "iofiles %d, but only %d entries before %s on line %d: make the count match the entries",
			n, i-1, t.text, t.line)
	}
	if pcs[0].op {
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: no input before %q: %s", i, pcs[0].text, entryUsage)
	}
	in := pcs[0].text
	if len(pcs) < 2 || !pcs[1].op {
		got := "the end of the line"
		if len(pcs) >= 2 {
			got = strconv.Quote(pcs[1].text)
		}
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: expected '>' or '>>' after %q, got %s: %s", i, in, got, entryUsage)
	}
	op := pcs[1].text
	var mode plan.Mode
	switch op {
	case ">":
		mode = plan.Raw
	case ">>":
		mode = plan.Cooked
	default:
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: %q is neither '>' (raw) nor '>>' (cooked)", i, op)
	}
	if len(pcs) < 3 || pcs[2].op {
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: no output after %q: %s", i, in+" "+op, entryUsage)
	}
	out := pcs[2]
	if len(pcs) > 3 && pcs[3].tok == out.tok {
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: too many fields: %q after %q: one entry is INPUT > OUTPUT", i, joinPieces(pcs[3:min(5, len(pcs))]), in+" "+op+" "+out.text)
	}
	p.pos = out.tok + 1
	// The rest of the line must be further entries (one-line renderings)
	// or the classic part.
	if rest := pcs[3:]; len(rest) > 0 && !isEntry(rest) && !isKeyword(rest[0].text) {
		return plan.File{}, p.errorf(t.line, "iofiles entry %d: too many fields: %q after %q: one entry is INPUT > OUTPUT", i, joinPieces(rest), in+" "+op+" "+out.text)
	}
	return plan.File{Input: in, Output: out.text, Mode: mode}, nil
}

// parseOptions parses the optional keywords, in any order.
func (p *parser) parseOptions() error {
	if p.seen == nil {
		p.seen = map[string]int{}
	}
	for !p.atEOF() && isOption(p.peek().text) {
		kw := p.next()
		canon := keywords[kw.text]
		if l, ok := p.seen[canon]; ok {
			return p.errorf(kw.line, "%s given twice (first on line %d)", canon, l)
		}
		p.seen[canon] = kw.line
		if kw.text != canon {
			p.warnf(kw.line, "%q read as %s", kw.text, canon)
		}
		switch canon {
		case "segsize":
			v, err := p.value(kw, "a number")
			if err != nil {
				return err
			}
			if p.cfg.Plan.SegSize, err = p.number(kw, v, 1, 65535); err != nil {
				return err
			}
		case "fanout":
			v, err := p.value(kw, "a number")
			if err != nil {
				return err
			}
			if p.cfg.Plan.Fanout, err = p.number(kw, v, 1, 1<<16); err != nil {
				return err
			}
		case "hyphennormal":
			p.cfg.Plan.HyphenNormal = true
		case "add":
			v, err := p.value(kw, "interface suffixes")
			if err != nil {
				return err
			}
			if p.cfg.Plan.Add, err = p.parseAdd(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseAdd parses the value of "add N:SUF1:...:SUFN".
func (p *parser) parseAdd(v token) ([]string, error) {
	parts := strings.Split(v.text, ":")
	n, err := strconv.Atoi(parts[0])
	if err != nil || !isDigits(parts[0]) || n < 1 {
		return nil, p.errorf(v.line, "add %s: expected the number of extra interfaces first: %s", v.text, usage["add"])
	}
	sufs := parts[1:]
	if len(sufs) != n {
		return nil, p.errorf(v.line, "add %s: %d interfaces announced but %d suffixes given: %s", v.text, n, len(sufs), usage["add"])
	}
	for _, s := range sufs {
		if s == "" {
			return nil, p.errorf(v.line, "add %s: empty interface suffix: %s", v.text, usage["add"])
		}
	}
	return sufs, nil
}

// expect reads keyword kw of the classic part; prev names what came before
// it, for the message.
func (p *parser) expect(kw, prev string) (token, error) {
	t := p.next()
	canon := keywords[t.text]
	switch {
	case canon == kw:
		if t.text != kw {
			p.warnf(t.line, "%q read as %s", t.text, kw)
		}
		return t, nil
	case p.atEOF() && t.text == "":
		return t, p.errorf(t.line, "expected %s after %s, got end of file", kw, prev)
	case isOption(t.text):
		return t, p.errorf(t.line, "%s out of order: the optional keywords (%s) go before server", t.text, optionList)
	case canon != "":
		return t, p.errorf(t.line, "%s out of order: expected %s after %s (the order is server, firstclient, lastclient, clients, the names, endconfig)", t.text, kw, prev)
	case kw == "server":
		return t, p.errorf(t.line, "unknown keyword %q: expected server (or before it %s)", t.text, optionList)
	default:
		return t, p.errorf(t.line, "unknown keyword %q: expected %s after %s", t.text, kw, prev)
	}
}

// hostValue reads the host name after kw.
func (p *parser) hostValue(kw token) (string, error) {
	v, err := p.value(kw, "a host name")
	if err != nil {
		return "", err
	}
	// By position, as dolly reads it: 'server server' names a host
	// called server.
	if err := hostlist.CheckName(v.text); err != nil {
		return "", p.errorf(v.line, "%s: %v", kw.text, err)
	}
	return v.text, nil
}

// parseClassicTail parses server, firstclient, lastclient, clients N, the
// names and endconfig.
func (p *parser) parseClassicTail() error {
	prev := "outfile"
	if p.cfg.Format == DollyPlus {
		prev = "the iofiles entries"
	}
	if len(p.seen) > 0 {
		prev = "the optional keywords"
	}
	kw, err := p.expect("server", prev)
	if err != nil {
		return err
	}
	if p.cfg.Plan.Server, err = p.hostValue(kw); err != nil {
		return err
	}
	if kw, err = p.expect("firstclient", "server"); err != nil {
		return err
	}
	first := kw
	if p.cfg.FirstClient, err = p.hostValue(kw); err != nil {
		return err
	}
	if kw, err = p.expect("lastclient", "firstclient"); err != nil {
		return err
	}
	last := kw
	if p.cfg.LastClient, err = p.hostValue(kw); err != nil {
		return err
	}
	if kw, err = p.expect("clients", "lastclient"); err != nil {
		return err
	}
	v, err := p.value(kw, "a count")
	if err != nil {
		return err
	}
	if p.cfg.Clients, err = p.number(kw, v, 1, 1<<20); err != nil {
		return err
	}
	if err := p.parseNames(kw); err != nil {
		return err
	}
	hosts := p.cfg.Plan.Hosts
	hn := p.cfg.Plan.HyphenNormal
	if !sameClient(p.cfg.FirstClient, hosts[0], hn) {
		p.warnf(first.line, "firstclient %s is not the first client name %s", p.cfg.FirstClient, hosts[0])
	}
	if !sameClient(p.cfg.LastClient, hosts[len(hosts)-1], hn) {
		p.warnf(last.line, "lastclient %s is not the last client name %s", p.cfg.LastClient, hosts[len(hosts)-1])
	}
	return nil
}

// parseNames reads client names up to endconfig. count is the clients
// keyword, or the zero token for the OpenSUSE format.
func (p *parser) parseNames(count token) error {
	want := p.cfg.Clients
	classic := count.text != ""
	lines := map[string]int{} // lowercased name -> line
	index := map[string]int{} // lowercased name -> 1-based position
	var prevLine int
	for {
		if p.atEOF() {
			n := len(p.cfg.Plan.Hosts)
			if classic && n != want {
				return p.errorf(count.line, "clients %d, but %d names follow and the file ends without endconfig%s",
					want, n, p.endconfigHint())
			}
			if n == 0 {
				return p.errorf(p.eofLine, "expected the client names then endconfig, got end of file")
			}
			return p.errorf(p.eofLine, "expected endconfig after the %d client names, got end of file%s", n, p.endconfigHint())
		}
		t := p.next()
		asName := isKeyword(t.text) && p.nameAt(p.pos-1, classic, want)
		if t.text == "endconfig" && !asName {
			n := len(p.cfg.Plan.Hosts)
			if classic && n != want {
				return p.errorf(count.line, "clients %d, but %d names are listed before endconfig (line %d): make the count match the names",
					want, n, t.line)
			}
			if n == 0 {
				return p.errorf(t.line, "no client names before endconfig")
			}
			if !classic {
				p.cfg.Clients = n
			}
			return nil
		}
		if asName {
			// A host called like a keyword, in a name's place.
		} else if isKeyword(t.text) {
			if classic {
				return p.errorf(t.line, "keyword %s among the client names: clients %d expects %d names then endconfig", t.text, want, want)
			}
			if isOption(t.text) {
				return p.errorf(t.line, "%s after the client names: the optional keywords (%s) go before the names", t.text, optionList)
			}
			return p.errorf(t.line, "keyword %s among the client names: the names end with endconfig", t.text)
		}
		if err := hostlist.CheckName(t.text); err != nil {
			hint := ""
			if isDigits(t.text) && prevLine == t.line && len(p.cfg.Plan.Hosts) > 0 {
				hint = fmt.Sprintf(" (is %q a misspelt keyword?)", p.cfg.Plan.Hosts[len(p.cfg.Plan.Hosts)-1])
			}
			return p.errorf(t.line, "client name: %v%s", err, hint)
		}
		k := strings.ToLower(t.text)
		if l, ok := lines[k]; ok {
			return p.errorf(t.line, "client %s listed twice: names %d (line %d) and %d (line %d)",
				t.text, index[k], l, len(p.cfg.Plan.Hosts)+1, t.line)
		}
		p.cfg.Plan.Hosts = append(p.cfg.Plan.Hosts, t.text)
		lines[k], index[k] = t.line, len(p.cfg.Plan.Hosts)
		prevLine = t.line
	}
}

// nameAt tells whether keyword t stands where a client name does, as dolly
// reads the file by position: with a count (classic), while names are
// still due -- endconfig too, when another endconfig follows; without one
// (openSUSE), a keyword other than endconfig alone on its line.
func (p *parser) nameAt(i int, classic bool, want int) bool {
	t := p.toks[i]
	if classic {
		if len(p.cfg.Plan.Hosts) >= want {
			return false
		}
		if t.text != "endconfig" {
			return true
		}
		for _, u := range p.toks[i+1:] {
			if u.text == "endconfig" {
				return true
			}
		}
		return false
	}
	alone := (i == 0 || p.toks[i-1].line != t.line) && (i+1 >= len(p.toks) || p.toks[i+1].line != t.line)
	return t.text != "endconfig" && alone
}

// endconfigHint points at a name that looks like a mangled endconfig.
func (p *parser) endconfigHint() string {
	for i, h := range p.cfg.Plan.Hosts {
		if strings.HasPrefix(strings.ToLower(h), "endconf") {
			return fmt.Sprintf(" (name %d, %q, is not endconfig)", i+1, h)
		}
	}
	return ""
}

// parseOpenSUSENames reads openSUSE's client names and endconfig.
func (p *parser) parseOpenSUSENames() error {
	if !p.atEOF() {
		t := p.peek()
		if isKeyword(t.text) && t.text != "endconfig" && !p.nameAt(p.pos, false, 0) {
			return p.errorf(t.line, "%s out of order: expected the optional keywords (%s) or the client names", t.text, optionList)
		}
	}
	return p.parseNames(token{})
}

// sameClient reports whether the firstclient or lastclient value c
// designates the client listed as name: the same name (ignoring case and
// the domain) or, unless hyphenNormal, name is one of c's interfaces
// (cluster-1-giga for cluster-1).
func sameClient(c, name string, hyphenNormal bool) bool {
	c, name = short(c), short(name)
	return c == name || !hyphenNormal && strings.HasPrefix(name, c+"-")
}

// short lowercases a host name and drops its domain; addresses stay whole.
func short(s string) string {
	s = strings.ToLower(s)
	if _, err := netip.ParseAddr(s); err == nil {
		return s
	}
	h, _, _ := strings.Cut(s, ".")
	return h
}
