package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildInfo(t *testing.T) {
	vcs := func(rev, when, modified string) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: when}, {Key: "vcs.modified", Value: modified},
		}}
	}
	release := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.9.1"}}
	pseudo := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "v0.0.0-20261206141712-953b4d0b8f42+dirty"}}
	for _, tc := range []struct {
		name                  string
		bi                    *debug.BuildInfo
		version, commit, date string
		want                  BuildInfo
		wantLine              string
	}{
		{"nothing", nil, "", "", "", BuildInfo{Version: DevVersion, GoVersion: runtime.Version()},
			"herd " + DevVersion + " (commit unknown, built unknown, " + runtime.Version() + ")"},
		{"vcs", vcs("953b4d0b8f42bdfdba7eee40f2d6e4fab5660647", "2026-12-06T14:17:12Z", "false"), "", "", "",
			BuildInfo{Version: DevVersion, Commit: "953b4d0b8f42bdfdba7eee40f2d6e4fab5660647", Date: "2026-12-06T14:17:12Z", GoVersion: "go1.99.1"},
			"herd " + DevVersion + " (commit 953b4d0b8f42, built 2026-12-06T14:17:12Z, go1.99.1)"},
		{"dirty", vcs("953b4d0b8f42bdfdba7eee40f2d6e4fab5660647", "2026-12-06T14:17:12Z", "true"), "", "", "",
			BuildInfo{Version: DevVersion, Commit: "953b4d0b8f42bdfdba7eee40f2d6e4fab5660647-dirty", Date: "2026-12-06T14:17:12Z", GoVersion: "go1.99.1"},
			"herd " + DevVersion + " (commit 953b4d0b8f42-dirty, built 2026-12-06T14:17:12Z, go1.99.1)"},
		{"-X wins", vcs("953b4d0b8f42bdfdba7eee40f2d6e4fab5660647", "2026-12-06T14:17:12Z", "true"), "v0.9.0", "abc1234", "2026-12-07T10:00:00Z",
			BuildInfo{Version: "0.9.0", Commit: "abc1234", Date: "2026-12-07T10:00:00Z", GoVersion: "go1.99.1"},
			"herd 0.9.0 (commit abc1234, built 2026-12-07T10:00:00Z, go1.99.1)"},
		{"released module", release, "", "", "", BuildInfo{Version: "0.9.1", GoVersion: "go1.99.1"},
			"herd 0.9.1 (commit unknown, built unknown, go1.99.1)"},
		{"pseudo-version is no release", pseudo, "", "", "", BuildInfo{Version: DevVersion, GoVersion: "go1.99.1"},
			"herd " + DevVersion + " (commit unknown, built unknown, go1.99.1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := buildInfo(tc.bi, tc.version, tc.commit, tc.date)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("buildInfo (-want +got):\n%s", diff)
			}
			if line := got.String(); line != tc.wantLine {
				t.Errorf("String() = %q, want %q", line, tc.wantLine)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		var stdout, stderr bytes.Buffer
		code := Herd(context.Background(), args, Env{Stdout: &stdout, Stderr: &stderr})
		if want := ReadBuildInfo().String() + "\n"; code != ExitOK || stdout.String() != want {
			t.Errorf("herd %s: exit %d, %q (stderr %q); want 0, %q", args[0], code, stdout.String(), stderr.String(), want)
		}
	}
	var stdout bytes.Buffer
	if code := Herd(context.Background(), []string{"version", "--json"}, Env{Stdout: &stdout, Stderr: &stdout}); code != ExitOK {
		t.Fatalf("herd version --json: exit %d: %s", code, stdout.String())
	}
	var got BuildInfo
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("herd version --json: %v: %s", err, stdout.String())
	}
	if diff := cmp.Diff(ReadBuildInfo(), got); diff != "" {
		t.Errorf("herd version --json (-want +got):\n%s", diff)
	}
}

// TestVersionLdflags builds herd with -ldflags -X, as the packages do,
// and reads the values back from herd version and dolly -V.
func TestVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herd")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	const pkg = "github.com/herdproject/herd/cmd/internal/cli"
	ldflags := "-X " + pkg + ".Version=0.9.0 -X " + pkg + ".Commit=abc1234 -X " + pkg + ".BuildDate=2026-12-06T14:00:00Z"
	if out, err := exec.Command(goTool, "build", "-ldflags", ldflags, "-o", bin, "github.com/herdproject/herd/cmd/herd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("herd version: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), "herd 0.9.0 (commit abc1234, built 2026-12-06T14:00:00Z, "; !strings.HasPrefix(got, want) {
		t.Errorf("herd version: %q, want %q...", got, want)
	}
	dolly := filepath.Join(dir, "dolly")
	if err := os.Symlink("herd", dolly); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(dolly, "-V").CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "Dolly version "+DollyVersion+" (herd 0.9.0)"; err != nil || got != want {
		t.Errorf("dolly -V: %v, %q, want %q", err, got, want)
	}
}
