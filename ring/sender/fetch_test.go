package sender

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/herdproject/herd/ring/bypass"
	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/wire"
)

// TestFetchSparse: what the sender re-reads for a node after a bypass
// (fetchLocal, the window no longer holding it) is the file's bytes from
// any offset, a hole extent coming as Hole frames without being read.
func TestFetchSparse(t *testing.T) {
	const size = 6<<20 + 5
	in := filepath.Join(t.TempDir(), "in.img")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	r := rand.New(rand.NewChaCha8([32]byte{3}))
	for _, off := range []int64{1 << 20, 4<<20 + 8192} {
		d := make([]byte, 100<<10)
		for i := range d {
			d[i] = byte(r.Uint32())
		}
		clear(d[8192:16384]) // zero blocks inside the data extent
		f.WriteAt(d, off)
		copy(want[off:], d)
	}
	f.Truncate(size)
	f.Close()

	src, err := source.Open(plan.File{Input: in})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s := &session{cfg: Config{ChunkSize: 64 << 10}, id: "fetch", sources: []*source.Source{src}, lens: map[uint32]int64{0: size}, win: bypass.NewWindow(0)}
	for _, from := range []uint64{0, 4096, 1<<20 + 100, 2 << 20, size - 1} {
		var got []byte
		var holes, data int
		to := wire.Position{File: 1}
		err := s.fetchLocal(context.Background(), wire.Position{File: 0, Started: true, Offset: from}, to, func(fr bypass.Frame) error {
			switch fr.H.Type {
			case wire.TData:
				data += len(fr.Payload)
				got = append(got, fr.Payload...)
			case wire.THole:
				holes++
				got = append(got, make([]byte, fr.H.Length)...)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		if !bytes.Equal(got, want[from:]) {
			t.Errorf("from %d: %d bytes, differ from the file's %d", from, len(got), size-from)
		}
		// Each hole extent is one Hole frame (read in chunks, the 3 MiB
		// hole would be 48), plus the zero blocks of the data extents.
		if data > 200<<10 || holes == 0 || holes > 6 {
			t.Errorf("from %d: %d bytes of Data frames, %d Hole frames: holes were read", from, data, holes)
		}
	}
}
