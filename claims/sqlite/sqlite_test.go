package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/sqlite"
)

func TestContract(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) claims.Ledger {
		return sqlite.MustOpenWith(t, sqlite.Options{Holder: ledgertest.Holder})
	})
}

func TestSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateDrop(ctx, ledgertest.NewDrop("p1", 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, claims.Batch{DropID: "p1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("p1", 1, "a", 1, "TOKENAAAAAAAAAAA")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, claims.Batch{DropID: "p1"}); err == nil {
		t.Fatal("commit after close succeeded")
	}
	l, err = sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Drop(ctx, "p1")
	if err != nil || d.Remaining != 1 {
		t.Fatalf("after reopen: %+v, %v", d, err)
	}
}
