package sqlite

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
)

// heldSync replaces fdatasync with one that waits for release (or fails
// with fail) and counts its calls; it restores the real one when the test
// ends.
type heldSync struct {
	mu      sync.Mutex
	calls   int
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	fail    error
}

// open lets every held sync through, once; a failing test calls it (by
// defer) before closing the ledger, which waits for the syncer.
func (h *heldSync) open() { h.once.Do(func() { close(h.release) }) }

func holdSync(t *testing.T) *heldSync {
	h := &heldSync{entered: make(chan struct{}, 64), release: make(chan struct{})}
	real := fdatasync
	fdatasync = func(f *os.File) error {
		h.mu.Lock()
		h.calls++
		fail := h.fail
		h.mu.Unlock()
		h.entered <- struct{}{}
		<-h.release
		if fail != nil {
			return fail
		}
		return real(f)
	}
	t.Cleanup(func() { fdatasync = real })
	return h
}

func openAt(t *testing.T) (*Ledger, string) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

func waitFor(t *testing.T, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestCommitAnsweredOnlyAfterSync: a commit's caller, and a reader that
// could see its pickup token, hear nothing until the WAL's sync returns.
func TestCommitAnsweredOnlyAfterSync(t *testing.T) {
	l, _ := openAt(t)
	defer l.Close()
	ctx := context.Background()
	d := ledgertest.NewDrop("d1", 10)
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	h := holdSync(t)
	defer h.open()
	done := make(chan error, 1)
	go func() {
		done <- l.Commit(ctx, claims.Batch{DropID: "d1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("d1", 1, "u1", 1, "T000000000000001")}})
	}()
	waitFor(t, h.entered, "the sync")
	read := make(chan []claims.Entry, 1)
	go func() {
		es, err := l.UserEntries(ctx, "d1", "u1")
		if err != nil {
			t.Error(err)
		}
		read <- es
	}()
	select {
	case err := <-done:
		t.Fatalf("commit answered (%v) while its sync had not returned", err)
	case es := <-read:
		t.Fatalf("read returned %d entries while the commit they show was not synced", len(es))
	case <-time.After(300 * time.Millisecond):
	}
	h.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var es []claims.Entry
	select {
	case es = <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("read still waiting after the sync")
	}
	// The read started after the commit was in the WAL, so it saw it.
	if len(es) != 1 || es[0].Token != "T000000000000001" {
		t.Fatalf("entries %+v", es)
	}
}

// TestSyncFailureRefusesAndBreaks: a failed sync fails the writes it
// covered and every write after it; nothing is acknowledged.
func TestSyncFailureRefusesAndBreaks(t *testing.T) {
	l, _ := openAt(t)
	defer l.Close()
	ctx := context.Background()
	if err := l.CreateDrop(ctx, ledgertest.NewDrop("d1", 10)); err != nil {
		t.Fatal(err)
	}
	h := holdSync(t)
	h.fail = errors.New("EIO")
	h.open()
	err := l.Commit(ctx, claims.Batch{DropID: "d1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("d1", 1, "u1", 1, "T000000000000001")}})
	if err == nil || !errors.Is(err, h.fail) {
		t.Fatalf("commit over a failed sync: %v", err)
	}
	err = l.Commit(ctx, claims.Batch{DropID: "d1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("d1", 2, "u2", 1, "T000000000000002")}})
	if err == nil || !errors.Is(err, h.fail) {
		t.Fatalf("commit after a failed sync: %v", err)
	}
	if _, err := l.UserEntries(ctx, "d1", "u1"); err == nil {
		t.Fatal("read of an unsynced win after a failed sync returned no error")
	}
}
