package plan

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChildren(t *testing.T) {
	tests := []struct {
		name      string
		n, fanout int
		want      map[int][]int
	}{
		{"chain", 4, 1, map[int][]int{-1: {0}, 0: {1}, 1: {2}, 2: {3}, 3: nil}},
		{"fanout 0 is a chain", 2, 0, map[int][]int{-1: {0}, 0: {1}, 1: nil}},
		{"binary tree", 6, 2, map[int][]int{-1: {0, 1}, 0: {2, 3}, 1: {4, 5}, 2: nil}},
		{"ternary, short", 4, 3, map[int][]int{-1: {0, 1, 2}, 0: {3}, 1: nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, want := range tt.want {
				if diff := cmp.Diff(want, Children(tt.n, tt.fanout, i)); diff != "" {
					t.Errorf("Children(%d,%d,%d) (-want +got):\n%s", tt.n, tt.fanout, i, diff)
				}
			}
		})
	}
}

// Every node has exactly one parent, and Parent agrees with Children.
func TestTreeCoversEveryNodeOnce(t *testing.T) {
	for fanout := 1; fanout <= 4; fanout++ {
		for n := 1; n <= 40; n++ {
			seen := make([]int, n)
			for p := -1; p < n; p++ {
				for _, c := range Children(n, fanout, p) {
					seen[c]++
					if got := Parent(fanout, c); got != p {
						t.Fatalf("n=%d fanout=%d: Parent(%d)=%d, want %d", n, fanout, c, got, p)
					}
				}
			}
			for i, k := range seen {
				if k != 1 {
					t.Fatalf("n=%d fanout=%d: node %d has %d parents", n, fanout, i, k)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Session{Files: []File{{Input: "a", Output: "b"}}, Hosts: []string{"n1"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	stage2 := Session{Files: []File{{Input: "s.sqfs", Output: "/dev/ram0", Mount: "/stage2"}}, Hosts: []string{"n1"}}
	if err := stage2.Validate(); err != nil {
		t.Fatal(err)
	}
	s2 := func(f File) []File { f.Input = "s.sqfs"; return []File{f} }
	for name, p := range map[string]Session{
		"no files":               {Hosts: []string{"n"}},
		"no hosts":               {Files: ok.Files},
		"no output":              {Files: []File{{Input: "a"}}, Hosts: []string{"n"}},
		"no input":               {Files: []File{{Output: "a"}}, Hosts: []string{"n"}},
		"fanout":                 {Files: ok.Files, Hosts: []string{"n"}, Fanout: -1},
		"stage2 relative mount":  {Files: s2(File{Output: "/dev/ram0", Mount: "stage2"}), Hosts: []string{"n"}},
		"stage2 mount on /":      {Files: s2(File{Output: "/dev/ram0", Mount: "/"}), Hosts: []string{"n"}},
		"stage2 to stdout":       {Files: s2(File{Output: "-", Mount: "/stage2"}), Hosts: []string{"n"}},
		"stage2 split":           {Files: s2(File{Output: "/run/s2", Mount: "/stage2", SplitOut: 1 << 20}), Hosts: []string{"n"}},
		"stage2 compressed file": {Files: s2(File{Output: "/run/s2", Mount: "/stage2", CompressedOut: true}), Hosts: []string{"n"}},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
