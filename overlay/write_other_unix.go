//go:build unix && !linux

package overlay

import (
	"errors"
	"syscall"
)

// writeNB is write(2) on a non-blocking socket; its error is the errno
// (0 for none).
func writeNB(fd int, b []byte) (int, syscall.Errno) {
	n, err := syscall.Write(fd, b)
	var errno syscall.Errno
	if err != nil && !errors.As(err, &errno) {
		errno = syscall.EIO
	}
	return n, errno
}
