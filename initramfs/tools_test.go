package initramfs

import (
	"go/parser"
	"go/token"
	"sort"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestToolsFileImportsCommands keeps tools.go in step with Commands: a
// command missing from tools.go would lose its dependencies at the next
// `go mod tidy`, and the initramfs build would fail to resolve it.
func TestToolsFileImportsCommands(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "tools.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	want := append([]string(nil), Commands...)
	sort.Strings(got)
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("tools.go imports (-Commands +tools.go):\n%s", d)
	}
}
