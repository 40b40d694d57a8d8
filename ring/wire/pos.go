package wire

import "fmt"

// Position is a place in a session's stream: before the start of File
// (Started false), or at Offset inside it (Started true). Files come in
// order, so positions compare lexicographically; the session's End frame
// sits before File = the number of files. A node resuming from a new
// upstream says its Position: the next frame it expects.
type Position struct {
	File    uint32 `json:"file"`
	Started bool   `json:"started,omitempty"`
	Offset  uint64 `json:"offset,omitempty"`
}

// Less reports whether p comes before q in the stream.
func (p Position) Less(q Position) bool {
	switch {
	case p.File != q.File:
		return p.File < q.File
	case p.Started != q.Started:
		return !p.Started
	}
	return p.Offset < q.Offset
}

func (p Position) String() string {
	if !p.Started {
		return fmt.Sprintf("start of file %d", p.File+1)
	}
	return fmt.Sprintf("file %d offset %d", p.File+1, p.Offset)
}

// Before is the stream position just before frame h: the position a node
// is at when h is the next frame it needs. End frames carry the number of
// files in File.
func (h Header) Before() Position {
	switch h.Type {
	case TFileStart, TEnd:
		return Position{File: h.File}
	}
	return Position{File: h.File, Started: true, Offset: h.Offset}
}

// After is the position just after frame h.
func (h Header) After() Position {
	switch h.Type {
	case TFileStart:
		return Position{File: h.File, Started: true}
	case TData, THole:
		return Position{File: h.File, Started: true, Offset: h.Offset + uint64(h.Length)}
	case TFileEnd:
		return Position{File: h.File + 1}
	case TEnd:
		return Position{File: h.File + 1, Started: true}
	}
	return h.Before()
}
