//go:build tools

// The u-root commands the initramfs carries are compiled from this module's
// dependency graph (mkuimage resolves them with `go list` in the herd source
// tree). Importing them here keeps them, and what they import, in go.mod and
// go.sum: without this file `go mod tidy` would drop them and `herd build
// boot` would fail to resolve the packages. Keep it in step with Commands
// in initramfs.go.

package initramfs

import (
	_ "github.com/u-root/u-root/cmds/core/cat"
	_ "github.com/u-root/u-root/cmds/core/dmesg"
	_ "github.com/u-root/u-root/cmds/core/gosh"
	_ "github.com/u-root/u-root/cmds/core/init"
	_ "github.com/u-root/u-root/cmds/core/ip"
	_ "github.com/u-root/u-root/cmds/core/ls"
	_ "github.com/u-root/u-root/cmds/core/mount"
)
