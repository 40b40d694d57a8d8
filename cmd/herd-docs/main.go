// Command herd-docs writes herd's man pages and its bash and zsh
// completions, made from the help text the commands print (package
// docs); make docs runs it:
//
//	herd-docs --man bin/man --completion bin/completion
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/herdproject/herd/cmd/internal/docs"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "herd-docs: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("herd-docs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	man := fs.String("man", "", "write the man pages (NAME.SECTION) into `DIR`")
	completion := fs.String("completion", "", "write the bash ("+docs.BashFile+") and zsh ("+docs.ZshFile+") completions into `DIR`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *man == "" && *completion == "" {
		return fmt.Errorf("usage: herd-docs [--man DIR] [--completion DIR] (one of them at least)")
	}
	return docs.Write(ctx, *man, *completion)
}
