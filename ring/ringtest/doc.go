// Package ringtest holds herd's process-level ring tests: every node is a
// separate herd, dolly or dollyC process bound to its own address in
// 127.0.1.0/24, and the sender runs in a private mount namespace whose
// /etc/hosts maps nodeN to 127.0.1.N (N = 1..60) and the server names
// node0 and mgmt to 127.0.0.1, and whose resolv.conf points at 127.0.0.1,
// so that no lookup leaves the machine.
//
// The tests and the benchmark carry the build tag ringtest, so that
// 'go test ./...' skips them:
//
//	make ring-test   # go test -count=1 -tags ringtest -timeout 20m ./ring/ringtest/
//	make bench       # ... -run '^$' -bench . -benchtime 1x ./ring/ringtest/
//
// They need root (mount namespaces, tmpfs mounts) and util-linux's
// unshare; work directories go to /dev/shm when it exists.
package ringtest
