package dollyconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herdproject/herd/ring/plan"
)

// names returns prefix+i for i in [from, to], formatted with format.
func names(format string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf(format, i))
	}
	return out
}

var homepageFiles = []plan.File{
	{Input: "/dev/hda1", Output: "/tmp/dev/hda1", Mode: plan.Raw},
	{Input: "/data/file.gz", Output: "/data/file", Mode: plan.Cooked},
	{Input: "boot.tar.Z", Output: "/boot", Mode: plan.Cooked},
}

// TestParseReference parses every configuration printed in the reference
// documents (see testdata/SOURCES.md).
func TestParseReference(t *testing.T) {
	tests := []struct {
		file string
		want *Config
	}{
		{
			file: "dolly-readme.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  []plan.File{{Input: "/dev/sda5", Output: "/dev/sda5"}},
					Hosts:  names("node%d", 1, 15),
					Server: "node0",
				},
				Format: Classic, FirstClient: "node1", LastClient: "node15", Clients: 15,
			},
		},
		{
			file: "readme-options.cfg",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{
						Input: "/images/cloneimages/sda.gz", Output: "/images/cloneimages/sda_all.gz",
						CompressedIn: true, CompressedOut: true, SplitIn: true, SplitOut: 2 << 30,
					}},
					Hosts:   names("cluster-%d-giga", 1, 9),
					Server:  "cluster-master",
					Fanout:  1,
					SegSize: 128,
					Add:     []string{"-fast"},
				},
				Format: Classic, FirstClient: "cluster-1", LastClient: "cluster-9", Clients: 9,
			},
		},
		{
			file: "dollyplus-classic.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  []plan.File{{Input: "/dev/sda102", Output: "/dev/sda103"}},
					Hosts:  names("node%02d", 1, 9),
					Server: "cluster-master",
				},
				Format: Classic, FirstClient: "node01", LastClient: "node09", Clients: 9,
			},
		},
		{
			file: "dollyplus-iofiles.cfg",
			want: &Config{
				Plan:   plan.Session{Files: homepageFiles, Hosts: names("node%02d", 1, 9), Server: "cluster-master"},
				Format: DollyPlus, FirstClient: "node01", LastClient: "node09", Clients: 9,
			},
		},
		{
			file: "dollyplus-iofiles-commented.cfg",
			want: &Config{
				Plan:   plan.Session{Files: homepageFiles, Hosts: names("node%02d", 1, 9), Server: "cluster-master"},
				Format: DollyPlus, FirstClient: "node01", LastClient: "node09", Clients: 9,
			},
		},
		{
			file: "mandriva-stage2.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  []plan.File{{Input: "stage2.img", Output: "/dev/ram3"}},
					Hosts:  []string{"12.12.12.1", "12.12.12.2", "12.12.12.3"},
					Server: "servernode",
				},
				Format: Classic, FirstClient: "12.12.12.1", LastClient: "12.12.12.3", Clients: 3,
			},
		},
		{
			file: "mandriva-dolly.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  []plan.File{{Input: "/dev/sda", Output: "/dev/sda"}},
					Hosts:  []string{"node2", "node3", "node4", "node5"},
					Server: "node1",
				},
				Format: Classic, FirstClient: "node2", LastClient: "node5", Clients: 4,
			},
		},
		{
			file: "mandriva-dollyplus.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  homepageFiles,
					Hosts:  []string{"max6.paris", "max7.paris", "max8.paris"},
					Server: "max5.paris",
				},
				Format: DollyPlus, FirstClient: "max6.paris", LastClient: "max8.paris", Clients: 3,
			},
		},
		{
			file: "suse-dolly.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:  []plan.File{{Input: "/tmp/sle15.sif", Output: "/data/sle15.sif"}},
					Hosts:  []string{"sle152", "sle153", "sle154"},
					Server: "sle151",
				},
				Format: Classic, FirstClient: "sle152", LastClient: "sle154", Clients: 3,
			},
		},
		{
			file: "kek-slides.cfg",
			want: &Config{
				Plan:   plan.Session{Files: homepageFiles, Hosts: names("n%03d", 1, 20), Server: "n000.kek.jp"},
				Format: DollyPlus, FirstClient: "n001.kek.jp", LastClient: "n020.kek.jp", Clients: 20,
				Warnings: []string{`testdata/kek-slides.cfg:8: "client" read as clients`},
			},
		},
		{
			file: "opensuse.cfg",
			want: &Config{
				Plan: plan.Session{
					Files:        []plan.File{{Input: "/tmp/foo", Output: "/tmp/foo"}},
					Hosts:        []string{"compute-01", "compute-02"},
					HyphenNormal: true,
				},
				Format: OpenSUSE, Clients: 2,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseReferenceErrors: the SUSE guide's /etc/dolly.cfg as printed
// says "clients 36" (the count 3 with its callout number 6 glued on) for
// three names.
func TestParseReferenceErrors(t *testing.T) {
	tests := []struct{ file, want string }{
		{
			"suse-dolly-as-printed.cfg",
			`testdata/suse-dolly-as-printed.cfg:6: clients 36, but 4 names follow and the file ends without endconfig (name 4, "endconfig8", is not endconfig)`,
		},
		{
			"suse-dolly-clients36.cfg",
			"testdata/suse-dolly-clients36.cfg:6: clients 36, but 3 names are listed before endconfig (line 10): make the count match the names",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseFile(filepath.Join("testdata", tt.file))
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	chain := func(hosts ...string) plan.Session {
		return plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: hosts, Server: "s"}
	}
	tests := []struct {
		name string
		in   string
		want *Config
	}{
		{
			name: "several names per line, tabs, CRLF, comments",
			in:   "infile a # the image\r\noutfile b\r\n\r\n  server\ts\nfirstclient n1\nlastclient n3 # last\nclients 3\nn1\tn2 # two\n n3\nendconfig\n",
			want: &Config{Plan: chain("n1", "n2", "n3"), FirstClient: "n1", LastClient: "n3", Clients: 3},
		},
		{
			// dolly reads the file by position: hosts may be called
			// like the keywords.
			name: "hosts called like keywords",
			in:   "infile a\noutfile b\nserver server\nfirstclient clients\nlastclient endconfig\nclients 3\nclients\nfirstclient\nendconfig\nendconfig\n",
			want: &Config{Plan: plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"clients", "firstclient", "endconfig"}, Server: "server"},
				FirstClient: "clients", LastClient: "endconfig", Clients: 3},
		},
		{
			name: "openSUSE format, hosts called like keywords",
			in:   "infile a\noutfile b\nserver\nclients\nlastclient\nendconfig\n",
			want: &Config{Format: OpenSUSE, Plan: plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"server", "clients", "lastclient"}}, Clients: 3},
		},
		{
			name: "comment-only lines and no final newline",
			in:   "#!dolly\n# header\ninfile a\noutfile b\nserver s\nfirstclient n1\nlastclient n1\nclients 1\nn1\nendconfig",
			want: &Config{Plan: chain("n1"), FirstClient: "n1", LastClient: "n1", Clients: 1},
		},
		{
			name: "options in any order",
			in:   "infile a\noutfile b\nhyphennormal\nfanout 2\nadd 2:-fast:-giga\nsegsize 1460\nserver s\nfirstclient n-1\nlastclient n-2\nclients 2\nn-1 n-2\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"n-1", "n-2"}, Server: "s",
					Fanout: 2, SegSize: 1460, Add: []string{"-fast", "-giga"}, HyphenNormal: true,
				},
				FirstClient: "n-1", LastClient: "n-2", Clients: 2,
			},
		},
		{
			name: "split sizes",
			in:   "infile a split\noutfile b split 3 M\nserver s\nfirstclient n1\nlastclient n1\nclients 1\nn1\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{Input: "a", Output: "b", SplitIn: true, SplitOut: 3 << 20}},
					Hosts: []string{"n1"}, Server: "s",
				},
				FirstClient: "n1", LastClient: "n1", Clients: 1,
			},
		},
		{
			name: "split in k and T",
			in:   "infile a\ncompressed outfile b.gz split 1T\nopensuse-1\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{Input: "a", Output: "b.gz", CompressedOut: true, SplitOut: 1 << 40}},
					Hosts: []string{"opensuse-1"},
				},
				Format: OpenSUSE, Clients: 1,
			},
		},
		{
			name: "compressed infile without .gz warns",
			in:   "compressed infile /img/sda\noutfile /dev/sda\nn1\nendconfig\n",
			want: &Config{
				Plan:   plan.Session{Files: []plan.File{{Input: "/img/sda", Output: "/dev/sda", CompressedIn: true}}, Hosts: []string{"n1"}},
				Format: OpenSUSE, Clients: 1,
				Warnings: []string{"t.cfg:1: compressed infile /img/sda does not end in .gz: is it gzip-compressed? (nodes will gunzip it)"},
			},
		},
		{
			name: "firstclient and lastclient mismatches warn",
			in:   "infile a\noutfile b\nserver s\nfirstclient n2\nlastclient n1\nclients 2\nn1 n2\nendconfig\n",
			want: &Config{
				Plan: chain("n1", "n2"), FirstClient: "n2", LastClient: "n1", Clients: 2,
				Warnings: []string{
					"t.cfg:4: firstclient n2 is not the first client name n1",
					"t.cfg:5: lastclient n1 is not the last client name n2",
				},
			},
		},
		{
			name: "firstclient by short name, lastclient by interface name",
			in:   "infile a\noutfile b\nserver s\nfirstclient N1.cluster\nlastclient n2\nclients 2\nn1 n2-giga\nendconfig\n",
			want: &Config{Plan: chain("n1", "n2-giga"), FirstClient: "N1.cluster", LastClient: "n2", Clients: 2},
		},
		{
			name: "hyphennormal: an interface suffix is no longer one",
			in:   "infile a\noutfile b\nhyphennormal\nserver s\nfirstclient n1\nlastclient n2\nclients 2\nn1 n2-giga\nendconfig\n",
			want: &Config{
				Plan:        plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"n1", "n2-giga"}, Server: "s", HyphenNormal: true},
				FirstClient: "n1", LastClient: "n2", Clients: 2,
				Warnings: []string{"t.cfg:6: lastclient n2 is not the last client name n2-giga"},
			},
		},
		{
			name: "misspellings from the manuals",
			in:   "infile a\noutfile b\nfannout 1\nhypennormal\nserver s\nfirstclient n1\nlastclient n1\nclient 1\nn1\nendconfig\n",
			want: &Config{
				Plan:        plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"n1"}, Server: "s", Fanout: 1, HyphenNormal: true},
				FirstClient: "n1", LastClient: "n1", Clients: 1,
				Warnings: []string{
					`t.cfg:3: "fannout" read as fanout`,
					`t.cfg:4: "hypennormal" read as hyphennormal`,
					`t.cfg:8: "client" read as clients`,
				},
			},
		},
		{
			name: "text after endconfig",
			in:   "infile a\noutfile b\nn1\nendconfig\n# fine\n\nleftover words\n",
			want: &Config{
				Plan:     plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"n1"}},
				Format:   OpenSUSE,
				Clients:  1,
				Warnings: []string{`t.cfg:7: text after endconfig ignored (starting with "leftover")`},
			},
		},
		{
			name: "iofiles without spaces, one line per entry",
			in:   "iofiles 4\na>b\nc >>d\ne> f\ng>>h.gz\nserver s\nfirstclient n1\nlastclient n1\nclients 1\nn1\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{
						{Input: "a", Output: "b", Mode: plan.Raw},
						{Input: "c", Output: "d", Mode: plan.Cooked},
						{Input: "e", Output: "f", Mode: plan.Raw},
						{Input: "g", Output: "h.gz", Mode: plan.Cooked},
					},
					Hosts: []string{"n1"}, Server: "s",
				},
				Format: DollyPlus, FirstClient: "n1", LastClient: "n1", Clients: 1,
			},
		},
		{
			name: "iofiles with options before server",
			in:   "iofiles 1\na > b\nfanout 2\nserver s\nfirstclient n1\nlastclient n2\nclients 2\nn1 n2\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{Input: "a", Output: "b"}},
					Hosts: []string{"n1", "n2"}, Server: "s", Fanout: 2,
				},
				Format: DollyPlus, FirstClient: "n1", LastClient: "n2", Clients: 2,
			},
		},
		{
			name: "an input named like a keyword",
			in:   "iofiles 1\nserver > /srv\nserver s\nfirstclient n1\nlastclient n1\nclients 1\nn1\nendconfig\n",
			want: &Config{
				Plan: plan.Session{
					Files: []plan.File{{Input: "server", Output: "/srv"}},
					Hosts: []string{"n1"}, Server: "s",
				},
				Format: DollyPlus, FirstClient: "n1", LastClient: "n1", Clients: 1,
			},
		},
		{
			name: "addresses as names",
			in:   "infile a\noutfile b\n127.0.0.2\n127.0.0.3 ::1\nendconfig\n",
			want: &Config{
				Plan:   plan.Session{Files: []plan.File{{Input: "a", Output: "b"}}, Hosts: []string{"127.0.0.2", "127.0.0.3", "::1"}},
				Format: OpenSUSE, Clients: 3,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.cfg", strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const tail = "server s\nfirstclient n1\nlastclient n3\nclients 3\nn1\nn2\nn3\nendconfig\n"
	tests := []struct {
		name string
		in   string
		want string // the whole error
	}{
		// Missing endconfig.
		{"missing endconfig", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n3\nclients 3\nn1\nn2\nn3\n",
			"t.cfg:9: expected endconfig after the 3 client names, got end of file"},
		{"missing endconfig, opensuse", "infile a\noutfile b\nn1\nn2\n\n",
			"t.cfg:5: expected endconfig after the 2 client names, got end of file"},
		{"no names at all", "infile a\noutfile b\n",
			"t.cfg:2: expected the client names then endconfig, got end of file"},
		{"no names before endconfig", "infile a\noutfile b\nendconfig\n",
			"t.cfg:3: no client names before endconfig"},

		// Counts.
		{"too few names", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n2\nclients 3\nn1\nn2\nendconfig\n",
			"t.cfg:6: clients 3, but 2 names are listed before endconfig (line 9): make the count match the names"},
		{"too many names", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n4\nclients 3\nn1\nn2\nn3\nn4\nendconfig\n",
			"t.cfg:6: clients 3, but 4 names are listed before endconfig (line 11): make the count match the names"},
		{"count and no endconfig", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n2\nclients 3\nn1 n2\n",
			"t.cfg:6: clients 3, but 2 names follow and the file ends without endconfig"},
		{"clients 0", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n2\nclients 0\nendconfig\n",
			"t.cfg:6: clients 0: must be between 1 and 1048576"},
		{"iofiles count too high", "iofiles 3\na > b\nc >> d\n" + tail,
			"t.cfg:1: iofiles 3, but only 2 entries before server on line 4: make the count match the entries"},
		{"iofiles count too low", "iofiles 1\na > b\nc >> d\n" + tail,
			`t.cfg:1: iofiles 1, but more entries follow: "c >> d" on line 3: make the count match the entries`},
		{"iofiles count too low, one line", "iofiles 1 a > b c >> d server s firstclient n1 lastclient n1 clients 1 n1 endconfig",
			`t.cfg:1: iofiles 1, but more entries follow: "c >> d" on line 1: make the count match the entries`},
		{"iofiles ends early", "iofiles 2\na > b\n",
			"t.cfg:1: iofiles 2, but the file ends after 1 entries"},

		// Unknown keywords and order.
		{"unknown first keyword", "# x\nfile a\n", `t.cfg:2: expected infile, compressed infile or iofiles at the start, got "file"`},
		{"empty file", "# nothing\n\n", "t.cfg:1: empty configuration: expected infile, compressed infile or iofiles"},
		{"unknown keyword before server", "infile a\noutfile b\nsegsiz 128\n" + tail,
			`t.cfg:3: unknown keyword "segsiz": expected server (or before it segsize, add, fanout, hyphennormal)`},
		{"unknown keyword after server", "infile a\noutfile b\nserver s\nfirstclent n1\nlastclient n3\nclients 3\nn1 n2 n3\nendconfig\n",
			`t.cfg:4: unknown keyword "firstclent": expected firstclient after server`},
		{"unknown keyword, opensuse", "infile a\noutfile b\nsegsiz 128\nn1\nendconfig\n",
			`t.cfg:3: client name: "128" is a number, not a host name (is "segsiz" a misspelt keyword?)`},
		{"firstclient before server", "infile a\noutfile b\nfirstclient n1\nserver s\nlastclient n3\nclients 3\nn1 n2 n3\nendconfig\n",
			"t.cfg:3: firstclient out of order: expected server after outfile (the order is server, firstclient, lastclient, clients, the names, endconfig)"},
		{"lastclient missing", "infile a\noutfile b\nserver s\nfirstclient n1\nclients 3\nn1 n2 n3\nendconfig\n",
			"t.cfg:5: clients out of order: expected lastclient after firstclient (the order is server, firstclient, lastclient, clients, the names, endconfig)"},
		{"option after server", "infile a\noutfile b\nserver s\nfanout 2\nfirstclient n1\nlastclient n3\nclients 3\nn1 n2 n3\nendconfig\n",
			"t.cfg:4: fanout out of order: the optional keywords (segsize, add, fanout, hyphennormal) go before server"},
		{"option after names, opensuse", "infile a\noutfile b\nn1\nfanout 2\nendconfig\n",
			"t.cfg:4: fanout after the client names: the optional keywords (segsize, add, fanout, hyphennormal) go before the names"},
		// Read by position, "server" is the third name and n3 a fourth.
		{"keyword among names", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n3\nclients 3\nn1 n2\nserver\nn3\nendconfig\n",
			"t.cfg:6: clients 3, but 4 names are listed before endconfig (line 10): make the count match the names"},
		// An endconfig where the last name should be, and none after it:
		// the count is wrong, not a host called endconfig.
		{"endconfig short of the count", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n3\nclients 3\nn1\nn2\nendconfig\n",
			"t.cfg:6: clients 3, but 2 names are listed before endconfig (line 9): make the count match the names"},
		{"outfile missing", "infile a\nserver s\n", `t.cfg:2: expected outfile after infile (line 1), got "server": '[compressed] outfile PATH [split SIZE]'`},
		{"outfile first", "outfile a\ninfile b\n", `t.cfg:1: expected infile, compressed infile or iofiles at the start, got "outfile"`},
		{"compressed alone", "compressed\nsegsize 3\n", `t.cfg:2: expected infile after compressed (line 1), got "segsize"`},
		{"infile without path", "infile\noutfile b\n", "t.cfg:1: infile needs a path on its line: '[compressed] infile PATH [split]'"},
		{"server without name", "infile a\noutfile b\nserver\nfirstclient n1\n", "t.cfg:3: server needs a host name on its line: 'server NAME'"},
		{"infile after iofiles", "iofiles 1\na > b\ninfile c\n", "t.cfg:3: infile out of order: expected server after the iofiles entries (the order is server, firstclient, lastclient, clients, the names, endconfig)"},
		{"option twice", "infile a\noutfile b\nfanout 1\nsegsize 9\nfanout 2\n", "t.cfg:5: fanout given twice (first on line 3)"},

		// Malformed '>' lines.
		{"no operator", "iofiles 1\na b\n" + tail, `t.cfg:2: iofiles entry 1: expected '>' or '>>' after "a", got "b": write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},
		{"no operator, alone", "iofiles 1\na\n" + tail, `t.cfg:2: iofiles entry 1: expected '>' or '>>' after "a", got the end of the line: write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},
		{"no input", "iofiles 1\n> b\n" + tail, `t.cfg:2: iofiles entry 1: no input before ">": write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},
		{"no output", "iofiles 2\na >\nc > d\n" + tail, `t.cfg:2: iofiles entry 1: no output after "a >": write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},
		{"no output, joined", "iofiles 1\na>>\n" + tail, `t.cfg:2: iofiles entry 1: no output after "a >>": write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},
		{"triple operator", "iofiles 1\na >>> b\n" + tail, `t.cfg:2: iofiles entry 1: ">>>" is neither '>' (raw) nor '>>' (cooked)`},
		{"too many fields", "iofiles 2\na > b extra\nc > d\n" + tail, `t.cfg:2: iofiles entry 1: too many fields: "extra" after "a > b": one entry is INPUT > OUTPUT`},
		{"too many fields, last entry", "iofiles 1\na > b extra\n" + tail, `t.cfg:2: iofiles entry 1: too many fields: "extra" after "a > b": one entry is INPUT > OUTPUT`},
		{"two operators", "iofiles 1\na > b > c\n" + tail, `t.cfg:2: iofiles entry 1: too many fields: "> c" after "a > b": one entry is INPUT > OUTPUT`},
		{"two operators, joined", "iofiles 1\na>b>c\n" + tail, `t.cfg:2: iofiles entry 1: too many fields: "> c" after "a > b": one entry is INPUT > OUTPUT`},
		{"entry across lines", "iofiles 1\na\n> b\n" + tail, `t.cfg:2: iofiles entry 1: expected '>' or '>>' after "a", got the end of the line: write 'INPUT > OUTPUT' (raw) or 'INPUT >> OUTPUT' (cooked)`},

		// Numbers.
		{"segsize not a number", "infile a\noutfile b\nsegsize big\n", `t.cfg:3: segsize: "big" is not a number: 'segsize N' (TCP segment size in bytes)`},
		{"clients not a number", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n1\nclients three\n", `t.cfg:6: clients: "three" is not a number: 'clients N' followed by the N client names`},
		{"clients negative", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n1\nclients -1\n", `t.cfg:6: clients: "-1" is not a number: 'clients N' followed by the N client names`},
		{"iofiles not a number", "iofiles x\n", `t.cfg:1: iofiles: "x" is not a number: 'iofiles N' followed by N lines 'INPUT > OUTPUT' or 'INPUT >> OUTPUT'`},
		{"fanout 0", "infile a\noutfile b\nfanout 0\n", "t.cfg:3: fanout 0: must be between 1 and 65536"},
		{"huge number", "infile a\noutfile b\nsegsize 99999999999999999999999\n", "t.cfg:3: segsize 99999999999999999999999: must be between 1 and 65535"},
		{"add count mismatch", "infile a\noutfile b\nadd 2:-fast\n", "t.cfg:3: add 2:-fast: 2 interfaces announced but 1 suffixes given: 'add N:SUFFIX1:...:SUFFIXN', e.g. 'add 1:-fast'"},
		{"add not a number", "infile a\noutfile b\nadd fast\n", "t.cfg:3: add fast: expected the number of extra interfaces first: 'add N:SUFFIX1:...:SUFFIXN', e.g. 'add 1:-fast'"},
		{"add empty suffix", "infile a\noutfile b\nadd 2:-fast:\n", "t.cfg:3: add 2:-fast:: empty interface suffix: 'add N:SUFFIX1:...:SUFFIXN', e.g. 'add 1:-fast'"},
		{"split without multiplier", "infile a\noutfile b split 2\n", "t.cfg:2: split size 2 has no multiplier: write 2k, 2M, 2G or 2T"},
		{"split bad size", "infile a\noutfile b split 2X\n", `t.cfg:2: split size "2X": expected a number and k, M, G or T, e.g. split 2G`},
		{"split without size", "infile a\noutfile b split\nn1\n", "t.cfg:2: outfile split needs a size such as 2G (k, M, G or T)"},
		{"split too large", "infile a\noutfile b split 99999999T\n", "t.cfg:2: split size 99999999T is too large"},
		{"split 0", "infile a\noutfile b split 0G\n", "t.cfg:2: split size 0: must be at least 1G"},

		// Names.
		{"duplicate names", "infile a\noutfile b\nserver s\nfirstclient n1\nlastclient n3\nclients 3\nn1\nN1\nn3\nendconfig\n",
			"t.cfg:8: client N1 listed twice: names 1 (line 7) and 2 (line 8)"},
		{"bad name", "infile a\noutfile b\nnode/1\nendconfig\n",
			`t.cfg:3: client name: host name "node/1": character '/' is not allowed (letters, digits, '-', '_' and '.')`},
		{"bad server name", "infile a\noutfile b\nserver s!\n",
			`t.cfg:3: server: host name "s!": character '!' is not allowed (letters, digits, '-', '_' and '.')`},
		{"bad address", "infile a\noutfile b\n10.0.0.256\nendconfig\n",
			"t.cfg:3: client name: address 10.0.0.256: octet 256 > 255"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("t.cfg", strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *ParseError", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	_, err := ParseFile(filepath.Join(t.TempDir(), "missing.cfg"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.cfg") {
		t.Errorf("got %v, want a not-exist error naming the path", err)
	}
	big := strings.Repeat("x", MaxSize+1)
	if _, err := Parse("big.cfg", strings.NewReader(big)); err == nil || !strings.HasPrefix(err.Error(), "big.cfg:1: larger than") {
		t.Errorf("got %v, want a size error", err)
	}
}

func TestParseErrorWithoutName(t *testing.T) {
	_, err := Parse("", strings.NewReader("bogus"))
	if err == nil || err.Error() != `line 1: expected infile, compressed infile or iofiles at the start, got "bogus"` {
		t.Errorf("got %v", err)
	}
}

// TestParseLongLine: a one-line file with many entries and names parses
// in linear time (each entry used to rescan the rest of the line).
func TestParseLongLine(t *testing.T) {
	const n = 20000
	var b strings.Builder
	fmt.Fprintf(&b, "iofiles %d ", n)
	for i := range n {
		fmt.Fprintf(&b, "in%d>out%d ", i, i)
	}
	fmt.Fprintf(&b, "server s firstclient n0 lastclient n%d clients %d ", n-1, n)
	for i := range n {
		fmt.Fprintf(&b, "n%d ", i)
	}
	b.WriteString("endconfig")
	cfg, err := Parse("long.cfg", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Plan.Files) != n || len(cfg.Plan.Hosts) != n {
		t.Errorf("%d files, %d hosts, want %d of each", len(cfg.Plan.Files), len(cfg.Plan.Hosts), n)
	}
}

func TestFormatString(t *testing.T) {
	got := []string{Classic.String(), OpenSUSE.String(), DollyPlus.String(), Format(9).String()}
	want := []string{"dolly", "openSUSE dolly", "dolly+", "Format(9)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.cfg"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"iofiles 2 a>b c>>d server s firstclient x lastclient y clients 1 n endconfig",
		"infile a split\ncompressed outfile b split 2 G\nadd 1:-x\nn1\nendconfig\nrest",
		">>>", "iofiles 1\n>", "infile # x\n", "compressed", "iofiles 1\na>b>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.cfg", strings.NewReader(string(data)))
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is a %T, want *ParseError", err, err)
			}
			if pe.Line < 1 {
				t.Fatalf("error %v: line %d", err, pe.Line)
			}
			return
		}
		if err := cfg.Plan.Validate(); err != nil {
			t.Fatalf("parsed plan does not validate: %v", err)
		}
		if cfg.Clients != len(cfg.Plan.Hosts) {
			t.Fatalf("Clients %d, %d hosts", cfg.Clients, len(cfg.Plan.Hosts))
		}
		if cfg.Format == OpenSUSE && (cfg.FirstClient != "" || cfg.LastClient != "" || cfg.Plan.Server != "") {
			t.Fatalf("OpenSUSE config with a server or first/last client: %+v", cfg)
		}
	})
}
