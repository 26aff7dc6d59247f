package claims_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
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
