//go:build !herd_embed

package initramfs

// Built without the herd_embed tag: no busybox inside, Build compiles
// one from the source tree.
var embedded builtin
