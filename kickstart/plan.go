// Package kickstart parses install plans -- a subset of Red Hat's
// kickstart, with herd's own commands, and ka-deploy partition
// descriptions -- into one Plan that the agent executes: partitions,
// filesystems, which ring file goes where, the bootloader, %pre and %post.
//
// Kickstart commands keep Red Hat's syntax and meaning (sizes in MiB,
// options as --name=value or --name value). A known kickstart command herd
// does not carry out is a warning naming it; an unknown word is an error
// with its file and line.
package kickstart

import "fmt"

// Plan is an install plan.
type Plan struct {
	// ClearPart is clearpart; nil when absent.
	ClearPart *ClearPart
	// ZeroMBR is zerombr: initialise unreadable partition tables.
	ZeroMBR bool
	// OnlyUse is ignoredisk --only-use=: the disks the plan may touch.
	OnlyUse []string
	// Parts are the partitions, in order (part, or a ka-deploy
	// description).
	Parts []Part
	// Bootloader is bootloader; nil when absent (no bootloader change).
	Bootloader *Bootloader
	// Network are the network commands.
	Network []Network
	// RootPW is rootpw; nil when absent.
	RootPW *RootPW
	// Timezone is timezone's zone ("" when absent), UTC its --utc/--isUtc.
	Timezone string
	UTC      bool
	// Finish is what to do at the end: "reboot" (default), "poweroff"
	// or "halt"; Kexec (herd's kexec) boots the installed kernel
	// directly instead.
	Finish string
	Kexec  bool
	// Images are herd's image commands: which ring file goes where.
	Images []Image
	// Pre and Post are the %pre and %post scripts, in order.
	Pre, Post []Script
	// Warnings name what the plan says that herd does not do.
	Warnings []Warning
}

// ClearPart is clearpart: which partitions to remove first.
type ClearPart struct {
	// All is --all; Drives is --drives= (nil: every disk herd may use).
	All    bool
	Drives []string
	// InitLabel is --initlabel (a new, empty partition table).
	InitLabel bool
	// DiskLabel is --disklabel=: "gpt" or "dos" (msdos); "" = herd
	// picks (gpt on UEFI machines and disks over 2 TiB, else dos).
	DiskLabel string
	Line      int
}

// Kind is a partition's kind in an MBR table.
type Kind int

// Partition kinds. Any is a kickstart part without --asprimary: the
// executor picks (primary while it can, else logical).
const (
	Any Kind = iota
	Primary
	Extended
	Logical
)

func (k Kind) String() string {
	switch k {
	case Primary:
		return "primary"
	case Extended:
		return "extended"
	case Logical:
		return "logical"
	}
	return "any"
}

// Part is one partition.
type Part struct {
	// Mount is the mount point ("/", "/boot"), "swap", or "" for a
	// partition that is not mounted (a ka-deploy extended partition).
	Mount string
	// FSType is the filesystem: ext4, ext3, ext2, xfs, vfat, swap, or ""
	// (an extended partition).
	FSType string
	// SizeMiB is the size in MiB (with Grow: the minimum).
	SizeMiB int64
	// Grow takes the room left (kickstart --grow, ka-deploy's fill), up
	// to MaxSizeMiB when it is > 0.
	Grow       bool
	MaxSizeMiB int64
	// OnDisk is --ondisk= ("" = the first disk).
	OnDisk string
	Kind   Kind
	Label  string
	// Line is where the partition was described.
	Line int
}

// Bootloader is bootloader.
type Bootloader struct {
	// Location is "mbr" or "none".
	Location string
	// Append is extra kernel command-line arguments.
	Append string
	// Timeout is the boot menu's timeout in seconds; -1 when not given.
	Timeout int
	Line    int
}

// Network is one network command.
type Network struct {
	// BootProto is "dhcp" (herd's only one).
	BootProto string
	Hostname  string
	// Device is the interface ("" = the boot interface).
	Device string
	Line   int
}

// RootPW is rootpw.
type RootPW struct {
	// Password is as given: a crypt(3) hash when Crypted, else clear
	// text; Lock locks the account.
	Password string
	Crypted  bool
	Lock     bool
	Line     int
}

// Image is herd's image command: ring file Source goes to To, a block
// device (written raw) or a mount point of the plan (cooked into the
// mounted filesystem).
type Image struct {
	Source, To string
	Line       int
}

// Script is a %pre or %post section.
type Script struct {
	// NoChroot is --nochroot (a %post run in the installer, not in the
	// new system).
	NoChroot bool
	// Interpreter is --interpreter= ("" = /bin/sh).
	Interpreter string
	Body        string
	// Line is the line of the section's header.
	Line int
}

// Warning is something in a plan herd does not carry out.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string { return fmt.Sprintf("%s:%d: %s", w.File, w.Line, w.Msg) }

// Error is a plan that cannot be used: where, and why.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }
