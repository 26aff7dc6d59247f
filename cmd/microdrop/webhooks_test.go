package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/microdrop/microdrop/claims"
)

// hookReceiver is a fulfilment system: it checks every delivery with the
// Standard Webhooks library's own verifier and records what it accepted.
type hookReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	wh     *standardwebhooks.Webhook
	ids    []string            // every accepted delivery's webhook-id, in arrival order
	bodies map[string][]byte   // first body per id
	kinds  map[string][]string // hold id -> event kinds in first-arrival order
	// block, when set, is called with each delivery before it is answered.
	block func(id string)
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	h.mu.Lock()
	wh, block := h.wh, h.block
	h.mu.Unlock()
	if err := wh.Verify(body, r.Header); err != nil {
		h.t.Errorf("delivery does not verify: %v", err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	id := r.Header.Get("webhook-id")
	if block != nil {
		block(id)
	}
	var b claims.EventBody
	if err := json.Unmarshal(body, &b); err != nil {
		h.t.Errorf("delivery body: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.bodies[id]; dup {
		if string(h.bodies[id]) != string(body) {
			h.t.Errorf("redelivery of %s with another body", id)
		}
	} else {
		h.bodies[id] = body
		h.kinds[b.Data.HoldID] = append(h.kinds[b.Data.HoldID], b.Type)
	}
	h.ids = append(h.ids, id)
	w.WriteHeader(http.StatusOK)
}

func (h *hookReceiver) unique() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

// TestWebhooksSurviveKill9 runs a paid drop's life (won, paid, picked up)
// through the real binary to a fulfilment receiver, kills the server with
// SIGKILL while a delivery is in flight, restarts it on the same data dir
// and checks nothing is lost, the redelivery carries the same webhook-id
// and body, and each hold's events arrived in order.
func TestWebhooksSurviveKill9(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, freePort(t), nil)
	rcv := &hookReceiver{t: t, bodies: map[string][]byte{}, kinds: map[string][]string{}}
	hooks := httptest.NewServer(rcv)
	defer hooks.Close()

	var ep struct{ ID, Secret string }
	if st, err := api(t, "POST", s.url+"/api/webhooks/endpoints", map[string]any{"url": hooks.URL + "/fulfil", "channel": "shop",
		"kinds": []string{claims.EventHoldWon, claims.EventHoldPaid, claims.EventPickupRedeemed}, "fulfilment": true}, &ep); st != 201 || err != nil {
		t.Fatalf("create endpoint: %d %v", st, err)
	}
	wh, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	// The fourth delivery is in flight when the server dies.
	inFlight := make(chan string, 1)
	release := make(chan struct{})
	var n int
	rcv.mu.Lock()
	rcv.wh = wh
	rcv.block = func(id string) {
		rcv.mu.Lock()
		n++
		k := n
		rcv.mu.Unlock()
		if k == 4 {
			inFlight <- id
			<-release
		}
	}
	rcv.mu.Unlock()

	const units = 4
	var open claims.DropResponse
	if st, err := api(t, "POST", s.url+"/api/drops", map[string]any{"channel": "shop", "sku": "hoodie", "stock": units, "price_minor": 4500,
		"currency": "EUR", "duration": "10m", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea", "limited_run_id": "run-7"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID
	want := map[string]bool{}
	for i := range units {
		user := fmt.Sprintf("viewer%d", i)
		var won claims.ClaimResult
		if st, err := api(t, "POST", s.url+"/api/drops/"+id+"/claims", map[string]any{"user_id": user}, &won); st != 200 || won.HoldID == "" {
			t.Fatalf("claim: %d %v %+v", st, err, won)
		}
		if st, err := api(t, "POST", s.url+"/api/wallets/"+user+"/topup", map[string]any{"key": "k" + user, "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
			t.Fatalf("top-up: %d %v", st, err)
		}
		var paid claims.HoldStatus
		if st, err := api(t, "POST", s.url+"/api/holds/"+won.HoldID+"/pay", map[string]any{"user_id": user, "method": "wallet"}, &paid); st != 200 || paid.Receipt == "" {
			t.Fatalf("pay: %d %v", st, err)
		}
		if st, err := api(t, "POST", s.url+"/api/redeem", map[string]any{"receipt": paid.Receipt}, nil); st != 200 {
			t.Fatalf("redeem: %d %v", st, err)
		}
		for _, k := range []string{"hold_won", "hold_paid", "pickup_redeemed"} {
			want["msg_"+k+"_"+won.HoldID] = true
		}
	}
	var killed string
	select {
	case killed = <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatalf("no fourth delivery in 30s; %d received", rcv.unique())
	}
	s.kill()
	close(release)                         // the answer goes to a dead server
	startServer(t, data, freePort(t), nil) // on the same data dir; stopped at cleanup
	deadline := time.Now().Add(60 * time.Second)
	for rcv.unique() < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bodies) != len(want) {
		t.Fatalf("receiver has %d of %d events after the restart", len(rcv.bodies), len(want))
	}
	for id := range want {
		if rcv.bodies[id] == nil {
			t.Fatalf("event %s lost", id)
		}
	}
	times := 0
	for _, id := range rcv.ids {
		if id == killed {
			times++
		}
	}
	if times < 2 {
		t.Fatalf("the delivery in flight at the kill (%s) was accepted %d times; want it again after the restart with the same id", killed, times)
	}
	for hold, ks := range rcv.kinds {
		if fmt.Sprint(ks) != "[hold.won hold.paid pickup.redeemed]" {
			t.Fatalf("hold %s: events in order %v", hold, ks)
		}
	}
	var b claims.EventBody
	_ = json.Unmarshal(rcv.bodies["msg_hold_paid_"+claims.HoldID(id, 1)], &b)
	if b.Data.SKU != "hoodie" || b.Data.LimitedRunID != "run-7" || b.Data.CreatorID != "crea" || b.Data.HolderID == "" || b.Data.AmountMinor != 4500 {
		t.Fatalf("hold.paid body %+v", b)
	}
	for id, body := range rcv.bodies {
		for i := range units {
			if u := fmt.Sprintf("viewer%d", i); bytes.Contains(body, []byte(u)) {
				t.Fatalf("event %s names the viewer %s: %s", id, u, body)
			}
		}
	}
	t.Logf("%d events, %d deliveries accepted; %s was in flight at SIGKILL and came again with the same id", len(rcv.bodies), len(rcv.ids), killed)
}
