//go:build ringtest

package ringtest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestDollyClassicCompressedSplit runs dolly's classic configuration
// keywords as real sessions: "compressed infile" (nodes gunzip),
// "compressed outfile" (the sender gzips, nodes store gzip) and "split" on
// both sides (Input_0, Input_1, ... read in order; Output_0, ... of at most
// the split size written).
func TestDollyClassicCompressedSplit(t *testing.T) {
	dir := workDir(t)
	raw := filepath.Join(dir, "raw.img")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeRandom(f, 5<<20, 61); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 2<<20)); err != nil { // a hole inside the image
		t.Fatal(err)
	}
	if err := writeRandom(f, 1<<20+17, 62); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rawBytes, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(rawBytes)
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "raw.img.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The split input: raw.img split in three parts.
	for i, part := range [][]byte{rawBytes[:3<<20], rawBytes[3<<20 : 6<<20], rawBytes[6<<20:]} {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("parts_%d", i)), part, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name     string
		in, out  string
		check    func(t *testing.T, nodeDir string)
		nodeNums []int
	}{
		{"compressed infile", "compressed infile " + filepath.Join(dir, "raw.img.gz"), "outfile out.img",
			func(t *testing.T, d string) { sameBytes(t, rawBytes, readFile(t, filepath.Join(d, "out.img"))) }, []int{41, 42}},
		{"compressed outfile", "infile " + raw, "compressed outfile out.img.gz",
			func(t *testing.T, d string) { sameBytes(t, rawBytes, gunzip(t, filepath.Join(d, "out.img.gz"))) }, []int{43, 44}},
		{"split in and out", "infile " + filepath.Join(dir, "parts") + " split", "outfile out.img split 2M",
			func(t *testing.T, d string) {
				// 8 MiB + 17 bytes in 2 MiB parts: four full parts and 17 bytes.
				var all []byte
				for i := 0; i < 5; i++ {
					p := readFile(t, filepath.Join(d, fmt.Sprintf("out.img_%d", i)))
					if want := min(2<<20, len(rawBytes)-i*(2<<20)); len(p) != want {
						t.Errorf("out.img_%d is %d bytes, want %d", i, len(p), want)
					}
					all = append(all, p...)
				}
				if _, err := os.Stat(filepath.Join(d, "out.img_5")); err == nil {
					t.Error("out.img_5 exists: one part too many")
				}
				sameBytes(t, rawBytes, all)
			}, []int{45, 46}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, fmt.Sprintf("run-%d", tt.nodeNums[0]))
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := fmt.Sprintf("%s\n%s\nserver mgmt\nfirstclient node%d\nlastclient node%d\nclients 2\nnode%d\nnode%d\nendconfig\n",
				tt.in, tt.out, tt.nodeNums[0], tt.nodeNums[1], tt.nodeNums[0], tt.nodeNums[1])
			cfgPath := filepath.Join(sub, "dolly.cfg")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			nodes := startNodes(t, sub, addrs(tt.nodeNums...), nodeOpts{prog: "dolly"})
			r := send(t, sub, 0, "dolly", "-v", "-S", "herdtest", "-f", cfgPath)
			wantExit(t, r, 0)
			allDone(t, r, []string{fmt.Sprintf("node%d", tt.nodeNums[0]), fmt.Sprintf("node%d", tt.nodeNums[1])})
			waitExit(t, nodes, 0)
			for _, n := range nodes {
				tt.check(t, n.dir)
			}
		})
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gunzip(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not gzip: %v", p, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip %s: %v", p, err)
	}
	return b
}

func sameBytes(t *testing.T, want, got []byte) {
	t.Helper()
	if !bytes.Equal(want, got) {
		t.Errorf("content differs: got %d bytes, want %d", len(got), len(want))
	}
}
