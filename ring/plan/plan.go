// Package plan describes a ring session: which files travel, where each node
// writes them, and in which order (chain or tree) the nodes pass the stream on.
//
// A Session is what the sender knows before it contacts any node; it is built
// from dolly's, openSUSE dolly's or dolly+'s configuration files (package
// dollyconf) or from command-line flags.
package plan

import (
	"errors"
	"fmt"
	"path"
)

// Mode says how a node treats a file's bytes.
type Mode int

const (
	// Raw writes the bytes as they arrive (dolly+'s "in > out").
	Raw Mode = iota
	// Cooked decodes the bytes according to the input's name before writing
	// (dolly+'s "in >> out": .gz, .zst, .xz, .Z, .tar, .cpio and their
	// combinations); archives unpack under Output, a directory.
	Cooked
)

func (m Mode) String() string {
	switch m {
	case Raw:
		return ">"
	case Cooked:
		return ">>"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// File is one input on the sender and its output on every node.
type File struct {
	// Input is the path on the sender (file, block device). Empty when Dirs
	// is set.
	Input string
	// Output is the path on the nodes: a regular file, a block device, "-"
	// for standard output, or a directory for cooked archives and Dirs.
	Output string
	// Mode is Raw or Cooked.
	Mode Mode

	// CompressedIn is dolly's "compressed infile": Input is gzip-compressed
	// and nodes gunzip it before writing (unless CompressedOut is also set).
	CompressedIn bool
	// CompressedOut is dolly's "compressed outfile": the sender gzips the
	// stream (unless it is already compressed) and nodes store it as is.
	CompressedOut bool
	// SplitIn is dolly's "infile ... split": the sender reads Input_0,
	// Input_1, ... in order until the next one does not exist.
	SplitIn bool
	// SplitOut, when > 0, is dolly's "outfile ... split SIZE": nodes write
	// Output_0, Output_1, ... of at most SplitOut bytes each. 0 = no split.
	SplitOut int64

	// Dirs, when set, is openSUSE dolly's -D: the sender streams these
	// directories as one tar archive and nodes unpack it under Output.
	Dirs []string
	// Exclude lists names or shell patterns (-X) left out of Dirs.
	Exclude []string

	// Mount, when set, makes the file a stage2 (the Mandriva guide's
	// two-stage flow): a filesystem image (squashfs, ext4, ISO 9660) that
	// herd agents keep in RAM -- Output is a brd ramdisk such as
	// /dev/ram0, or a file on a tmpfs -- and mount at this absolute path
	// once the sender verified it; its tools serve the steps after it.
	Mount string
}

// Session is a whole session as the sender sees it: its files, hosts and
// ring shape (the session plan).
type Session struct {
	// Files are sent in order, in one stream.
	Files []File
	// Hosts are the clients in ring order, as written (names or addresses
	// of the interfaces that receive the data).
	Hosts []string
	// Server is the sender's name as the configuration file gives it; empty
	// when none was given.
	Server string
	// Fanout is the number of children of the sender and of every inner
	// node: 1 (or 0) is a chain, 2 a binary tree, and so on.
	Fanout int
	// SegSize is dolly's "segsize": TCP_MAXSEG for data connections in
	// bytes; 0 leaves the system default.
	SegSize int
	// Add lists dolly's "add" interface suffixes (e.g. "-fast"): the data
	// connections are spread over the hosts' extra interfaces.
	Add []string
	// HyphenNormal is dolly's "hyphennormal": '-' in host names is an
	// ordinary character rather than the separator of an interface suffix.
	HyphenNormal bool
}

// Validate reports the first inconsistency of a plan: no files, no hosts,
// a file without input or output, a bad fanout.
func (p *Session) Validate() error {
	if len(p.Files) == 0 {
		return errors.New("no file to send: give an input (-I) or an infile/iofiles line")
	}
	if len(p.Hosts) == 0 {
		return errors.New("no host to send to: give -H or the client names")
	}
	if p.Fanout < 0 {
		return fmt.Errorf("fanout %d: must be 1 (a chain) or more (a tree)", p.Fanout)
	}
	for i, f := range p.Files {
		if f.Input == "" && len(f.Dirs) == 0 {
			return fmt.Errorf("file %d: no input", i+1)
		}
		if f.Output == "" {
			return fmt.Errorf("file %d (%s): no output", i+1, f.Input)
		}
		if f.SplitOut < 0 {
			return fmt.Errorf("file %d (%s): negative split size", i+1, f.Input)
		}
		if f.Mount != "" {
			switch {
			case !path.IsAbs(f.Mount) || path.Clean(f.Mount) == "/":
				return fmt.Errorf("file %d (%s): stage2 mount point %q: want an absolute directory other than /", i+1, f.Input, f.Mount)
			case f.Output == "-" || f.SplitOut > 0 || len(f.Dirs) > 0 || f.CompressedOut:
				return fmt.Errorf("file %d (%s): a stage2 is one filesystem image written whole to a ramdisk or file (no -, split, directories or compressed output)", i+1, f.Input)
			}
		}
	}
	return nil
}

// Children returns, for a tree of n nodes with the given fanout, the
// children of the sender (index -1) or of node i, in order. Nodes are
// numbered breadth-first: the sender feeds nodes 0..k-1, node i feeds
// k*(i+1) .. k*(i+1)+k-1. A fanout of 0 or 1 is a chain.
func Children(n, fanout, i int) []int {
	if fanout < 1 {
		fanout = 1
	}
	first := fanout * (i + 1)
	var out []int
	for c := first; c < first+fanout && c < n; c++ {
		out = append(out, c)
	}
	return out
}

// Parent returns the parent of node i in the tree Children describes, or -1
// when the sender feeds it.
func Parent(fanout, i int) int {
	if fanout < 1 {
		fanout = 1
	}
	return i/fanout - 1
}
