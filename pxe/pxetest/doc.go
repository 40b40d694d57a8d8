// Package pxetest holds the boot-services tests that need root and a
// network namespace of their own (build tag nettest; `make net-test`).
package pxetest
