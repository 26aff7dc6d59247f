package sqlite

import (
	"os"
	"syscall"
)

// fdatasync is the sync SQLite itself uses on Linux (a variable so a test
// can hold it or make it fail).
var fdatasync = func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
