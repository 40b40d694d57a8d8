// Package sink holds the writers a node feeds one file's stream into: raw
// outputs (regular files kept sparse, block devices, standard output, split
// files) behind one small interface that package cook's decoders implement
// too.
package sink

// Sink receives one file's bytes in order. A node's writer goroutine calls
// Write and Zero in stream order, then Close exactly once (or Abort).
type Sink interface {
	// Write appends p at the current position.
	Write(p []byte) (int, error)
	// Zero appends n zero bytes (a hole in the stream): regular files skip
	// them and stay sparse, block devices get them zeroed, pipes get them
	// written.
	Zero(n int64) error
	// Close flushes, syncs unless told not to, fixes the final size and
	// returns what was written.
	Close() (Result, error)
	// Abort gives up: it releases the output without reporting success.
	// Safe after Close, and safe to call twice.
	Abort()
}

// Result is what a sink wrote.
type Result struct {
	// Bytes is the number of bytes written as the file's content: the
	// stream's length for raw sinks, the decoded length for cooked ones.
	Bytes int64
	// Digest is the digest of those bytes, in order, in the algorithm the
	// sink was given; nil when the sink does not hash (raw sinks: the node
	// hashes the stream itself).
	Digest []byte
}
