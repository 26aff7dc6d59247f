//go:build !linux

package sqlite

import "os"

// fdatasync falls back to a full fsync where there is no fdatasync (a
// variable so a test can hold it or make it fail).
var fdatasync = func(f *os.File) error { return f.Sync() }
