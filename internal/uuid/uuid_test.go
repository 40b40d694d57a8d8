package uuid

import (
	"regexp"
	"testing"
)

// Every UUID is version 4, variant 1, in the 8-4-4-4-12 form, and two are
// never the same.
func TestNew(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		u, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if !form.MatchString(u) {
			t.Fatalf("%q is not a version 4 UUID", u)
		}
		if seen[u] {
			t.Fatalf("%q made twice", u)
		}
		seen[u] = true
	}
}
