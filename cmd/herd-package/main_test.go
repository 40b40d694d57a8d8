package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPackageVersion(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{in: "0.1.0", want: "0.1.0"},
		{in: "v0.2.0", want: "0.2.0"},
		{in: "0.1.0-12-gabc1234", want: "0.1.0+12.gabc1234"},
		{in: "0.1.0-dirty", want: "0.1.0+dirty"},
		{in: "0.9.0~rc1", want: "0.9.0~rc1"},
		{in: "", err: "want a version starting with a digit"},
		{in: "devel", err: "want a version starting with a digit"},
		{in: "1.0 beta", err: "want a version starting with a digit"},
	} {
		got, err := packageVersion(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("packageVersion(%q) = %q, %v; want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("packageVersion(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// fixture writes the inputs of a package build (a stand-in herd binary:
// the packager copies bytes) and returns its config.
func fixture(t *testing.T) config {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := config{
		herd:    write("herd", "#!/bin/sh\necho herd\n"),
		version: "0.3.1",
		release: "1",
		man:     filepath.Join(dir, "man"),
		bash:    write("completion/herd.bash", "complete -F _herd herd\n"),
		zsh:     write("completion/_herd", "#compdef herd\n"),
		conf:    write("herd.conf", "# interface = \"\"\n"),
		// The repository's own units and example inventory.
		inventory: filepath.Join("..", "..", "packaging", "inventory.example"),
		units:     filepath.Join("..", "..", "packaging", "systemd"),
		out:       filepath.Join(dir, "out"),
		formats:   "deb,rpm",
	}
	write("man/herd.1", ".TH HERD 1\n")
	write("man/herd-serve.8", ".TH HERD-SERVE 8\n")
	write("man/dolly.1", ".TH DOLLY 1\n")
	write("man/README", "not a page\n")
	return c
}

// TestPackages builds both packages and reads them back with the
// distributions' own tools: dpkg-deb, and rpm when installed.
func TestPackages(t *testing.T) {
	c := fixture(t)
	paths, err := build(c, time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || filepath.Base(paths[0]) != "herd_0.3.1-1_amd64.deb" || filepath.Base(paths[1]) != "herd-0.3.1-1.x86_64.rpm" {
		t.Fatalf("packages %v", paths)
	}
	want := []string{
		"./usr/bin/herd", "./usr/bin/dolly -> herd", "./usr/bin/dollyS -> herd", "./usr/bin/dollyC -> herd",
		"./etc/herd/herd.conf", "./lib/systemd/system/herd-serve.service", "./lib/systemd/system/herd-recv.socket",
		"./lib/systemd/system/herd-recv.service", "./usr/share/doc/herd/examples/inventory",
		"./usr/share/man/man1/herd.1.gz", "./usr/share/man/man8/herd-serve.8.gz", "./usr/share/man/man1/dolly.1.gz",
		"./usr/share/bash-completion/completions/herd", "./usr/share/zsh/vendor-completions/_herd",
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed")
	}
	list := run(t, "dpkg-deb", "-c", paths[0])
	for _, w := range want {
		if !strings.Contains(list, " "+w+"\n") {
			t.Errorf("the .deb lacks %s:\n%s", w, list)
		}
	}
	if strings.Contains(list, "README") {
		t.Errorf("the .deb holds a file of the man directory that is no page:\n%s", list)
	}
	for field, w := range map[string]string{
		"Package": "herd", "Version": "0.3.1-1", "Architecture": "amd64",
		"Depends": "ipxe, pxelinux, syslinux-common, e2fsprogs, dosfstools, fdisk, util-linux, kmod, mtools, extlinux",
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", paths[0], field)); got != w {
			t.Errorf("the .deb's %s: %q, want %q", field, got, w)
		}
	}
	if got := run(t, "sh", "-c", `dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles`, "sh", paths[0]); strings.TrimSpace(got) != "/etc/herd/herd.conf" {
		t.Errorf("the .deb's conffiles: %q, want /etc/herd/herd.conf", got)
	}
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Log("rpm is not installed: the .rpm is not read back")
		return
	}
	rlist := run(t, "rpm", "-qlp", paths[1])
	for _, w := range want {
		w = strings.TrimPrefix(strings.TrimSuffix(w, " -> herd"), ".")
		if strings.Contains(w, "vendor-completions") {
			w = "/usr/share/zsh/site-functions/_herd"
		}
		if !strings.Contains(rlist, w+"\n") {
			t.Errorf("the .rpm lacks %s:\n%s", w, rlist)
		}
	}
	if got := run(t, "rpm", "-qp", "--queryformat", "%{NAME} %{VERSION} %{RELEASE}", paths[1]); got != "herd 0.3.1 1" {
		t.Errorf("the .rpm is %q, want herd 0.3.1 1", got)
	}
	if got := run(t, "rpm", "-qp", "--configfiles", paths[1]); strings.TrimSpace(got) != "/etc/herd/herd.conf" {
		t.Errorf("the .rpm's configuration files: %q", got)
	}
}

// TestRefusals: bad inputs name the flag at fault and write nothing.
func TestRefusals(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*config)
		err  string
	}{
		{"no version", func(c *config) { c.version = "" }, "--version: required"},
		{"no herd", func(c *config) { c.herd += ".missing" }, "--herd: stat"},
		{"no man pages", func(c *config) { c.man = c.out + ".none" }, "--man: open"},
		{"no units", func(c *config) { c.units = t.TempDir() }, "no systemd units"},
		{"unknown format", func(c *config) { c.formats = "deb,msi" }, "--formats"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := fixture(t)
			tt.edit(&c)
			_, err := build(c, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("build: %v, want an error with %q", err, tt.err)
			}
			if _, err := os.Stat(c.out); err == nil {
				t.Errorf("%s was made", c.out)
			}
		})
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
