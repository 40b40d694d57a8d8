package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/herdproject/herd/ring/wire"
)

// maxKey bounds a key file.
const maxKey = 4096

// readKeyFile reads a ring key: one line of printable characters without
// spaces (so that it also fits on a kernel command line as herd.key=),
// a trailing newline allowed.
func readKeyFile(flag, path string) (wire.Key, error) {
	if path == "" {
		return nil, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	if st.Size() > maxKey {
		return nil, usagef("%s %s: %d bytes; a key is one line of at most %d", flag, path, st.Size(), maxKey)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	k, err := checkKey(strings.TrimRight(string(b), "\r\n"))
	if err != nil {
		return nil, usagef("%s %s: %v", flag, path, err)
	}
	return k, nil
}

// checkKey accepts a password or key text.
func checkKey(s string) (wire.Key, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty key")
	case len(s) < 8:
		return nil, fmt.Errorf("key of %d characters: use at least 8 (e.g. head -c 24 /dev/urandom | base64 > ring.key)", len(s))
	}
	for i, r := range s {
		if r <= ' ' || r > '~' {
			return nil, fmt.Errorf("character %d of the key is not printable ASCII or is a space (the key must also fit on a kernel command line as herd.key=)", i+1)
		}
	}
	return wire.Key(s), nil
}
