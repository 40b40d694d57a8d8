package relay

import (
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/wire"
)

// TestCheckDigest: a node takes the digests it computes ("" is SHA-256,
// from senders older than Setup.Digest) and refuses others at set-up,
// saying what to do.
func TestCheckDigest(t *testing.T) {
	n := &Node{}
	for _, tc := range []struct {
		digest string
		want   string // in the error; "" = accepted
	}{
		{"", ""},
		{"sha256", ""},
		{"tree", ""},
		{"blake2", `the sender asks for a digest this node does not compute: unknown digest "blake2"`},
	} {
		err := n.check(&wire.Setup{ChunkSize: 4096, Digest: tc.digest})
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("digest %q: %v, want %q", tc.digest, err, tc.want)
		}
	}
}
