package sqlite

import (
	"context"
	"path/filepath"
	"testing"
)

// MustOpen opens a ledger in a fresh temporary directory, closed when the
// test ends. For tests of any package that needs a real ledger.
func MustOpen(tb testing.TB) *Ledger {
	tb.Helper()
	l, err := Open(context.Background(), filepath.Join(tb.TempDir(), "ledger.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}

// MustOpenWith is MustOpen with options.
func MustOpenWith(tb testing.TB, o Options) *Ledger {
	tb.Helper()
	l, err := OpenWith(context.Background(), filepath.Join(tb.TempDir(), "ledger.db"), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	return l
}
