package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: TData, File: 3, Offset: 1 << 40, Length: 1 << 20},
		{Type: THole, File: 0, Offset: 4096, Length: 8192},
		{Type: TFileStart, File: 7},
		{Type: TFileEnd, File: 7, Offset: 12345},
		{Type: TEnd},
		{Type: TSetup, Length: 100},
	} {
		var b [HeaderSize]byte
		h.Put(b[:])
		got, err := ParseHeader(b[:])
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		if got != h {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := func(h Header) []byte {
		b := make([]byte, HeaderSize)
		h.Put(b)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", []byte("HD"), ErrLength},
		{"magic", append([]byte("XX"), good(Header{Type: TEnd})[2:]...), ErrMagic},
		{"version", func() []byte { b := good(Header{Type: TEnd}); b[2] = 9; return b }(), ErrVersion},
		{"type", func() []byte { b := good(Header{Type: TEnd}); b[3] = 0x7f; return b }(), ErrType},
		{"empty data", good(Header{Type: TData}), ErrLength},
		{"huge data", good(Header{Type: TData, Length: MaxData + 1}), ErrLength},
		{"empty hole", good(Header{Type: THole}), ErrLength},
		{"huge message", good(Header{Type: TSetup, Length: MaxMsg + 1}), ErrLength},
		{"payload on end", good(Header{Type: TEnd, Length: 1}), ErrLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeader(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMessages(t *testing.T) {
	var buf bytes.Buffer
	in := Setup{Session: "s1", Hosts: []string{"a", "b"}, Files: []SetupFile{{Output: "/x", Size: 5}}, ChunkSize: 4096}
	if err := WriteMsg(&buf, TSetup, in); err != nil {
		t.Fatal(err)
	}
	if err := WriteMsg(&buf, TFail, Fail{Reason: "disk full"}); err != nil {
		t.Fatal(err)
	}
	var out Setup
	if err := Expect(&buf, TSetup, &out); err != nil {
		t.Fatal(err)
	}
	if out.Session != "s1" || len(out.Hosts) != 2 || out.Files[0].Output != "/x" {
		t.Errorf("decoded %+v", out)
	}
	var r Ready
	err := Expect(&buf, TReady, &r)
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Reason != "disk full" {
		t.Fatalf("a Fail in place of Ready: got %v", err)
	}
	if _, _, err := ReadMsg(&buf); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

// FuzzReadMsg feeds arbitrary bytes to the frame decoder: it must never
// panic, and whatever it accepts must re-encode to the same header.
func FuzzReadMsg(f *testing.F) {
	var b bytes.Buffer
	_ = WriteMsg(&b, TSetup, Setup{Session: "x"})
	f.Add(b.Bytes())
	var h [HeaderSize]byte
	Header{Type: TData, Length: 3}.Put(h[:])
	f.Add(append(h[:], 1, 2, 3))
	Header{Type: THole, Length: 4096, Offset: 10}.Put(h[:])
	f.Add(h[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		if hd, err := ParseHeader(data); err == nil {
			var re [HeaderSize]byte
			hd.Put(re[:])
			if !bytes.Equal(re[:], data[:HeaderSize]) {
				t.Fatalf("re-encoded header differs")
			}
			if hd.PayloadLen() < 0 || hd.PayloadLen() > MaxData {
				t.Fatalf("payload length %d", hd.PayloadLen())
			}
		}
		r := bytes.NewReader(data)
		for range 4 {
			hd, body, err := ReadMsg(r)
			if err != nil {
				return
			}
			if len(body) != int(hd.Length) {
				t.Fatalf("body %d bytes, header says %d", len(body), hd.Length)
			}
			var s Setup
			_ = Expect(bytes.NewReader(nil), TSetup, &s)
		}
	})
}
