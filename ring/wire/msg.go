package wire

// Hello opens a control connection from the sender to a node.
type Hello struct {
	Version int    `json:"version"`
	Session string `json:"session"`
	Sender  string `json:"sender"`
	// Nonce is the sender's challenge (see AuthAccept).
	Nonce []byte `json:"nonce,omitempty"`
	// Resume is a restarted sender taking its session back: the node,
	// which kept the session while it waited for its sender
	// (Setup.SenderWaitMilli), answers the Setup that follows with
	// Resumed and sends again what the sender may have missed (its
	// Bypassed reports and its Verdict). A node without that session
	// answers Fail.
	Resume bool `json:"resume,omitempty"`
}

// Reasons a node refuses a resuming data connection (DataHello.Resume):
// its current upstream is alive (it sent within half the bypass timeout),
// or it has the whole stream. The one that offered neither reports the
// node nor counts it as failed.
const (
	ReasonUpstreamAlive = "refused: my upstream is alive"
	ReasonHaveAll       = "refused: I have the whole stream"
)

// Resumed is a node's answer to a resuming sender.
type Resumed struct {
	// Received is the stream bytes the node has so far.
	Received int64 `json:"received"`
	// Finished says that the node's transfer ended: its Verdict follows.
	Finished bool `json:"finished,omitempty"`
}

// SetupFile is one file of a session as a node sees it.
type SetupFile struct {
	// Output is where the node writes ("-" = standard output).
	Output string `json:"output"`
	// Cooked is dolly+'s ">>": decode by InputName's suffix.
	Cooked bool `json:"cooked,omitempty"`
	// InputName is the sender's name of the input (for cooking and logs).
	InputName string `json:"input"`
	// Size is the stream length in bytes, -1 when unknown.
	Size int64 `json:"size"`
	// DataSize is the length without holes, -1 when unknown.
	DataSize int64 `json:"data_size"`
	// Split, when > 0, writes Output_0, Output_1, ... of at most Split bytes.
	Split int64 `json:"split,omitempty"`
	// Discard writes nothing (dolly's dummy mode, -t).
	Discard bool `json:"discard,omitempty"`
	// Mount, when set, makes the file a stage2: a filesystem image the
	// node keeps in RAM (Output is a brd ramdisk /dev/ramN or a file on
	// a tmpfs) and mounts here once the sender has verified it, so that
	// the steps after it can use its tools.
	Mount string `json:"mount,omitempty"`
}

// Setup tells a node about the session; the node checks it can write every
// output and answers Ready or Fail, writing nothing yet.
type Setup struct {
	Session string `json:"session"`
	// Hosts are all nodes in ring order; Index is the sender's idea of
	// which one the receiving node is.
	Hosts []string `json:"hosts"`
	// Addrs are the hosts' addresses as the sender resolved them.
	Addrs []string `json:"addrs"`
	Index int      `json:"index"`
	// Server is the sender's name.
	Server       string      `json:"server"`
	Files        []SetupFile `json:"files"`
	ChunkSize    int         `json:"chunk_size"`
	NoSync       bool        `json:"no_sync,omitempty"`
	TimeoutMilli int64       `json:"timeout_ms,omitempty"`
	HyphenNormal bool        `json:"hyphen_normal,omitempty"`
	// SockBuf, when > 0, is the TCP buffer size for data connections.
	SockBuf int `json:"sockbuf,omitempty"`
	// Congestion is the TCP congestion control (TCP_CONGESTION) for the
	// data connections a node opens; "" leaves the system's.
	Congestion string `json:"congestion,omitempty"`
	// Verify is how a node verifies what it wrote: "" checks the digest
	// of the stream as it arrived; VerifyReadback also re-reads every
	// output from its device once the stream ended (FileResult.Readback*).
	Verify string `json:"verify,omitempty"`
	// Digest is the algorithm of every digest the node reports (package
	// ring/digest: "tree", "sha256"); "" is "sha256", what senders that
	// name none mean. A node that does not compute it refuses the Setup.
	Digest string `json:"digest,omitempty"`
	// SenderWaitMilli is how long the node keeps the session when the
	// sender's control connection breaks, waiting for the sender to
	// come back (Hello.Resume); 0 ends the session at once.
	SenderWaitMilli int64 `json:"sender_wait_ms,omitempty"`
}

// VerifyReadback is Setup.Verify's read-back verification: after the
// stream, each node re-reads its outputs with O_DIRECT (bypassing the
// page cache) and reports their digest (package readback).
const VerifyReadback = "readback"

// Ready is a node's positive answer to Setup.
type Ready struct {
	// Name is how the node found itself in the host list, e.g.
	// "127.0.0.3 (listen address)".
	Name string `json:"name"`
	// Digest echoes Setup.Digest: the algorithm the node computes. Nodes
	// older than the field leave it empty and compute SHA-256 whatever
	// the Setup says; the sender fails them in a session of another
	// digest rather than compare digests of two algorithms.
	Digest string `json:"digest,omitempty"`
}

// Fail is a node's (or sender's) refusal, with a reason for humans.
type Fail struct {
	Reason string `json:"reason"`
}

// Peer is one data connection to open.
type Peer struct {
	Name string `json:"name"`
	Addr string `json:"addr"` // host:port of the peer's data port
}

// Connect tells a node which children to feed.
type Connect struct {
	Children []Peer `json:"children"`
	// SegSize sets TCP_MAXSEG on the data connections (dolly's segsize).
	SegSize int `json:"segsize,omitempty"`
	// Ring is every node of the ring in order and Fanout its tree's
	// fanout (plan.Children), Me the receiving node's index in Ring: when
	// a child stops, the node adopts that child's children.
	Ring   []Peer `json:"ring,omitempty"`
	Fanout int    `json:"fanout,omitempty"`
	Me     int    `json:"me"`
	// BypassMilli is how long a child may make no progress before it is
	// bypassed; 0 never bypasses a stalled child (a reset one still is).
	BypassMilli int64 `json:"bypass_ms,omitempty"`
	// FetchPort is the sender's port (on the control connection's
	// address) that serves stream ranges a node no longer holds.
	FetchPort int `json:"fetch_port,omitempty"`
}

// Bypassed is a node's report that it bypassed a peer that stopped.
type Bypassed struct {
	// Node is the peer's name and Index its place in Connect.Ring.
	Node  string `json:"node"`
	Index int    `json:"index"`
	// Reason starts with "reset", "timeout" or "auth failed".
	Reason string `json:"reason"`
}

// Fetch asks the sender's fetch port for the stream from From up to (not
// including) To; the sender answers with the frames, sealed when keyed,
// and closes the connection.
type Fetch struct {
	Session string   `json:"session"`
	From    Position `json:"from"`
	To      Position `json:"to"`
}

// Connected is a node's answer to Connect once its children accepted.
type Connected struct{}

// Progress is a node's periodic report during the transfer.
type Progress struct {
	Received int64 `json:"received"`
	// Arrived is the bytes that arrived at the node so far, as they
	// arrive (also those of a frame not yet complete, and those waiting
	// in its socket): what rates are computed from.
	Arrived int64  `json:"arrived,omitempty"`
	Written int64  `json:"written"`
	File    int    `json:"file"`
	State   string `json:"state"`
	// ReadBack is the number of bytes re-read from the outputs so far
	// (Setup.Verify == VerifyReadback): it grows after the stream ended,
	// while Received no longer does.
	ReadBack int64 `json:"read_back,omitempty"`
}

// FileResult is one file as a node wrote it.
type FileResult struct {
	// Bytes is the stream length received.
	Bytes int64 `json:"bytes"`
	// Written is the length written: the stream's for raw files, the
	// decoded length for cooked files.
	Written int64 `json:"written"`
	// StreamDigest is the digest (Setup.Digest) of the stream as
	// received, hex. The JSON names keep "sha256", SHA-256 being what
	// they held before Setup.Digest.
	StreamDigest string `json:"stream_sha256"`
	// Digest is the digest of what was written, hex (for raw files the
	// same as StreamDigest).
	Digest string `json:"sha256"`
	// Error says why the file failed; empty when it did not.
	Error string `json:"error,omitempty"`
	// ReadbackDigest is the digest, hex, of the Written bytes as read
	// back from the output after the stream (Setup.Verify ==
	// VerifyReadback); empty when they were not read back.
	ReadbackDigest string `json:"readback_sha256,omitempty"`
	// ReadbackMethod says how they were read: "O_DIRECT", a fallback
	// when the file system refuses O_DIRECT, or "not applicable: WHY"
	// for an output that cannot be read back (an unpacked archive,
	// standard output, a pipe). Empty when no read-back was done.
	ReadbackMethod string `json:"readback_method,omitempty"`
	// ReadbackError says why the read-back failed (ReadbackDigest is
	// then empty), e.g. "read-back of /dev/sda at offset 4096:
	// input/output error".
	ReadbackError string `json:"readback_error,omitempty"`
	// ReadbackSeconds is how long the read-back took.
	ReadbackSeconds float64 `json:"readback_seconds,omitempty"`
}

// Verdict is a node's final report.
type Verdict struct {
	Files   []FileResult `json:"files"`
	Error   string       `json:"error,omitempty"`
	Seconds float64      `json:"seconds"`
}

// Bye ends a session on the control connection: the sender's judgement of
// the node's verdict. A node that did not get Verified must not treat its
// data as good.
type Bye struct {
	Verified bool   `json:"verified"`
	Reason   string `json:"reason,omitempty"`
}

// Abort tells a peer to give up the session.
type Abort = Fail

// DataHello opens a data connection.
type DataHello struct {
	Session string `json:"session"`
	From    string `json:"from"`
	// Nonce is the connecting parent's challenge (see AuthAccept).
	Nonce []byte `json:"nonce,omitempty"`
	// Resume asks the node, after the handshake, to answer with the
	// Position it needs next: a new upstream taking over from one that
	// stopped.
	Resume bool `json:"resume,omitempty"`
}

// Kill tells a waiting node to stop (dolly's -K), after the handshake.
type Kill struct {
	From string `json:"from"`
}
