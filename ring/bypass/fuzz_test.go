package bypass

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/herdproject/herd/ring/wire"
)

// FuzzReadFrame feeds arbitrary bytes to ReadFrame, with and without a
// key: it must never panic, and a frame it accepts must re-encode (Write)
// to the bytes it was read from and read back the same.
func FuzzReadFrame(f *testing.F) {
	m := testMAC()
	enc := func(fs ...Frame) []byte {
		var buf bytes.Buffer
		for _, fr := range fs {
			if err := fr.Write(&buf); err != nil {
				f.Fatal(err)
			}
		}
		return buf.Bytes()
	}
	plain := twoFiles()
	keyed := sealAll(plain, m)
	for i := range plain {
		f.Add(enc(plain[i]))
		f.Add(enc(keyed[i]))
	}
	f.Add(enc(plain...))
	f.Add(enc(keyed...))
	cut, _ := keyed[1].From(wire.Position{Started: true, Offset: 7}, m)
	f.Add(enc(cut))
	var msg bytes.Buffer
	_ = wire.WriteMsg(&msg, wire.THello, wire.Hello{})
	f.Add(msg.Bytes())
	f.Add([]byte{})
	f.Add([]byte("HD"))
	f.Add([]byte("not a herd frame at all, just some garbage bytes"))
	f.Add(append(enc(keyed[1])[:wire.HeaderSize+3], 0xff, 0xfe))
	bad := enc(keyed[1])
	bad[len(bad)-1] ^= 1
	f.Add(bad)

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, mm := range []*wire.FrameMAC{nil, testMAC()} {
			rest := data
			br := bufio.NewReader(bytes.NewReader(data))
			for range 4 {
				fr, err := ReadFrame(br, mm)
				if err != nil {
					break
				}
				checkFrame(t, fr, mm, rest)
				rest = rest[wire.HeaderSize+len(fr.Payload)+len(fr.MAC):]
			}
		}
	})
}

// checkFrame checks a frame ReadFrame accepted from the start of in.
func checkFrame(t *testing.T, fr Frame, m *wire.FrameMAC, in []byte) {
	t.Helper()
	switch fr.H.Type {
	case wire.TData, wire.THole, wire.TFileStart, wire.TFileEnd, wire.TEnd:
	default:
		t.Fatalf("accepted a %v frame", fr.H.Type)
	}
	if len(fr.Payload) != fr.H.PayloadLen() {
		t.Fatalf("%v frame: %d payload bytes, header says %d", fr.H.Type, len(fr.Payload), fr.H.PayloadLen())
	}
	sealedFlag := fr.H.Flags&wire.FlagMAC != 0
	switch {
	case m == nil && (sealedFlag || fr.MAC != nil):
		t.Fatalf("no key, but accepted flags %#x MAC %x", fr.H.Flags, fr.MAC)
	case m != nil && (!sealedFlag || len(fr.MAC) != wire.MACSize):
		t.Fatalf("key, but accepted flags %#x MAC %x", fr.H.Flags, fr.MAC)
	}
	var buf bytes.Buffer
	if err := fr.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(in, buf.Bytes()) {
		t.Fatalf("re-encoded %x, read from %x", buf.Bytes(), in[:min(len(in), buf.Len())])
	}
	again, err := ReadFrame(bufio.NewReader(&buf), m)
	if err != nil {
		t.Fatalf("reading back the re-encoded %+v: %v", fr.H, err)
	}
	if again.H != fr.H || !bytes.Equal(again.Payload, fr.Payload) || !bytes.Equal(again.MAC, fr.MAC) {
		t.Fatalf("read back %+v, wrote %+v", again.H, fr.H)
	}
}
