package sqlite

import (
	"os"
	"syscall"
)

// fdatasync is the sync SQLite itself uses on Linux.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
