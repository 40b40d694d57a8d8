package digest

import "sync"

// ConcurrentMin is the smallest write Concurrent hashes on several
// goroutines: below it a hand-off costs more than it saves.
const ConcurrentMin = 64 << 10

// Concurrent feeds the same stream to several hashes at once (herd image
// info and capture compute the SHA-256 and the tree digest in one pass):
// a write of ConcurrentMin bytes or more goes to the first hash on the
// caller's goroutine and to each other one on a goroutine of its own, so
// that the pass takes as long as the slowest hash, not the sum of them.
// Write returns once every hash has all of it.
type Concurrent []Hash

// Write adds p to every hash.
func (c Concurrent) Write(p []byte) (int, error) {
	if len(c) <= 1 || len(p) < ConcurrentMin {
		for _, h := range c {
			h.Write(p)
		}
		return len(p), nil
	}
	var wg sync.WaitGroup
	for _, h := range c[1:] {
		wg.Go(func() { h.Write(p) })
	}
	c[0].Write(p)
	wg.Wait()
	return len(p), nil
}

// Zeros adds n zero bytes to every hash, one after the other: a hole
// costs the tree digest nothing, so there is no one to wait for.
func (c Concurrent) Zeros(n int64) {
	for _, h := range c {
		h.Zeros(n)
	}
}
