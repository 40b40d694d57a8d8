package httpboot

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"

	"github.com/herdproject/herd/pxe/bootlayout"
)

var (
	errOutside  = errors.New("outside the boot tree")
	errNotFound = errors.New("no such file")
)

// cleanPath maps a requested path to one relative to the boot tree
// (bootlayout.Rel) with this package's errors.
func cleanPath(p string) (string, error) {
	rel, err := bootlayout.Rel(p)
	switch {
	case errors.Is(err, bootlayout.ErrOutside):
		return "", errOutside
	case err != nil:
		return "", errNotFound
	}
	return rel, nil
}

// serveFile answers GET /files/<path> with http.ServeContent: Range,
// If-Modified-Since and HEAD as net/http implements them. Directories
// are not listed.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request) {
	name, err := cleanPath(r.PathValue("path"))
	if err != nil {
		h.refuseFile(w, r, err)
		return
	}
	f, err := h.root.Open(name)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			err = errNotFound
		default: // escapes through a symlink, permissions, loops
			h.log.Warn(fmt.Sprintf("httpboot: %s %s: %v", r.RemoteAddr, r.URL.Path, err))
			err = errOutside
		}
		h.refuseFile(w, r, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		h.refuseFile(w, r, errNotFound)
		return
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func (h *Handler) refuseFile(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errOutside) {
		h.log.Warn(fmt.Sprintf("httpboot: %s %s: refused: %v", r.RemoteAddr, r.URL.Path, err))
		http.Error(w, "403 forbidden: outside the boot tree", http.StatusForbidden)
		return
	}
	http.NotFound(w, r)
}
