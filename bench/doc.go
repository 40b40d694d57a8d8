// Package bench measures herd's ring against a star (herd's own HTTP
// server and N parallel curl clients, which is what HTTP provisioning
// does) on a switched network built from network namespaces, and against
// a floor: the bare relay of bench/bare through the same chain of nodes
// (mode "bare"), which only reads, stores and forwards.
//
// The lab (Lab) is one namespace per host — the sender and N nodes —
// each joined by a veth pair to a bridge in a "switch" namespace, with an
// optional token-bucket rate on both directions of every port (a
// full-duplex switched port), IPv6 off and no route out. Every measured
// program runs under a wrapper (Wrap, "herd-bench wrap") inside its
// host's namespaces: the wrapper mounts the node's private tmpfs, gates
// the start, and afterwards reports the program's peak RSS and the
// SHA-256 of the file it wrote, so every copy is verified. CPU time is
// read from one cgroup per role (sender, nodes) and covers whole process
// trees.
//
// Runner runs one Spec; Scenario lists the runs of a benchmark; Summarize
// takes medians over repetitions; the report writers turn them into CSV,
// a markdown table and an SVG plot. cmd/herd-bench drives it all.
package bench
