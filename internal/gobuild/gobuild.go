// Package gobuild runs the Go toolchain on herd's own source: the static
// herd executable that boot trees and golden images carry (StaticHerd),
// and the commands a test process runs, built once per process (Build).
package gobuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// StaticHerd compiles ./cmd/herd of the source tree src to out as a
// static, stripped Linux executable for goarch ("" the host's):
// CGO_ENABLED=0, -trimpath, and -ldflags "-s -w -buildid=", so that one
// source gives the same bytes wherever it is built. ctx bounds the build;
// the error carries go's output.
func StaticHerd(ctx context.Context, src, out, goarch string) error {
	env := []string{"CGO_ENABLED=0", "GOOS=linux"}
	if goarch != "" {
		env = append(env, "GOARCH="+goarch)
	}
	if err := goBuild(ctx, src, env, "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/herd"); err != nil {
		return fmt.Errorf("go build ./cmd/herd in %s: %w", src, err)
	}
	return nil
}

// goBuild runs "go build args..." in dir with env added to the
// environment; a failure's error ends with go's output.
func goBuild(ctx context.Context, dir string, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("%w\n%s", err, b)
	}
	return nil
}

// Bins is a temporary directory of herd commands built for one test
// process by Build.
type Bins struct {
	// Dir holds one executable per package, named after the package's
	// last path element ("herd" for ./cmd/herd).
	Dir string
}

// Build compiles pkgs, paths in herd's module such as "./cmd/herd", with a
// plain go build (the test process's toolchain and environment) into a
// new temporary directory, and returns it. A test package calls it once,
// from TestMain, and removes the directory with Remove after m.Run: every
// test of the process runs the same binaries, built once. The module is
// the one containing the working directory (a test's is its package's).
// ctx bounds the builds; an error names the package and carries go's
// output, and leaves no directory behind.
func Build(ctx context.Context, pkgs ...string) (*Bins, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "herd-testbin-")
	if err != nil {
		return nil, fmt.Errorf("gobuild: %w", err)
	}
	b := &Bins{Dir: dir}
	for _, pkg := range pkgs {
		if err := goBuild(ctx, root, nil, "-o", b.Path(path.Base(pkg)), pkg); err != nil {
			b.Remove()
			return nil, fmt.Errorf("gobuild: go build %s in %s: %w", pkg, root, err)
		}
	}
	return b, nil
}

// Path returns the executable built from the package whose last path
// element is name ("herd").
func (b *Bins) Path(name string) string { return filepath.Join(b.Dir, name) }

// Remove deletes the directory and the executables in it.
func (b *Bins) Remove() error { return os.RemoveAll(b.Dir) }

// moduleRoot returns the root of the Go module containing the working
// directory, as go env GOMOD says.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("gobuild: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("gobuild: the working directory is in no Go module: run the tests inside herd's source tree")
	}
	return filepath.Dir(gomod), nil
}
