package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	mdnats "github.com/microdrop/microdrop/claims/nats"
	"github.com/microdrop/microdrop/claims/nats/natstest"
	"github.com/microdrop/microdrop/claims/postgres"
)

// Two replicas on Postgres and NATS: an endpoint made on one is listed by
// the other, every event reaches the receiver once although both replicas
// run a worker, the other replica takes delivery over when the first is
// killed with SIGKILL, and each hold.paid reaches a bus subscriber once
// although the deciding replica and the outbox relay both publish it.
func TestScaleOutWebhooksAndRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two replicas")
	}
	pgURL, busURL := postgres.TestURL(t), natstest.BusURL(t)
	a, b := startReplica(t, pgURL, busURL), startReplica(t, pgURL, busURL)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 30 * time.Second}

	servers, o, err := mdnats.ParseURL(busURL)
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := mdnats.Open(ctx, servers, o)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	sub := watcher.Subscribe(1024, microdrop.HoldPaid)

	rcv := &hookReceiver{t: t, bodies: map[string][]byte{}, kinds: map[string][]string{}}
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()
	var ep struct{ ID, Secret string }
	if st, err := apiCall(ctx, client, "POST", a.url+"/api/webhooks/endpoints", map[string]any{"url": hooks.URL + "/fulfil", "channel": "",
		"kinds": []string{claims.EventHoldWon, claims.EventHoldPaid}, "fulfilment": true}, &ep); st != 201 || err != nil {
		t.Fatalf("create endpoint on a: %d %v", st, err)
	}
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.wh = wh
	rcv.mu.Unlock()
	var list struct{ Endpoints []struct{ ID string } }
	if st, err := apiCall(ctx, client, "GET", b.url+"/api/webhooks/endpoints", nil, &list); st != 200 || err != nil || len(list.Endpoints) != 1 || list.Endpoints[0].ID != ep.ID {
		t.Fatalf("b should list the endpoint made on a: %d %v %+v", st, err, list)
	}

	want := map[string]bool{}
	paidIDs := map[string]bool{}
	sell := func(s *server, channel string, viewers int) {
		t.Helper()
		var open claims.DropResponse
		if st, err := apiCall(ctx, client, "POST", s.url+"/api/drops", map[string]any{"channel": channel, "sku": "hoodie", "stock": viewers, "price_minor": 4500,
			"currency": "EUR", "duration": "10m", "policy": "fcfs", "pay": []string{"wallet"}}, &open); st != 201 || err != nil {
			t.Fatalf("open on %s: %d %v", s.url, st, err)
		}
		for i := range viewers {
			user := fmt.Sprintf("%s-viewer%d", channel, i)
			var won claims.ClaimResult
			if st, err := apiCall(ctx, client, "POST", s.url+"/api/drops/"+open.Drop.ID+"/claims", map[string]any{"user_id": user}, &won); st != 200 || won.HoldID == "" {
				t.Fatalf("claim: %d %v %+v", st, err, won)
			}
			if st, err := apiCall(ctx, client, "POST", s.url+"/api/wallets/"+user+"/topup", map[string]any{"key": "k" + user, "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
				t.Fatalf("top-up: %d %v", st, err)
			}
			if st, err := apiCall(ctx, client, "POST", s.url+"/api/holds/"+won.HoldID+"/pay", map[string]any{"user_id": user, "method": "wallet"}, nil); st != 200 {
				t.Fatalf("pay: %d %v", st, err)
			}
			want["msg_hold_won_"+won.HoldID], want["msg_hold_paid_"+won.HoldID] = true, true
			paidIDs[claims.BusEventID(microdrop.HoldPaid, won.HoldID)] = true
		}
	}
	wait := func(n int) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for rcv.unique() < n && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := rcv.unique(); got < n {
			t.Fatalf("receiver has %d of %d events", got, n)
		}
	}
	sell(a, "shop", 4)
	wait(len(want))
	time.Sleep(1500 * time.Millisecond) // both workers poll every 500ms: a second deliverer would show now
	rcv.mu.Lock()
	steady := len(rcv.ids)
	rcv.mu.Unlock()
	if steady != len(want) {
		t.Fatalf("%d deliveries of %d events: with two replicas each event should be delivered once", steady, len(want))
	}

	// Each hold.paid reached the bus once: the decider's publish and the
	// relay's (about a second later) carry one Nats-Msg-Id.
	got := map[string]int{}
	for deadline := time.After(3 * time.Second); ; {
		select {
		case e := <-sub.C():
			got[e.ID]++
			continue
		case <-deadline:
		}
		break
	}
	for id := range paidIDs {
		if got[id] != 1 {
			t.Fatalf("bus subscriber got %s %d times, want once; all: %v", id, got[id], got)
		}
	}
	// ... and the relay did publish them again: its position is past the
	// whole outbox.
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var relayed, end int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := conn.QueryRow(ctx, "SELECT (SELECT seq FROM outbox_relay WHERE name = 'bus'), (SELECT max(seq) FROM outbox)").Scan(&relayed, &end); err != nil {
			t.Fatal(err)
		}
		if relayed == end || time.Now().After(deadline) {
			break
		}
	}
	if relayed != end || end != int64(len(want)) {
		t.Fatalf("relay position %d, outbox end %d, want both %d", relayed, end, len(want))
	}

	// The first replica dies; events committed on the other still reach
	// the receiver (its worker takes the lapsed lease within 5 s).
	a.kill()
	sell(b, "shop2", 3) // a channel of its own: the first drop is still live, adopted by b
	wait(len(want))
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id := range want {
		if rcv.bodies[id] == nil {
			t.Fatalf("event %s lost", id)
		}
	}
	t.Logf("%d events, %d deliveries (%d before the kill, each once); %d hold.paid on the bus, each once", len(want), len(rcv.ids), steady, len(got))
}
