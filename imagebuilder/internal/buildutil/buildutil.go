// Package buildutil holds what herd's image builders (golden, debimage)
// share: finding the host tools they run, refusing outputs that exist,
// random identifiers for file systems, copying files, tar modes.
package buildutil

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Tool is a host program a builder runs.
type Tool struct {
	// Name is the program (looked up in PATH, then the sbin and bin
	// directories) or an absolute path for a file.
	Name string
	// Package is the Debian package that has it.
	Package string
}

// LookTool finds a tool: an absolute path as it is, a name in PATH or in
// the sbin directories (which an ordinary user's PATH may lack).
func LookTool(name string) (string, error) {
	if filepath.IsAbs(name) {
		if _, err := os.Stat(name); err != nil {
			return "", err
		}
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// CheckTools returns an error naming every missing tool and the Debian
// packages to install, nil when all are there.
func CheckTools(tools []Tool) error {
	var missing []string
	pkgs := map[string]bool{}
	for _, t := range tools {
		if _, err := LookTool(t.Name); err != nil {
			missing = append(missing, t.Name)
			pkgs[t.Package] = true
		}
	}
	if len(missing) == 0 {
		return nil
	}
	list := make([]string, 0, len(pkgs))
	for p := range pkgs {
		list = append(list, p)
	}
	sort.Strings(list)
	return fmt.Errorf("missing %s: install them: apt-get install %s", strings.Join(missing, ", "), strings.Join(list, " "))
}

// ErrExists is wrapped by CheckOutput's error for an output that exists.
var ErrExists = errors.New("output exists")

// CheckOutput refuses an output that is not a regular file, or that
// exists without force; what names the kind of file wanted ("an image
// file").
func CheckOutput(path string, force bool, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file: give the name of %s", path, what)
	}
	if !force {
		return fmt.Errorf("%s: %w: give --force to replace it, or another name", path, ErrExists)
	}
	return nil
}

// RandomVolumeID returns a non-zero 32-bit ID (a FAT volume ID).
func RandomVolumeID() (uint32, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if v := binary.LittleEndian.Uint32(b[:]); v != 0 {
			return v, nil
		}
	}
}

// CopyFile copies the regular file src to dst with the given mode
// (whatever the umask).
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chmod(mode); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TarMode is a file mode as tar stores it: the permissions and the
// setuid, setgid and sticky bits (c_ISUID, c_ISGID, c_ISVTX).
func TarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}
