package webhook_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/ledgertest"
	"github.com/microdrop/microdrop/claims/postgres"
	"github.com/microdrop/microdrop/claims/webhook"
)

// lifecycle runs a priced drop through won, paid and picked up for user:
// three outbox events.
func lifecycle(t *testing.T, l *postgres.Ledger, id, user string) {
	t.Helper()
	ctx := context.Background()
	d := ledgertest.NewDrop(id, 1)
	d.Channel, d.PayWindow, d.PayMethods = "shop", time.Hour, []string{claims.PayWallet}
	if err := l.CreateDrop(ctx, d); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	h := ledgertest.NewHold(id, 1, user, now.Add(time.Hour))
	h.CreatedAt = now
	if err := l.Commit(ctx, claims.Batch{DropID: id, Wins: 1, Insert: []claims.Entry{ledgertest.Win(id, 1, user, 1, "")}, Holds: []claims.Hold{h}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Post(ctx, ledgertest.TopUp("top-"+id, user, 4500)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.PayHold(ctx, h.ID, "wallet", ledgertest.WalletPay(h, 450), now); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RedeemHold(ctx, h.ID, now); err != nil {
		t.Fatal(err)
	}
}

// countingReceiver counts deliveries per webhook-id, each checked by the
// Standard Webhooks library.
type countingReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	secret string
	n      map[string]int
}

func (c *countingReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	wh, err := standardwebhooks.NewWebhook(c.secret)
	if err == nil {
		err = wh.Verify(body, r.Header)
	}
	if err != nil {
		c.t.Errorf("signature: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	c.n[r.Header.Get("webhook-id")]++
	w.WriteHeader(http.StatusNoContent)
}

func (c *countingReceiver) counts() (distinct, total int, dups []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.n {
		distinct++
		total += n
		if n > 1 {
			dups = append(dups, id)
		}
	}
	return distinct, total, dups
}

// replica is one replica's webhook side on the shared Postgres schema.
type replica struct {
	ledger *postgres.Ledger
	store  *webhook.Store
	worker *webhook.Worker
	h      *webhook.Handler
}

func newReplica(t *testing.T, u, name string) *replica {
	t.Helper()
	l := postgres.MustOpenURL(t, u, postgres.Options{Holder: ledgertest.Holder, ReplicaID: name})
	st, err := webhook.OpenPostgresStore(context.Background(), u, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	w := webhook.NewWorker(webhook.Deps{Outbox: l, Store: st, Options: webhook.Options{Poll: 20 * time.Millisecond, LeaseTTL: time.Second}})
	t.Cleanup(func() { _ = w.Close() })
	return &replica{ledger: l, store: st, worker: w, h: webhook.NewHandler(st, w, l, adminFor())}
}

// Two replicas on one Postgres schema: the endpoint made on one is seen by
// the other, exactly one delivers at a time, and every event reaches the
// receiver once — also across a handover when the delivering replica
// shuts down.
func TestPostgresOneReplicaDelivers(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	a, b := newReplica(t, u, "replica-a"), newReplica(t, u, "replica-b")
	rc := &countingReceiver{t: t, n: map[string]int{}}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	url, all := srv.URL+"/hook", ""
	ep, err := a.h.Create(ctx, webhook.EndpointBody{URL: &url, Channel: &all, Kinds: claims.EventKinds})
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = ep.Secret
	if eps, err := b.h.Endpoints(ctx); err != nil || len(eps) != 1 || eps[0].ID != ep.ID {
		t.Fatalf("replica b should see the endpoint made on a: %+v %v", eps, err)
	}
	a.worker.Start()
	b.worker.Start()

	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			if d, _, _ := rc.counts(); d >= want {
				break
			}
			if time.Now().After(deadline) {
				d, _, _ := rc.counts()
				t.Fatalf("%d of %d events delivered in 30s", d, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // many polls of both workers: any duplicate would show
		d, total, dups := rc.counts()
		if d != want || total != want || len(dups) > 0 {
			t.Fatalf("receiver got %d deliveries of %d distinct events, want %d each once; duplicated: %v", total, d, want, dups)
		}
	}
	const drops = 8
	for i := range drops {
		l := a.ledger
		if i%2 == 1 {
			l = b.ledger // events committed on either replica
		}
		lifecycle(t, l, "pg"+string(rune('a'+i)), "user")
	}
	waitFor(3 * drops)
	if a.worker.Leading() == b.worker.Leading() {
		t.Fatalf("exactly one replica should deliver: a %v, b %v", a.worker.Leading(), b.worker.Leading())
	}
	leader, other := a, b
	if b.worker.Leading() {
		leader, other = b, a
	}
	if holder, err := other.store.LeaseHolder(ctx); err != nil || holder != leader.store.Owner() {
		t.Fatalf("lease holder %q %v, want %s", holder, err, leader.store.Owner())
	}
	log, err := other.h.Log(ctx, ep.ID, 100)
	if err != nil || len(log) != 3*drops {
		t.Fatalf("the other replica should see the whole delivery log: %d %v", len(log), err)
	}
	for _, d := range log {
		if d.State != webhook.Delivered || d.Attempts != 1 || len(d.Log) != 1 {
			t.Fatalf("delivery %s: %s after %d attempts, want delivered once", d.EventID, d.State, d.Attempts)
		}
	}

	// The delivering replica shuts down: it gives the lease up and the
	// other takes over, with nothing sent twice.
	if err := leader.worker.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range drops {
		lifecycle(t, leader.ledger, "pgz"+string(rune('a'+i)), "user")
	}
	waitFor(6 * drops)
	if !other.worker.Leading() || leader.worker.Leading() {
		t.Fatalf("after the handover the other replica should deliver: leader %v, other %v", leader.worker.Leading(), other.worker.Leading())
	}
}

// The lease fences a replica's worker writes: only the holder queues and
// records, and a lapsed holder's late write is refused.
func TestPostgresLeaseFences(t *testing.T) {
	ctx := context.Background()
	u := postgres.TestURL(t)
	a, b := newReplica(t, u, "replica-a"), newReplica(t, u, "replica-b")
	url := "http://127.0.0.1:1/hook"
	ep, err := a.h.Create(ctx, webhook.EndpointBody{URL: &url, Kinds: []string{claims.EventHoldWon}})
	if err != nil {
		t.Fatal(err)
	}
	ttl := time.Second
	if ok, err := a.store.Lead(ctx, ttl); !ok || err != nil {
		t.Fatalf("a should take the free lease: %v %v", ok, err)
	}
	if ok, err := b.store.Lead(ctx, ttl); ok || err != nil {
		t.Fatalf("b took a held lease: %v %v", ok, err)
	}
	d := webhook.Delivery{EndpointID: ep.ID, Seq: 1, EventID: "msg_x", Kind: claims.EventHoldWon, DropID: "d", Body: []byte(`{}`), NextAt: time.Now()}
	if err := b.store.Enqueue(ctx, ep.ID, 1, []webhook.Delivery{d}); !errors.Is(err, webhook.ErrNotLeader) {
		t.Fatalf("b queued without the lease: %v", err)
	}
	if err := a.store.Enqueue(ctx, ep.ID, 1, []webhook.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	d.State, d.Attempts = webhook.Delivered, 1
	at := webhook.Attempt{EndpointID: ep.ID, EventID: d.EventID, N: 1, At: time.Now(), Status: 204}
	if err := b.store.Record(ctx, d, at, ""); !errors.Is(err, webhook.ErrNotLeader) {
		t.Fatalf("b recorded without the lease: %v", err)
	}
	time.Sleep(ttl + 200*time.Millisecond) // a stops renewing: its lease lapses
	if ok, err := b.store.Lead(ctx, ttl); !ok || err != nil {
		t.Fatalf("b should take the lapsed lease: %v %v", ok, err)
	}
	if err := a.store.Record(ctx, d, at, ""); !errors.Is(err, webhook.ErrNotLeader) {
		t.Fatalf("a recorded after losing the lease: %v", err)
	}
	if log, _ := b.h.Log(ctx, ep.ID, 10); len(log) != 1 || log[0].State != webhook.Pending || len(log[0].Log) != 0 {
		t.Fatalf("a refused write changed the delivery: %+v", log)
	}
	if err := b.store.Record(ctx, d, at, ""); err != nil {
		t.Fatal(err)
	}
	// A shipping address given on one replica is read on the other (the
	// worker adds it to fulfilment deliveries), and saving it again
	// replaces it; a bad one is refused and changes nothing.
	addr := claims.ShippingAddress{Line1: "Hauptstr. 5", City: "Berlin", PostalCode: "10115", Country: "de"}
	for _, line := range []string{"Hauptstr. 5", "Hauptstr. 7"} {
		addr.Line1 = line
		if err := a.h.SetShippingAddress(ctx, "r1-1", addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.h.SetShippingAddress(ctx, "r1-1", claims.ShippingAddress{Line1: "x", City: "y", PostalCode: "1", Country: "Germany"}); err == nil {
		t.Fatal("a bad country was accepted")
	}
	if got, err := b.h.ShippingAddress(ctx, "r1-1"); err != nil || got == nil || got.Line1 != "Hauptstr. 7" || got.Country != "DE" {
		t.Fatalf("the other replica reads %+v %v", got, err)
	}
	if got, err := b.h.ShippingAddress(ctx, "r1-2"); err != nil || got != nil {
		t.Fatalf("a hold without an address: %+v %v", got, err)
	}
}
