package sender

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/hostlist"
	"github.com/herdproject/herd/ring/plan"
)

// stateSession is a session of two hosts sending in to out.
func stateSession(t *testing.T, in string) *session {
	t.Helper()
	s := &session{cfg: Config{Plan: plan.Session{Hosts: []string{"n1", "n2"}, Files: []plan.File{{Input: in, Output: "/dev/sda"}}}}}
	s.cfg.setDefaults()
	s.hosts = []hostlist.Resolved{{Name: "n1", Addr: netip.MustParseAddr("10.0.0.1")}, {Name: "n2", Addr: netip.MustParseAddr("10.0.0.2")}}
	s.rep.Nodes = []NodeReport{{Name: "n1", State: StateReceiving}, {Name: "n2", State: StateDone, Verified: true}}
	s.rep.Outputs = []string{"/dev/sda"}
	s.id, s.live, s.started = "abc", []int{0, 1}, time.Now()
	return s
}

func writeImage(t *testing.T, path string, size int, b byte) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Repeat(string(b), size)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStateRoundTrip: what saveState writes, loadState reads, and a
// session of the same command and unchanged inputs matches it; every kind
// of change is named.
func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "img")
	writeImage(t, in, 3<<20, 'a')
	s := stateSession(t, in)
	inputs, ok, err := s.printInputs()
	if err != nil || !ok {
		t.Fatalf("printInputs: %v %v", ok, err)
	}
	s.inputs = inputs
	s.stateFile = filepath.Join(dir, "state.json")
	s.saveState()
	st, err := loadState(s.stateFile)
	if err != nil || st == nil {
		t.Fatalf("loadState: %v, %v", st, err)
	}
	if st.Session != "abc" || len(st.Nodes) != 2 || st.Nodes[0].State != StateReceiving || st.Nodes[1].State != StateDone || !st.Nodes[1].Verified {
		t.Errorf("loaded %+v", st)
	}
	if d := s.differs(st, inputs); d != "" {
		t.Errorf("the same session differs: %s", d)
	}

	for _, tc := range []struct {
		name   string
		change func(t *testing.T, s *session) []inputPrint
		want   string
	}{
		{"other hosts", func(t *testing.T, s *session) []inputPrint {
			s.hosts[1].Name = "n3"
			return inputs
		}, "its hosts were n1,n2, now n1,n3"},
		{"other outputs", func(t *testing.T, s *session) []inputPrint {
			s.rep.Outputs = []string{"/dev/sdb"}
			return inputs
		}, "its outputs were /dev/sda, now /dev/sdb"},
		{"grown", func(t *testing.T, s *session) []inputPrint {
			writeImage(t, in, 3<<20+1, 'a')
			return mustPrint(t, s)
		}, "the image changed"},
		{"same size, other bytes in the middle, touched", func(t *testing.T, s *session) []inputPrint {
			b := []byte(strings.Repeat("a", 3<<20))
			b[3<<19] = 'b'
			if err := os.WriteFile(in, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return mustPrint(t, s)
		}, "was modified at"},
		{"same size and mtime, other last byte", func(t *testing.T, s *session) []inputPrint {
			fi, _ := os.Stat(in)
			b := []byte(strings.Repeat("a", 3<<20))
			b[len(b)-1] = 'z'
			if err := os.WriteFile(in, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(in, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			return mustPrint(t, s)
		}, "other bytes at its start or end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeImage(t, in, 3<<20, 'a')
			fi, _ := os.Stat(in)
			c := stateSession(t, in)
			c.inputs = mustPrint(t, c)
			st := c.state()
			// Keep the recorded time: rewriting the file moves it.
			st.Inputs[0].ModTime = fi.ModTime().UTC()
			got := c.differs(st, tc.change(t, c))
			if !strings.Contains(got, tc.want) {
				t.Errorf("differs: %q, want it to say %q", got, tc.want)
			}
		})
	}
}

func mustPrint(t *testing.T, s *session) []inputPrint {
	t.Helper()
	p, ok, err := s.printInputs()
	if err != nil || !ok {
		t.Fatalf("printInputs: %v %v", ok, err)
	}
	return p
}

// TestStateStream: an input that cannot be read again (standard input)
// makes a session that keeps no state.
func TestStateStream(t *testing.T) {
	s := stateSession(t, "-")
	if _, ok, err := s.printInputs(); ok || err != nil {
		t.Errorf("printInputs of standard input: ok %v, err %v; want not resumable", ok, err)
	}
}

// TestLoadStateBad: a damaged or foreign state file is refused with its
// name and what to do; a missing one is no session.
func TestLoadStateBad(t *testing.T) {
	dir := t.TempDir()
	if st, err := loadState(filepath.Join(dir, "none.json")); st != nil || err != nil {
		t.Errorf("missing file: %v, %v", st, err)
	}
	for _, tc := range []struct{ name, content, want string }{
		{"truncated", `{"version":1,"session":"a`, "--fresh"},
		{"other version", `{"version":99}`, "format version 99"},
		{"not json", "garbage", "--fresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadState(p)
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loadState: %v; want an error naming %s and saying %q", err, p, tc.want)
			}
		})
	}
}

// TestDefaultStateFile: the same command gets the same file, another
// command another one.
func TestDefaultStateFile(t *testing.T) {
	cfg := func(hosts ...string) Config {
		return Config{Plan: plan.Session{Hosts: hosts, Files: []plan.File{{Input: "/img", Output: "/dev/sda"}}}}
	}
	a, b := DefaultStateFile("/d", cfg("n1", "n2")), DefaultStateFile("/d", cfg("n1", "n2"))
	if a != b || !strings.HasPrefix(a, "/d/session-") {
		t.Errorf("same command: %s and %s", a, b)
	}
	if c := DefaultStateFile("/d", cfg("n1", "n3")); c == a {
		t.Errorf("other hosts, same file %s", c)
	}
}

// FuzzLoadState: any content of a state file gives a session or an
// error naming the file, never a panic.
func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"session":"abc","live":[0,1],"nodes":[{"state":"done"}]}`))
	f.Add([]byte(`{"version":1,"inputs":[{"path":"/x","size":-1}]}`))
	f.Add([]byte(`null`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "s.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadState(p)
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name the file", err)
		}
		if err == nil && st != nil && st.Version != stateVersion {
			t.Errorf("accepted version %d", st.Version)
		}
	})
}
