package source

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/plan"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeCache writes the digest cache of the file at p as it is now.
func writeCache(t *testing.T, p, digest string) DigestCache {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDigestCache(fi, digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write(p); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDigestCache: a digest cache is found while the file is as it was
// and ignored (ErrStaleDigestCache) once it was touched, grown, replaced
// or chmod'ed; a missing one is ErrNoDigestCache, a damaged or unknown one
// another error.
func TestDigestCache(t *testing.T) {
	content := pattern(100<<10, 1)
	for _, c := range []struct {
		name   string
		change func(t *testing.T, p string)
		want   error // nil: found
	}{
		{"unchanged", func(*testing.T, string) {}, nil},
		{"touched", func(t *testing.T, p string) {
			if err := os.Chtimes(p, time.Now(), time.Now().Add(-time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, ErrStaleDigestCache},
		{"grown", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte{1})
			f.Close()
		}, ErrStaleDigestCache},
		{"replaced", func(t *testing.T, p string) {
			writeFile(t, p+".new", content)
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}, ErrStaleDigestCache},
		{"ctime differs", func(t *testing.T, p string) {
			// What a write with the mtime put back leaves (when the
			// clock ticked between the write and the cache).
			b, _ := os.ReadFile(p + DigestCacheSuffix)
			d, err := ParseDigestCache(b)
			if err != nil {
				t.Fatal(err)
			}
			d.CtimeNs--
			if err := d.Write(p); err != nil {
				t.Fatal(err)
			}
		}, ErrStaleDigestCache},
		{"no cache", func(t *testing.T, p string) { os.Remove(p + DigestCacheSuffix) }, ErrNoDigestCache},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			writeFile(t, p, content)
			want := writeCache(t, p, sha(content))
			c.change(t, p)
			src, err := Open(plan.File{Input: p})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			got, err := src.DigestCache()
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("DigestCache: %v", err)
			case c.want == nil && !reflect.DeepEqual(got, want):
				t.Errorf("DigestCache = %+v, want %+v", got, want)
			case c.want != nil && !errors.Is(err, c.want):
				t.Errorf("DigestCache: %v, want %v", err, c.want)
			}
		})
	}
}

// TestDigestCacheNotApplicable: a stream that is not the file's bytes has
// none, and damaged caches are refused.
func TestDigestCacheNotApplicable(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	writeFile(t, p, []byte("data"))
	writeCache(t, p, sha([]byte("data")))
	gz, err := Open(plan.File{Input: p, CompressedOut: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	if _, err := gz.DigestCache(); !errors.Is(err, ErrNoDigestCache) {
		t.Errorf("gzipped on the fly: %v, want ErrNoDigestCache", err)
	}
	src, err := Open(plan.File{Input: p})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for _, c := range []struct{ name, body, want string }{
		{"version 2", `{"version":2,"sha256":"` + sha(nil) + `"}`, "version 2"},
		{"upper-case digest", `{"version":1,"sha256":"` + strings.ToUpper(sha(nil)) + `"}`, "not a SHA-256"},
		{"short digest", `{"version":1,"sha256":"abcd"}`, "not a SHA-256"},
		{"not json", `version=1`, "digest cache"},
		{"decoded without compression", `{"version":1,"sha256":"` + sha(nil) + `","decoded":{"sha256":"` + sha(nil) + `"}}`, "without a compression"},
	} {
		if err := os.WriteFile(p+DigestCacheSuffix, []byte(c.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := src.DigestCache()
		if err == nil || errors.Is(err, ErrNoDigestCache) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// FuzzDigestSidecar: the decoder never panics, and what it accepts
// encodes and decodes to the same cache.
func FuzzDigestSidecar(f *testing.F) {
	d := DigestCache{Version: 1, Size: 4 << 30, MtimeNs: 1765000000123456789, CtimeNs: 1765000000123456790, Dev: 2049, Ino: 1234, SHA256: sha([]byte("raw"))}
	b, _ := json.Marshal(d)
	f.Add(b)
	d.Decoded = &DecodedDigest{Compression: "zst", Size: 8 << 30, SHA256: sha([]byte("decoded"))}
	b, _ = json.Marshal(d)
	f.Add(b)
	f.Add([]byte(`{"version":1,"size":-1,"sha256":""}`))
	f.Add([]byte(`{"version":1,"decoded":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDigestCache(b)
		if err != nil {
			return
		}
		if d.Version != DigestCacheVersion || d.Size < 0 || len(d.SHA256) != 64 {
			t.Fatalf("accepted %+v", d)
		}
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDigestCache(again)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", d, again, d2, err)
		}
	})
}
