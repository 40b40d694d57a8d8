// Package docs makes herd's man pages and shell completions from the
// help text its commands print, so that the help is the only copy: it
// runs every program's and command's --help in-process (cli.Herd,
// cli.Dolly, ...), takes the text apart (usage, prose, pflag's option
// lines), writes it as go-md2man markdown and renders that to roff, one
// page per command with a help of its own (herd(1), herd-send(1),
// herd-serve(8), herd-image-golden(1), dolly(1), ...), and writes bash
// and zsh completion scripts from the same commands and options.
package docs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herdproject/herd/cmd/internal/cli"
)

// Completion file names: bash-completion loads completions/herd (the
// packages install herd.bash under that name), zsh's compinit reads _herd
// from its fpath.
const (
	BashFile = "herd.bash"
	ZshFile  = "_herd"
)

// Write writes every man page (NAME.SECTION) into manDir and the bash and
// zsh completions into completionDir; an empty directory name skips
// that part. The pages carry this binary's version and commit date
// (cli.ReadBuildInfo).
func Write(ctx context.Context, manDir, completionDir string) error {
	roots, err := Commands(ctx)
	if err != nil {
		return err
	}
	if manDir != "" {
		bi := cli.ReadBuildInfo()
		date := bi.Date
		if len(date) > 10 {
			date = date[:10] // YYYY-MM-DD
		}
		if err := os.MkdirAll(manDir, 0o755); err != nil {
			return fmt.Errorf("man pages: %w", err)
		}
		for _, p := range ManPages(roots, bi.Version, date) {
			if err := os.WriteFile(filepath.Join(manDir, p.FileName()), p.Roff, 0o644); err != nil {
				return fmt.Errorf("man page: %w", err)
			}
		}
	}
	if completionDir != "" {
		if err := os.MkdirAll(completionDir, 0o755); err != nil {
			return fmt.Errorf("completions: %w", err)
		}
		for name, script := range map[string][]byte{BashFile: Bash(roots), ZshFile: Zsh(roots)} {
			if err := os.WriteFile(filepath.Join(completionDir, name), script, 0o644); err != nil {
				return fmt.Errorf("completion: %w", err)
			}
		}
	}
	return nil
}
