//go:build linux

package overlay

import (
	"syscall"
	"unsafe"
)

// writeNB is write(2) on a non-blocking socket without telling the Go
// scheduler: the call cannot block, so the goroutine keeps its P through
// it, as through any function call. syscall.Write would mark it in a
// system call, and one that runs long (a loopback write does the
// receiver's work too) lets sysmon hand the P to another thread: a
// thread woken and switched to per slow write, in the middle of a
// fan-out.
func writeNB(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}
