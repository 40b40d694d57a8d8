// Package uuid makes random (version 4) UUIDs: for file systems and
// partitions of built images, network profiles and machine IDs of
// installed nodes.
package uuid

import (
	"crypto/rand"
	"fmt"
)

// Random returns 16 random bytes marked as a version 4 (random), variant 1
// UUID, as util-linux's uuidgen and systemd's sd_id128_randomize make them.
func Random() ([16]byte, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return b, err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b, nil
}

// New returns a random UUID in its text form (8-4-4-4-12 lower-case hex
// digits).
func New() (string, error) {
	b, err := Random()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
