package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

// Version is herd's version. Builds set it with
//
//	go build -ldflags "-X github.com/herdproject/herd/cmd/internal/cli.Version=0.9.0"
//
// (the packages do, with the version they carry). Left empty, the
// module version the Go toolchain recorded is taken when it names a
// release (go install github.com/herdproject/herd/cmd/herd@v0.9.0), else
// DevVersion. Once the package is initialized, Version holds the version
// herd reports (herd version, dolly -V), without a leading "v".
var Version string

// Commit and BuildDate, set with -ldflags -X like Version, override the
// commit and the date the Go toolchain records from the source tree
// (vcs.revision, vcs.time): builds without version control information,
// such as those from a source tarball, can name them.
var (
	Commit    string
	BuildDate string
)

// DevVersion is the version of a build that names none: neither -X nor a
// released module.
const DevVersion = "0.1.0"

func init() { Version = ReadBuildInfo().Version }

// BuildInfo is what herd version prints.
type BuildInfo struct {
	// Version is herd's version, e.g. "0.9.0".
	Version string `json:"version"`
	// Commit is the source commit's full hash, with "-dirty" appended
	// when the tree had uncommitted changes; "" when unknown.
	Commit string `json:"commit,omitempty"`
	// Date is the commit's time (RFC 3339, UTC), or what -X BuildDate
	// says; "" when unknown.
	Date string `json:"date,omitempty"`
	// GoVersion is the Go release that compiled herd, e.g. "go1.26.8".
	GoVersion string `json:"go"`
}

// ReadBuildInfo returns this binary's version, commit, date and Go
// release: the -ldflags -X values where set, else the Go toolchain's
// build information (runtime/debug.ReadBuildInfo).
func ReadBuildInfo() BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return buildInfo(bi, Version, Commit, BuildDate)
}

// buildInfo combines the -X values (version, commit, date) with bi, which
// may be nil.
func buildInfo(bi *debug.BuildInfo, version, commit, date string) BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			b.GoVersion = bi.GoVersion
		}
		if b.Version == "" && isRelease(bi.Main.Version) {
			b.Version = bi.Main.Version
		}
		var rev, when string
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if b.Commit == "" && rev != "" {
			b.Commit = rev
			if dirty {
				b.Commit += "-dirty"
			}
		}
		if b.Date == "" {
			b.Date = when
		}
	}
	if b.Version == "" {
		b.Version = DevVersion
	}
	if len(b.Version) > 1 && b.Version[0] == 'v' && b.Version[1] >= '0' && b.Version[1] <= '9' {
		b.Version = b.Version[1:]
	}
	return b
}

// releaseVersion is a module version naming a release (v1.2.3,
// v1.2.3-rc.1, +incompatible or +dirty after it), and pseudoVersion the
// Go toolchain's stand-in for a commit without a release tag
// (v0.0.0-20260306140000-03d192f1a2b3), which is no release.
var (
	releaseVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.]+)?$`)
	pseudoVersion  = regexp.MustCompile(`[0-9]{14}-[0-9a-f]{12}(\+[0-9A-Za-z.]+)?$`)
)

// isRelease reports whether v, a module version from the build
// information, names a release ("(devel)" and pseudo-versions do not).
func isRelease(v string) bool {
	return releaseVersion.MatchString(v) && !pseudoVersion.MatchString(v)
}

// String is herd version's line: herd VERSION (commit HASH, built DATE, GO).
func (b BuildInfo) String() string {
	commit, date := "unknown", "unknown"
	if b.Commit != "" {
		commit = b.Commit
		if h, dirty := strings.CutSuffix(commit, "-dirty"); len(h) > 12 {
			commit = h[:12]
			if dirty {
				commit += "-dirty"
			}
		}
	}
	if b.Date != "" {
		date = b.Date
	}
	return fmt.Sprintf("herd %s (commit %s, built %s, %s)", b.Version, commit, date, b.GoVersion)
}

const versionUsage = `Usage: herd version [--json]

Print herd's version, the commit it was built from, the commit's date and
the Go release that compiled it, on one line:
  herd VERSION (commit HASH, built DATE, GOVERSION)
herd --version and herd -V print the same.

The version is set when herd is built (the packages carry the same one);
the commit and its date come from the Go toolchain's record of the source
tree (a "-dirty" commit had uncommitted changes), or are set by the build.
What is not known reads "unknown".

Options:
`

func herdVersion(_ context.Context, args []string, env Env) error {
	fs := pflag.NewFlagSet("herd version", pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.SortFlags = false
	asJSON := fs.Bool("json", false, "print one JSON object: version, commit, date, go")
	if err := parseFlags(fs, env, versionUsage, args, " (see herd version --help)"); err != nil {
		return err
	}
	b := ReadBuildInfo()
	if *asJSON {
		out, err := json.MarshalIndent(b, "", "  ")
		if err != nil {
			return fmt.Errorf("version: %w", err)
		}
		fmt.Fprintf(env.Stdout, "%s\n", out)
		return nil
	}
	fmt.Fprintln(env.Stdout, b)
	return nil
}
