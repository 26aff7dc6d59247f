package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/postgres"
)

func TestContract(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) claims.Ledger {
		return postgres.MustOpenURL(t, postgres.TestURL(t), postgres.Options{Holder: ledgertest.Holder})
	})
}

// Replicas starting together on an empty schema: the advisory lock lets one
// migrate and the others find the work done.
func TestMigrateConcurrently(t *testing.T) {
	u := postgres.TestURL(t)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := postgres.Open(context.Background(), u, postgres.Options{})
			if err != nil {
				errs <- err
				return
			}
			errs <- l.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v %v", files, err)
	}
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(files) {
		t.Fatalf("%d migrations recorded, err %v; want one per file, %d", n, err, len(files))
	}
}

// Two replicas with their own pools committing to one drop without any
// coordination: the database alone keeps stock and the per-user unit.
func TestReplicasNeverOversell(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	a := postgres.MustOpenURL(t, u, postgres.Options{})
	b := postgres.MustOpenURL(t, u, postgres.Options{})
	const stock = 30
	if err := a.CreateDrop(ctx, ledgertest.NewDrop("k1", stock)); err != nil {
		t.Fatal(err)
	}
	var won, dup atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		l := a
		if w%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				// Users repeat across the two replicas (writers 2k on a,
				// 2k+1 on b share users) and within a writer (each user
				// twice in a row, so a duplicate is tried while stock is
				// left however the writers are scheduled): the same unit
				// twice is refused. 40 users for 30 units.
				user := fmt.Sprintf("u%d", (i/2)*4+w/2)
				n := int64(w*1000 + i + 1)
				err := l.Commit(ctx, claims.Batch{DropID: "k1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("k1", n, user, 1, fmt.Sprintf("TOKEN%011d", n))}})
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, claims.ErrDuplicateWin):
					dup.Add(1)
				case !errors.Is(err, claims.ErrStockExhausted):
					t.Error(err)
				}
			}
		}(w)
	}
	wg.Wait()
	d, _ := a.Drop(ctx, "k1")
	es, _ := b.Entries(ctx, "k1")
	users := map[string]int{}
	for _, e := range es {
		users[e.UserID]++
		if users[e.UserID] > 1 {
			t.Fatalf("user %s won unit 1 twice", e.UserID)
		}
	}
	if int(won.Load()) != len(es) || d.Remaining != stock-len(es) || len(es) > stock {
		t.Fatalf("won %d, entries %d, remaining %d, stock %d", won.Load(), len(es), d.Remaining, stock)
	}
	if dup.Load() == 0 {
		t.Fatal("no duplicate unit was refused; the test did not exercise it")
	}
}

// A win beyond the cap in force is refused by a constraint.
func TestUnitWithinCap(t *testing.T) {
	ctx := context.Background()
	l := postgres.MustOpen(t)
	if err := l.CreateDrop(ctx, ledgertest.NewDrop("c1", 10)); err != nil {
		t.Fatal(err)
	}
	e := ledgertest.Win("c1", 1, "a", 3, "TOKENAAAAAAAAAAA") // cap 2
	if err := l.Commit(ctx, claims.Batch{DropID: "c1", Wins: 1, Insert: []claims.Entry{e}}); err == nil {
		t.Fatal("unit 3 under cap 2 was accepted")
	}
	if d, _ := l.Drop(ctx, "c1"); d.Remaining != 10 {
		t.Fatalf("refused batch took stock: %d", d.Remaining)
	}
}

// Leases pick one decider; a replica whose lease went to another cannot
// commit, and a dead replica's drops are taken over without waiting for the
// lease to lapse.
func TestLeasesFenceCommits(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	a, err := postgres.Open(ctx, u, postgres.Options{ReplicaID: "a", LeaseTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := postgres.MustOpenURL(t, u, postgres.Options{ReplicaID: "b", LeaseTTL: time.Hour})
	d := ledgertest.NewDrop("l1", 10)
	if err := a.CreateLeasedDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	other := ledgertest.NewDrop("l2", 10)
	other.Channel = d.Channel
	if err := b.CreateLeasedDrop(ctx, other); microdrop.ErrorCode(err) != microdrop.ECONFLICT {
		t.Fatalf("second live drop in a channel: %v, want conflict", err)
	}
	if owner, _, err := b.DropOwner(ctx, "l1"); err != nil || owner != "a" {
		t.Fatalf("owner %q, %v", owner, err)
	}
	if ok, err := b.AcquireLease(ctx, "l1"); err != nil || ok {
		t.Fatalf("took a live replica's lease: %v %v", ok, err)
	}
	if ids, err := b.OrphanedDrops(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("orphans while a lives: %v %v", ids, err)
	}
	if err := b.Commit(ctx, claims.Batch{DropID: "l1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("l1", 1, "x", 1, "TOKENBBBBBBBBBBB")}}); !errors.Is(err, claims.ErrLeaseLost) {
		t.Fatalf("commit by a non-owner: %v, want ErrLeaseLost", err)
	}
	if err := a.Commit(ctx, claims.Batch{DropID: "l1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("l1", 1, "x", 1, "TOKENAAAAAAAAAAA")}}); err != nil {
		t.Fatal(err)
	}
	// a's session ends (as when its process dies): b may take over at once.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The server ends a's backend, and with it a's session lock, a moment
	// after the client closed its connections: look again for a while.
	ids, err := b.OrphanedDrops(ctx)
	for deadline := time.Now().Add(5 * time.Second); err == nil && len(ids) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		ids, err = b.OrphanedDrops(ctx)
	}
	if err != nil || len(ids) != 1 {
		t.Fatalf("orphans after a died: %v %v", ids, err)
	}
	if ok, err := b.AcquireLease(ctx, "l1"); err != nil || !ok {
		t.Fatalf("take over from a dead replica: %v %v", ok, err)
	}
	// Any replica but the holder is refused.
	c := postgres.MustOpenURL(t, u, postgres.Options{ReplicaID: "c", LeaseTTL: time.Hour})
	if err := c.Commit(ctx, claims.Batch{DropID: "l1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("l1", 2, "y", 1, "TOKENCCCCCCCCCCC")}}); !errors.Is(err, claims.ErrLeaseLost) {
		t.Fatalf("commit after takeover by the old owner: %v, want ErrLeaseLost", err)
	}
	if err := b.Commit(ctx, claims.Batch{DropID: "l1", Wins: 1, Insert: []claims.Entry{ledgertest.Win("l1", 2, "y", 1, "TOKENDDDDDDDDDDD")}}); err != nil {
		t.Fatal(err)
	}
	held, err := b.RenewLeases(ctx, []string{"l1"})
	if err != nil || len(held) != 1 {
		t.Fatalf("renew: %v %v", held, err)
	}
	if err := b.ReleaseLeases(ctx, []string{"l1"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.AcquireLease(ctx, "l1"); err != nil || !ok {
		t.Fatalf("take a released lease: %v %v", ok, err)
	}
	if held, _ := b.RenewLeases(ctx, []string{"l1"}); len(held) != 0 {
		t.Fatalf("b still renews a lease c took: %v", held)
	}
}
