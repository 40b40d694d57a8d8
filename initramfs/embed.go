//go:build herd_embed

package initramfs

import _ "embed"

// The prebuilt busybox and its manifest, written by
// ./initramfs/internal/mkbb (make build does both, then builds herd with
// -tags herd_embed).
var (
	//go:embed prebuilt/bb.zst
	embeddedBusybox string
	//go:embed prebuilt/manifest
	embeddedManifest string
)

var embedded = builtin{zbb: embeddedBusybox, manifest: embeddedManifest}
