// Package qemutests is herd's cluster test harness and its scenarios:
// QEMU machines (TCG; SeaBIOS with Debian's iPXE ROM, or OVMF with its own
// PXE or iPXE's EFI ROM, per node: Options.Firmware; blank virtio disks)
// network-boot through herd's own DHCP, TFTP and HTTP servers on a bridge
// inside a network namespace the test makes, and the tests read their
// serial consoles, herd's node states and UEFI nodes' boot variables.
//
// The scenarios (the _test files) are behind the build tag qemu, and need
// root, QEMU (qemu-system-x86 ipxe-qemu, and ovmf for UEFI nodes), a
// Debian kernel in /boot and Go:
//
//	go test -tags qemu -count=1 -timeout 30m ./qemu-tests/
//
// A scenario is a short test:
//
//	c := qemutests.NewCluster(t, qemutests.Options{Nodes: 3, DiskSize: 512 << 20})
//	srv := c.Serve("--input", img, "--output", "/dev/vda", "--once")
//	vms := c.StartAll()
//	for _, vm := range vms {
//		vm.WaitFor(`registered as `+vm.Node.Name, 3*time.Minute)
//	}
//	if code := srv.Wait(10 * time.Minute); code != 0 { ... }
//
// The harness itself builds without the tag and is a library for
// programs too: it takes a T (the part of testing.TB it uses), and
// RunProgram gives a program one. make demo (qemu-tests/demo) drives a
// cluster that way.
//
// Logs (every console, herd's output) go under Options.LogDir when given;
// else under $HERD_QEMU_LOGDIR/<test> when that is set (emptied when the
// test starts); otherwise under a temporary directory removed when the
// test passes and kept, and named, when it fails.
package qemutests
