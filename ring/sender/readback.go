package sender

import (
	"strings"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

// readbackProblem judges file f's read-back verification (Config.Verify
// == wire.VerifyReadback, herd send/serve --verify readback) against the
// sender's digest want: "" when it passed or does not apply, else the
// reason the node fails. A node whose disk returns other bytes than were
// written fails "read-back mismatch", one that could not re-read its
// output "read-back failed", one that did not try (an older node, a file
// it did not finish) "read-back not done". Outputs that cannot be re-read
// as the stream (an unpacked archive, standard output, dummy mode) come
// with a "not applicable: ..." method and pass. A file that failed on its
// own (f.Error) is judged by that, not here.
func readbackProblem(verify string, f wire.FileResult, want string, alg digest.Alg) string {
	switch {
	case verify != wire.VerifyReadback, f.Error != "":
		return ""
	case strings.HasPrefix(f.ReadbackMethod, "not applicable"):
		return ""
	case f.ReadbackError != "":
		return "read-back failed: " + f.ReadbackError
	case f.ReadbackMethod == "":
		return "read-back not done"
	case f.ReadbackDigest == "":
		return "read-back failed: the node reported no digest (" + f.ReadbackMethod + ")"
	case f.ReadbackDigest != want:
		return "read-back mismatch: wrote " + alg.Title() + " " + short(want) + ", read back " + short(f.ReadbackDigest) + " (" + f.ReadbackMethod + ")"
	}
	return ""
}
