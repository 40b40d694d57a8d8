package sender

import (
	"strings"
	"testing"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

// TestCheckDigest: a node must echo the session's digest; one that says
// nothing is older than the field and computes SHA-256.
func TestCheckDigest(t *testing.T) {
	for _, tc := range []struct {
		echo string
		alg  digest.Alg
		want string // in the error; "" = accepted
	}{
		{"tree", digest.Tree, ""},
		{"sha256", digest.SHA256, ""},
		{"", digest.SHA256, ""},
		{"", digest.Tree, "the node computes SHA-256, not the tree digest this session verifies with (an older herd?)"},
		{"sha256", digest.Tree, "send with --digest sha256"},
		{"tree", digest.SHA256, "computes tree digest, not the SHA-256"},
	} {
		err := checkDigest(wire.Ready{Digest: tc.echo}, tc.alg)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("echo %q, session %s: %v, want %q", tc.echo, tc.alg, err, tc.want)
		}
	}
}
