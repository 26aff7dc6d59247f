//go:build unix && !linux

package overlay

import "syscall"

// writeNB is write(2) on a non-blocking socket.
func writeNB(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
