package digest

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
)

// Parallel computes the tree digest of a stream with its leaves hashed
// concurrently, each by one of its worker goroutines: leaf i by worker
// i mod workers, in the order its bytes came. One core hashes BLAKE3 at
// about 3.5 to 4 GB/s, as much as a 25 GbE link delivers and less than a
// node also has to copy: several workers keep the hash off a node's
// critical path on a machine with the cores to run them.
//
// The digest is Tree's, bit for bit. Unlike a Hash, Parallel does not
// copy or finish with the bytes it is given before Write returns: it
// calls Write's done once it has hashed them, and the caller must leave
// them unchanged until then. Whole leaves of zeros are not handed to a
// worker (their digest is ZeroLeaf). The methods are for one goroutine;
// done runs on a worker's.
type Parallel struct {
	workers []chan piece
	wg      sync.WaitGroup // the workers, until Close

	leaf int64 // index of the current leaf
	in   int64 // bytes of the current leaf so far
	n    int64 // the stream's length so far

	pending sync.WaitGroup // leaves (runs of them) not yet folded

	mu   sync.Mutex
	next int64         // the next leaf to fold into root
	held map[int64]run // leaf digests that came before their turn
	root *blake3.Hasher
}

// run is n leaves in a row with digest d: one leaf, or a hole's zero
// leaves, however many, in one entry.
type run struct {
	d [Size]byte
	n int64
}

// piece is part of one leaf for its worker: data (b), or zeros of a hole
// (zeros), or neither; end says the leaf ends after it.
type piece struct {
	leaf  int64
	b     []byte
	zeros int64
	end   bool
	done  func()
}

// Workers is the number of goroutines a node gives a tree digest's
// leaves: one for every two cores, the other half being for the copies
// (socket reads, writes to the disk and downstream) and the kernel, and
// up to four (about 14 GB/s, a 100 GbE link). On two cores one hasher
// keeps up, and a second one only adds hand-offs (loopback, 1 GiB: node
// 1.015 CPU-s/GiB with one, 1.050 with two).
func Workers() int { return max(min(runtime.NumCPU()/2, 4), 1) }

// NewParallel starts a tree digest with workers goroutines (at least 1);
// Close stops them.
func NewParallel(workers int) *Parallel {
	p := &Parallel{held: map[int64]run{}, root: blake3.NewDeriveKey(RootContext)}
	for range max(workers, 1) {
		ch := make(chan piece, 16)
		p.workers = append(p.workers, ch)
		p.wg.Add(1)
		go p.work(ch)
	}
	return p
}

// Workers is the number of worker goroutines.
func (p *Parallel) Workers() int { return len(p.workers) }

// Write adds b to the stream and calls done (if not nil) once, after the
// last of b was hashed. b must not change until then.
func (p *Parallel) Write(b []byte, done func()) {
	if len(b) == 0 {
		if done != nil {
			done()
		}
		return
	}
	// One call of done after every piece: a count when b spans leaves.
	if done != nil && int64(len(b)) > LeafSize-p.in {
		var left atomic.Int64
		left.Store(1 + (int64(len(b))-(LeafSize-p.in)+LeafSize-1)/LeafSize)
		d := done
		done = func() {
			if left.Add(-1) == 0 {
				d()
			}
		}
	}
	for len(b) > 0 {
		k := min(int64(len(b)), LeafSize-p.in)
		p.in += k
		p.n += k
		p.send(piece{b: b[:k], end: p.in == LeafSize, done: done})
		b = b[k:]
	}
}

// Zeros adds n zero bytes (a hole) to the stream. Whole leaves of them
// cost nothing, and take one entry of memory until their turn to be
// folded comes, however many there are.
func (p *Parallel) Zeros(n int64) {
	for n > 0 {
		if k := n / LeafSize; p.in == 0 && k > 0 {
			p.pending.Add(1)
			p.fold(p.leaf, run{ZeroLeaf, k})
			p.leaf += k
			p.n += k * LeafSize
			n -= k * LeafSize
			continue
		}
		k := min(n, LeafSize-p.in)
		n -= k
		p.n += k
		p.in += k
		p.send(piece{zeros: k, end: p.in == LeafSize})
	}
}

// send hands pc to the current leaf's worker, which is told about the
// leaf when its first piece comes, and moves on to the next leaf after
// the last.
func (p *Parallel) send(pc piece) {
	if p.in == int64(len(pc.b))+pc.zeros { // the leaf's first piece
		p.pending.Add(1)
	}
	pc.leaf = p.leaf
	p.workers[p.leaf%int64(len(p.workers))] <- pc
	if pc.end {
		p.leaf++
		p.in = 0
	}
}

// work hashes the pieces of its leaves, one leaf at a time.
func (p *Parallel) work(ch <-chan piece) {
	defer p.wg.Done()
	lf := leaf{h: blake3.New()}
	for pc := range ch {
		switch {
		case len(pc.b) > 0:
			lf.write(pc.b)
		case pc.zeros > 0:
			lf.zeros(pc.zeros)
		}
		if pc.done != nil {
			pc.done()
		}
		if pc.end {
			p.fold(pc.leaf, run{lf.sum(), 1})
			lf.reset()
		}
	}
}

// fold adds the digests of the leaves from i on (r) to the root in their
// turn: now, or once the leaves before them are in.
func (p *Parallel) fold(i int64, r run) {
	p.mu.Lock()
	p.held[i] = r
	for {
		r, ok := p.held[p.next]
		if !ok {
			break
		}
		delete(p.held, p.next)
		for range r.n {
			p.root.Write(r.d[:])
		}
		p.next += r.n
		p.pending.Done()
	}
	p.mu.Unlock()
}

// flush ends the current leaf, if it has begun, and waits until every
// leaf is folded into the root.
func (p *Parallel) flush() {
	if p.in > 0 {
		p.send(piece{end: true})
	}
	p.pending.Wait()
}

// Finish ends the stream: it waits until every leaf is hashed and
// appends the stream's digest to b. Call Reset before writing another
// stream.
func (p *Parallel) Finish(b []byte) []byte {
	p.flush()
	p.mu.Lock()
	defer p.mu.Unlock()
	return rootSum(p.root.Clone(), p.n, b)
}

// Reset starts a new stream once the current one's leaves are hashed.
func (p *Parallel) Reset() {
	p.flush()
	p.mu.Lock()
	p.root.Reset()
	p.next = 0
	clear(p.held)
	p.mu.Unlock()
	p.leaf, p.in, p.n = 0, 0, 0
}

// Len is the stream's length so far.
func (p *Parallel) Len() int64 { return p.n }

// Close waits for the workers to hash what they were given and stops
// them.
func (p *Parallel) Close() {
	for _, ch := range p.workers {
		close(ch)
	}
	p.wg.Wait()
}

// Async is a stream digest whose Write may hash after it returns: it
// calls done once it has (before it returns, when it hashes on the
// caller's goroutine), and the bytes must not change until then. Finish
// ends the stream, Reset starts the next, Close stops any goroutines.
type Async interface {
	Write(b []byte, done func())
	Zeros(n int64)
	Finish(b []byte) []byte
	Reset()
	Len() int64
	Close()
}

// NewAsync returns a's digest: the tree's leaves hashed on workers
// goroutines (Parallel) when a is Tree and workers > 1, else a Hash on
// the caller's goroutine.
func NewAsync(a Alg, workers int) Async {
	if a == Tree && workers > 1 {
		return NewParallel(workers)
	}
	return inline{New(a)}
}

// inline is a Hash as an Async.
type inline struct{ h Hash }

func (s inline) Write(b []byte, done func()) {
	s.h.Write(b)
	if done != nil {
		done()
	}
}

func (s inline) Zeros(n int64)          { s.h.Zeros(n) }
func (s inline) Finish(b []byte) []byte { return s.h.Sum(b) }
func (s inline) Reset()                 { s.h.Reset() }
func (s inline) Len() int64             { return s.h.Len() }
func (inline) Close()                   {}
