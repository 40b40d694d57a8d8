// Package efivar reads and writes UEFI variables through Linux's efivarfs
// and manages the boot entries the agent installs: a Boot#### load option
// (UEFI 2.10 §3.1.3) whose device path is a Hard Drive Media node followed
// by a File Path node (§10.3.5.1, §10.3.5.4), first place in BootOrder and
// a one-shot BootNext (§3.3).
//
// An efivarfs file is named NAME-GUID and holds the variable's 4-byte
// little-endian attributes followed by its data; each write(2) is one
// SetVariable call, so a variable is always written in a single write.
// Files the kernel does not know to be removable carry FS_IMMUTABLE_FL,
// which is cleared before writing or deleting and set again afterwards.
//
// Everything works on a plain directory too (Vars.Dir), which is how the
// tests run without root or firmware.
//
// It does not use u-root's pkg/efivarfs: that package only opens a
// directory whose statfs magic is efivarfs (so tests cannot use a temp
// directory), fails on ENOTTY from FS_IOC_GETFLAGS, and returns bare
// os.ErrNotExist without the variable's name.
package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultDir is where Linux mounts efivarfs.
const DefaultDir = "/sys/firmware/efi/efivars"

// GlobalGUID is EFI_GLOBAL_VARIABLE, the vendor GUID of Boot####,
// BootOrder and BootNext (UEFI 2.10 §3.3), as efivarfs spells it in file
// names.
const GlobalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// Variable attributes (UEFI 2.10 §8.2.3, SetVariable).
const (
	AttrNonVolatile       uint32 = 0x1
	AttrBootServiceAccess uint32 = 0x2
	AttrRuntimeAccess     uint32 = 0x4
)

// BootAttrs are the attributes AddBootEntry writes Boot####, BootOrder
// and BootNext with, as UEFI 2.10 §3.3 requires for them.
const BootAttrs = AttrNonVolatile | AttrBootServiceAccess | AttrRuntimeAccess

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h (x/sys/unix lacks it).
const fsImmutableFL = 0x10

// ErrMalformed is wrapped by the errors of the decoders (a load option, a
// BootOrder or BootNext value, a GUID, sfdisk output) when the bytes do not
// have the layout the UEFI spec or sfdisk gives them.
var ErrMalformed = errors.New("malformed")

// Vars is an efivarfs directory. Its methods name variables without the
// GUID: they all live under GlobalGUID. The zero value uses DefaultDir.
//
// Vars holds no state, but AddBootEntry reads, changes and writes
// BootOrder: two of them must not run at once on the same directory.
type Vars struct {
	// Dir is the efivarfs mount point; "" means DefaultDir. A plain
	// directory holding files in the same layout works too.
	Dir string
}

// Available reports whether DefaultDir exists and is an efivarfs mount
// (statfs magic 0xde5e81e4): the machine booted through UEFI and the
// kernel exposes its variables.
func Available() bool {
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultDir, &st); err != nil {
		return false
	}
	return uint32(st.Type) == unix.EFIVARFS_MAGIC
}

func (v Vars) dir() string {
	if v.Dir == "" {
		return DefaultDir
	}
	return v.Dir
}

// path returns the file of the global variable name.
func (v Vars) path(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("variable name %q: want a bare name like BootOrder", name)
	}
	return filepath.Join(v.dir(), name+"-"+GlobalGUID), nil
}

// Get returns the attributes and data of the global variable name. A
// variable that does not exist gives an error wrapping fs.ErrNotExist.
func (v Vars) Get(name string) (attrs uint32, data []byte, err error) {
	p, err := v.path(name)
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", name, err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", name, err)
	}
	switch {
	case len(b) == 0:
		// efivarfs shows a variable being created or deleted as an
		// empty file.
		return 0, nil, fmt.Errorf("read %s: empty file %s: %w", name, p, fs.ErrNotExist)
	case len(b) < 4:
		return 0, nil, fmt.Errorf("read %s: %d bytes, want at least the 4 of the attributes: %w", name, len(b), ErrMalformed)
	}
	return binary.LittleEndian.Uint32(b), b[4:], nil
}

// Set writes the global variable name: attrs and data in one write(2),
// creating the variable or replacing its value. It clears the file's
// immutable flag first and sets it again afterwards.
func (v Vars) Set(name string, attrs uint32, data []byte) error {
	p, err := v.path(name)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	finish, err := clearImmutable(p)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer finish(true)

	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	// efivarfs replaces the value on each write and does not want
	// O_TRUNC; a plain file must be emptied or a shorter value would
	// keep the old tail.
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || uint32(st.Type) != unix.EFIVARFS_MAGIC {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	buf := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(data)), attrs)
	buf = append(buf, data...)
	if err := writeOnce(f, buf); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// Remove deletes the global variable name, clearing its immutable flag
// first. A variable that does not exist gives an error wrapping
// fs.ErrNotExist.
func (v Vars) Remove(name string) error {
	p, err := v.path(name)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	finish, err := clearImmutable(p)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil {
		finish(true)
		return fmt.Errorf("delete %s: %w", name, err)
	}
	finish(false)
	return nil
}

// writeOnce writes b to f in exactly one write(2): on efivarfs a second
// write would be a second SetVariable with the rest of the bytes.
func writeOnce(f *os.File, b []byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = unix.Write(int(fd), b)
		return true
	}); err != nil {
		return err
	}
	if werr != nil {
		return &os.PathError{Op: "write", Path: f.Name(), Err: werr}
	}
	if n != len(b) {
		return fmt.Errorf("%s: wrote %d of %d bytes: %w", f.Name(), n, len(b), io.ErrShortWrite)
	}
	return nil
}

// clearImmutable clears FS_IMMUTABLE_FL on the file p if it is set. The
// returned finish must be called once: finish(true) sets the flag again
// if it was set, finish(false) leaves it (the file was deleted). A file
// that does not exist, or a file system without inode flags (ENOTTY,
// EOPNOTSUPP: a plain temp directory on some file systems), counts as not
// immutable.
func clearImmutable(p string) (finish func(restore bool), err error) {
	noop := func(bool) {}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return noop, nil
	}
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		f.Close()
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
			return noop, nil
		}
		return nil, &os.PathError{Op: "ioctl FS_IOC_GETFLAGS", Path: p, Err: err}
	}
	if flags&fsImmutableFL == 0 {
		f.Close()
		return noop, nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFL)); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "ioctl FS_IOC_SETFLAGS", Path: p, Err: err}
	}
	return func(restore bool) {
		if restore {
			// Best effort: efivarfs sets the flag again at the next
			// boot anyway, and the write itself succeeded.
			_ = unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags))
		}
		f.Close()
	}, nil
}
