package sender

import (
	"testing"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

func TestReadbackProblem(t *testing.T) {
	const want = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	good := wire.FileResult{Digest: want, ReadbackDigest: want, ReadbackMethod: "O_DIRECT"}
	for _, tc := range []struct {
		name   string
		verify string
		f      wire.FileResult
		want   string
	}{
		{"matches", wire.VerifyReadback, good, ""},
		{"verify off", "", wire.FileResult{Digest: want}, ""},
		{"verify off, node read back anyway", "", wire.FileResult{Digest: want, ReadbackDigest: other, ReadbackMethod: "O_DIRECT"}, ""},
		{"mismatch", wire.VerifyReadback, wire.FileResult{Digest: want, ReadbackDigest: other, ReadbackMethod: "O_DIRECT"},
			"read-back mismatch: wrote SHA-256 0123456789ab…, read back fedcba987654… (O_DIRECT)"},
		{"failed", wire.VerifyReadback, wire.FileResult{Digest: want, ReadbackError: "read-back of /dev/sda at offset 4096: input/output error"},
			"read-back failed: read-back of /dev/sda at offset 4096: input/output error"},
		{"no digest", wire.VerifyReadback, wire.FileResult{Digest: want, ReadbackMethod: "O_DIRECT"},
			"read-back failed: the node reported no digest (O_DIRECT)"},
		{"not done", wire.VerifyReadback, wire.FileResult{Digest: want}, "read-back not done"},
		{"archive", wire.VerifyReadback, wire.FileResult{Digest: want, ReadbackMethod: "not applicable: unpacked archive"}, ""},
		{"file failed", wire.VerifyReadback, wire.FileResult{Error: "write /dev/sda at offset 0: no space left on device"}, ""},
		{"fallback matches", wire.VerifyReadback, wire.FileResult{Digest: want, ReadbackDigest: want, ReadbackMethod: "buffered after fsync and POSIX_FADV_DONTNEED (O_DIRECT refused)"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readbackProblem(tc.verify, tc.f, want, digest.SHA256); got != tc.want {
				t.Errorf("readbackProblem = %q, want %q", got, tc.want)
			}
		})
	}
}
