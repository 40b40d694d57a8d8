package qemutests

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// T is what the harness needs of its caller: the part of testing.TB it
// uses. A test passes its *testing.T; a program (make demo) passes the T
// RunProgram gives it. Fatalf and Skip end the calling goroutine, as
// testing's do, so call them (and every harness method that fails the
// caller) from the goroutine that runs the test or the program's
// function.
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
}

// asTB gives t to packages that take a testing.TB (internal/netnstest):
// a test's own, or an adapter for a program's T.
func asTB(t T) testing.TB {
	if tb, ok := t.(testing.TB); ok {
		return tb
	}
	return tbAdapter{t: t}
}

// tbAdapter is a testing.TB made of a T. testing.TB cannot be
// implemented outside package testing but by embedding it; the embedded
// value is nil, so every method of testing.TB is defined here, mapped onto
// T's, or panics with a message for the few (Setenv, Chdir, Context,
// ArtifactDir, Attr, Output) the harness's packages do not call.
type tbAdapter struct {
	testing.TB
	t T
}

func (a tbAdapter) Helper()                           {}
func (a tbAdapter) Name() string                      { return a.t.Name() }
func (a tbAdapter) Cleanup(f func())                  { a.t.Cleanup(f) }
func (a tbAdapter) TempDir() string                   { return a.t.TempDir() }
func (a tbAdapter) Failed() bool                      { return a.t.Failed() }
func (a tbAdapter) Skipped() bool                     { return false }
func (a tbAdapter) Log(args ...any)                   { a.t.Logf("%s", fmt.Sprintln(args...)) }
func (a tbAdapter) Logf(format string, args ...any)   { a.t.Logf(format, args...) }
func (a tbAdapter) Error(args ...any)                 { a.t.Errorf("%s", fmt.Sprintln(args...)) }
func (a tbAdapter) Errorf(format string, args ...any) { a.t.Errorf(format, args...) }
func (a tbAdapter) Fail()                             { a.t.Errorf("failed") }
func (a tbAdapter) FailNow()                          { a.t.Fatalf("failed") }
func (a tbAdapter) Fatal(args ...any)                 { a.t.Fatalf("%s", fmt.Sprintln(args...)) }
func (a tbAdapter) Fatalf(format string, args ...any) { a.t.Fatalf(format, args...) }
func (a tbAdapter) Skip(args ...any)                  { a.t.Skip(args...) }
func (a tbAdapter) SkipNow()                          { a.t.Skip() }
func (a tbAdapter) Skipf(format string, args ...any)  { a.t.Skip(fmt.Sprintf(format, args...)) }
func (a tbAdapter) Setenv(k, v string)                { panic("qemutests: Setenv outside a test") }
func (a tbAdapter) Chdir(dir string)                  { panic("qemutests: Chdir outside a test") }

// Program is the T of a program that drives clusters (make demo), made
// by RunProgram: Logf writes to its log, Errorf and Fatalf also mark it
// failed and keep the message, Fatalf and Skip end the goroutine that
// runs the program's function, cleanups run last first when it has
// ended, and TempDir's directories are removed then.
type Program struct {
	name string
	log  io.Writer

	mu       sync.Mutex
	failed   bool
	errs     []string
	cleanups []func()
}

// RunProgram runs fn as go test runs a test: in a goroutine of its own,
// with a Program named name as its T, whose Logf lines (and every error)
// go to log; it returns once fn has returned or ended with Fatalf or Skip
// and the cleanups have run. The error lists the messages of Errorf,
// Fatalf and Skip (a Skip is a failure here: the program could not do
// what it is for), or is nil.
func RunProgram(name string, log io.Writer, fn func(T)) error {
	p := &Program{name: name, log: log}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(p)
	}()
	<-done
	p.runCleanups()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.failed {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(p.errs, "\n"))
}

func (p *Program) runCleanups() {
	for {
		p.mu.Lock()
		if len(p.cleanups) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.cleanups[len(p.cleanups)-1]
		p.cleanups = p.cleanups[:len(p.cleanups)-1]
		p.mu.Unlock()
		f()
	}
}

// Helper does nothing: a program's log lines carry no file positions.
func (p *Program) Helper() {}

// Name is the name RunProgram was given; the cluster's logs and
// namespaces are named after it.
func (p *Program) Name() string { return p.name }

// Logf writes one line to the log.
func (p *Program) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.log, strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Errorf logs and marks the program failed; it goes on.
func (p *Program) Errorf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	p.mu.Lock()
	p.failed = true
	p.errs = append(p.errs, msg)
	p.mu.Unlock()
	p.Logf("ERROR: %s", msg)
}

// Fatalf is Errorf, then ends the calling goroutine.
func (p *Program) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	runtime.Goexit()
}

// Skip says why the program cannot run here, marks it failed and ends the
// calling goroutine.
func (p *Program) Skip(args ...any) {
	p.Fatalf("cannot run here: %s", strings.TrimRight(fmt.Sprintln(args...), "\n"))
}

// Failed reports whether Errorf, Fatalf or Skip was called.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Cleanup registers f to run when the program's function has ended, after
// the cleanups registered later.
func (p *Program) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, f)
}

// TempDir makes a new directory, removed at cleanup; it fails the program
// when it cannot.
func (p *Program) TempDir() string {
	dir, err := os.MkdirTemp("", "herd-"+p.name+"-")
	if err != nil {
		p.Fatalf("qemutests: %v", err)
	}
	p.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
