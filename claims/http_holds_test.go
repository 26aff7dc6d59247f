package claims_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
)

func TestHoldsAPI(t *testing.T) {
	f := newFixture(t, claims.Options{})
	h := claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil)
	mux := http.NewServeMux()
	mux.Handle("/api/", h)
	mux.Handle("GET /.well-known/microdrop-receipt-keys", h.ReceiptKeysHandler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := apiClient{t, srv.URL}

	st, body := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"hoodie","stock":1,"price_minor":4500,"currency":"EUR","duration":"90s","policy":"fcfs","pay":["wallet"],"pay_window":"10m","limited_run_id":"run7","creator_id":"crea"}`)
	if st != 201 {
		t.Fatalf("open: %d %v", st, body)
	}
	id := body["drop"].(map[string]any)["id"].(string)
	st, won := c.do("POST", "/api/drops/"+id+"/claims", adminToken, `{"user_id":"ann","login":"ann"}`)
	if st != 200 || won["hold_id"] == nil || won["token"] != nil {
		t.Fatalf("claim: %d %v", st, won)
	}
	hold := won["hold_id"].(string)
	if st, body := c.do("POST", "/api/drops/"+id+"/claims", adminToken, `{"user_id":"ben"}`); st != 410 || body["reason"] != "waitlisted" {
		t.Fatalf("claim past stock: %d %v", st, body)
	}
	// Only the owner, through the admin bridge, sees or acts on a hold.
	if st, _ := c.do("GET", "/api/holds/"+hold+"?user_id=ann", "", ""); st != 401 {
		t.Fatalf("hold without the bridge: %d", st)
	}
	if st, body := c.do("GET", "/api/holds/"+hold+"?user_id=ben", adminToken, ""); st != 404 {
		t.Fatalf("ben reads ann's hold: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/holds/"+hold+"/release", adminToken, `{"user_id":"ben"}`); st != 404 {
		t.Fatalf("ben releases ann's hold: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/holds/"+hold+"/pay", adminToken, `{"user_id":"ben","method":"wallet"}`); st != 404 {
		t.Fatalf("ben pays ann's hold: %d %v", st, body)
	}
	st, got := c.do("GET", "/api/holds/"+hold+"?user_id=ann", adminToken, "")
	if st != 200 || got["state"] != "awaiting" || got["time_left_ms"].(float64) != float64(10*time.Minute/time.Millisecond) {
		t.Fatalf("hold: %d %v", st, got)
	}
	if st, body := c.do("POST", "/api/holds/"+hold+"/pay", adminToken, `{"user_id":"ann","method":"wallet"}`); st != 409 || !strings.Contains(body["message"].(string), "45.00 EUR") {
		t.Fatalf("pay from an empty wallet: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/holds/"+hold+"/pay", adminToken, `{"user_id":"ann","method":"cash"}`); st != 400 {
		t.Fatalf("unknown method: %d %v", st, body)
	}
	for i := 0; i < 2; i++ { // a retried top-up is a no-op
		if st, body := c.do("POST", "/api/wallets/ann/topup", adminToken, `{"key":"req-1","amount_minor":5000,"currency":"EUR"}`); st != 200 || body["balance_minor"] != 5000.0 || body["applied"] != (i == 0) {
			t.Fatalf("top-up %d: %d %v", i, st, body)
		}
	}
	st, paid := c.do("POST", "/api/holds/"+hold+"/pay", adminToken, `{"user_id":"ann","method":"wallet"}`)
	if st != 200 || paid["state"] != "paid" || paid["receipt"] == nil {
		t.Fatalf("pay: %d %v", st, paid)
	}
	receipt := paid["receipt"].(string)
	if strings.Contains(receipt, "ann") {
		t.Fatal("receipt names the viewer")
	}
	// Offline: the published keys verify it.
	resp, err := http.Get(srv.URL + "/.well-known/microdrop-receipt-keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys claims.ReceiptKeys
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil || len(keys.Keys) != 1 {
		t.Fatalf("keys %+v %v", keys, err)
	}
	resp.Body.Close()
	r, err := claims.VerifyReceipt(receipt, keys)
	if err != nil || r.DropID != id || r.SKU != "hoodie" || r.LimitedRunID != "run7" || r.Amount != 4500 || r.Currency != "EUR" || r.Unit != 1 || r.Holder == "" {
		t.Fatalf("receipt %+v %v", r, err)
	}
	// The desk takes it once.
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"receipt":"`+receipt+`"}`); st != 200 {
		t.Fatalf("redeem: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"receipt":"`+receipt+`"}`); st != 409 {
		t.Fatalf("second redeem: %d %v", st, body)
	}
	forged := receipt[:len(receipt)-3] + "AAA"
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"receipt":"`+forged+`"}`); st != 403 && st != 400 {
		t.Fatalf("forged receipt: %d %v", st, body)
	}
	if st, body := c.do("GET", "/api/money/audit", adminToken, ""); st != 200 || body["balanced"] != true {
		t.Fatalf("money audit: %d %v", st, body)
	}
	if st, body := c.do("GET", "/api/drops/"+id+"/holds", adminToken, ""); st != 200 || body["paid"] != 1.0 || body["revenue_minor"] != 4500.0 || body["passed"] != 0.0 {
		t.Fatalf("hold summary: %d %v", st, body)
	}
	if st, _ := c.do("GET", "/api/drops/"+id+"/holds", "", ""); st != 401 {
		t.Fatalf("hold summary without admin: %d", st)
	}
}

// PUT /api/holds/{id}/address: the admin vouches for the viewer, whose
// hold it must be; a bad address is refused and saves nothing; nothing in
// the API hands an address back.
func TestHoldAddressAPI(t *testing.T) {
	f := newFixture(t, claims.Options{})
	st, err := webhook.OpenStore(t.Context(), filepath.Join(t.TempDir(), "webhooks.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	wh := webhook.NewHandler(st, webhook.NewWorker(webhook.Deps{Outbox: f.ledger, Store: st}), f.ledger, microdrop.Admin{Token: adminToken})
	off := claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil)
	h := claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil).WithAddresses(wh)
	mux := http.NewServeMux()
	mux.Handle("/api/", h)
	mux.Handle("/off/", http.StripPrefix("/off", off))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := apiClient{t, srv.URL}
	code, body := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"hoodie","stock":2,"price_minor":4500,"currency":"EUR","duration":"90s","policy":"fcfs","pay":["wallet"],"pay_window":"10m"}`)
	if code != 201 {
		t.Fatalf("open: %d %v", code, body)
	}
	drop := body["drop"].(map[string]any)["id"].(string)
	holds := map[string]string{}
	for _, u := range []string{"ann", "ben"} {
		code, won := c.do("POST", "/api/drops/"+drop+"/claims", adminToken, `{"user_id":"`+u+`","login":"`+u+`"}`)
		if code != 200 || won["hold_id"] == nil {
			t.Fatalf("claim by %s: %d %v", u, code, won)
		}
		holds[u] = won["hold_id"].(string)
	}
	addr := `"address":{"recipient":"Ann","line1":"Hauptstr. 5","city":"Berlin","postal_code":"10115","country":"de"}`
	path := "/api/holds/" + holds["ann"] + "/address"
	for _, tc := range []struct {
		name, path, auth, body string
		want                   int
	}{
		{"without the admin token", path, "", `{"user_id":"ann",` + addr + `}`, 401},
		{"with a wrong token", path, "nope", `{"user_id":"ann",` + addr + `}`, 401},
		{"for another viewer's hold", path, adminToken, `{"user_id":"ben",` + addr + `}`, 404},
		{"for an unknown hold", "/api/holds/nope-1/address", adminToken, `{"user_id":"ann",` + addr + `}`, 404},
		{"without an address", path, adminToken, `{"user_id":"ann"}`, 400},
		{"without a city", path, adminToken, `{"user_id":"ann","address":{"line1":"x","postal_code":"1","country":"DE"}}`, 400},
		{"with a bidi override", path, adminToken, `{"user_id":"ann","address":{"line1":"x\u202e","city":"y","postal_code":"1","country":"DE"}}`, 400},
		{"with an unknown field", path, adminToken, `{"user_id":"ann","adress":{}}`, 400},
		{"on a server without webhooks", "/off" + path, adminToken, `{"user_id":"ann",` + addr + `}`, 404},
	} {
		if code, body := c.do("PUT", tc.path, tc.auth, tc.body); code != tc.want {
			t.Errorf("address %s: %d %v, want %d", tc.name, code, body, tc.want)
		}
	}
	if a, err := wh.ShippingAddress(t.Context(), holds["ann"]); err != nil || a != nil {
		t.Fatalf("a refused address was saved: %+v %v", a, err)
	}
	if code, body := c.do("PUT", path, adminToken, `{"user_id":"ann",`+addr+`}`); code != 204 || body != nil {
		t.Fatalf("ann's address: %d %v, want 204 and no body", code, body)
	}
	if a, err := wh.ShippingAddress(t.Context(), holds["ann"]); err != nil || a == nil || a.Line1 != "Hauptstr. 5" || a.Country != "DE" {
		t.Fatalf("saved address: %+v %v", a, err)
	}
	if _, got := c.do("GET", "/api/holds/"+holds["ann"]+"?user_id=ann", adminToken, ""); strings.Contains(fmt.Sprint(got), "Hauptstr") {
		t.Fatalf("the hold API shows the address: %v", got)
	}
	// A released hold ships nothing.
	if code, _ := c.do("POST", "/api/holds/"+holds["ben"]+"/release", adminToken, `{"user_id":"ben"}`); code != 200 {
		t.Fatalf("release: %d", code)
	}
	if code, _ := c.do("PUT", "/api/holds/"+holds["ben"]+"/address", adminToken, `{"user_id":"ben",`+addr+`}`); code != 409 {
		t.Fatalf("address for a released hold: %d, want 409", code)
	}
}
