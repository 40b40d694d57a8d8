package gobuild

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeModule makes a module in a temporary directory with the given
// files, and makes it the working directory for the test.
func writeModule(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["go.mod"] = "module example.com/m\n\ngo 1.22\n"
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(filepath.Join(dir, "pkg"))
	return dir
}

func needGo(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("builds Go programs; skipped in -short mode")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const hello = "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from\", NAME) }\n"

// TestBuild builds two commands of a module from one of its package
// directories, runs them, and removes them.
func TestBuild(t *testing.T) {
	ctx := needGo(t)
	writeModule(t, map[string]string{
		"cmd/herd/main.go":  strings.Replace(hello, "NAME", `"herd"`, 1),
		"cmd/other/main.go": strings.Replace(hello, "NAME", `"other"`, 1),
		"pkg/p.go":          "package pkg\n",
	})
	b, err := Build(ctx, "./cmd/herd", "./cmd/other")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"herd", "other"} {
		out, err := exec.Command(b.Path(name)).Output()
		if err != nil || string(out) != "hello from "+name+"\n" {
			t.Errorf("%s: %q, %v", name, out, err)
		}
	}
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Remove (%v)", b.Dir, err)
	}
}

// TestBuildError: the error names the package and carries go's output.
func TestBuildError(t *testing.T) {
	ctx := needGo(t)
	writeModule(t, map[string]string{
		"cmd/herd/main.go":   strings.Replace(hello, "NAME", `"herd"`, 1),
		"cmd/broken/main.go": "package main\n\nfunc main() { undefinedThing() }\n",
		"pkg/p.go":           "package pkg\n",
	})
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "herd-testbin-*"))
	_, err := Build(ctx, "./cmd/herd", "./cmd/broken")
	if err == nil {
		t.Fatal("Build of a broken package succeeded")
	}
	for _, want := range []string{"go build ./cmd/broken", "undefinedThing"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if after, _ := filepath.Glob(filepath.Join(os.TempDir(), "herd-testbin-*")); len(after) > len(before) {
		t.Errorf("a failed Build left a directory: %v (before: %v)", after, before)
	}
}

// TestStaticHerd: ./cmd/herd of a tree built static, for the asked
// architecture, without a build ID; a broken tree's error names the tree
// and carries go's output.
func TestStaticHerd(t *testing.T) {
	ctx := needGo(t)
	dir := writeModule(t, map[string]string{
		"cmd/herd/main.go": strings.Replace(hello, "NAME", `"herd"`, 1),
		"pkg/p.go":         "package pkg\n",
	})
	out := filepath.Join(t.TempDir(), "herd")
	if err := StaticHerd(ctx, dir, out, "arm64"); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("machine %v, want arm64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("dynamically linked")
		}
	}
	if id, err := exec.Command("go", "tool", "buildid", out).Output(); err != nil || strings.TrimSpace(string(id)) != "" {
		t.Errorf("build ID %q (%v), want none", id, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("not stripped: has .symtab")
	}

	os.WriteFile(filepath.Join(dir, "cmd/herd/main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644)
	err = StaticHerd(ctx, dir, out, "")
	if err == nil || !strings.Contains(err.Error(), "go build ./cmd/herd in "+dir) || !strings.Contains(err.Error(), "undefinedThing") {
		t.Errorf("broken tree: %v", err)
	}
}
