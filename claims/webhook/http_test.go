package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/webhook"
)

const adminToken = "admin-token-0123456789"

func adminFor() microdrop.Admin { return microdrop.NewAdmin(adminToken, false, time.Now) }

func call(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, bytes.NewBufferString(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestEndpointAPI(t *testing.T) {
	r := newRig(t, webhook.Options{})
	srv := httptest.NewServer(r.h)
	defer srv.Close()
	count := func() int {
		eps, err := r.store.Endpoints(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(eps)
	}
	for _, c := range []struct{ name, token, body, code, msg string }{
		{"no token", "", `{"url":"https://shop.example/h","kinds":["hold.paid"]}`, "unauthorized", "admin token"},
		{"wrong token", "nope-nope-nope-nope", `{"url":"https://shop.example/h","kinds":["hold.paid"]}`, "unauthorized", "admin token"},
		{"no url", adminToken, `{"kinds":["hold.paid"]}`, "invalid", "url is required"},
		{"relative url", adminToken, `{"url":"/hooks","kinds":["hold.paid"]}`, "invalid", "absolute http or https"},
		{"ftp url", adminToken, `{"url":"ftp://shop.example/h","kinds":["hold.paid"]}`, "invalid", "absolute http or https"},
		{"password in url", adminToken, `{"url":"https://u:p@shop.example/h","kinds":["hold.paid"]}`, "invalid", "password"},
		{"unknown kind", adminToken, `{"url":"https://shop.example/h","kinds":["hold.sold"]}`, "invalid", `unknown event kind "hold.sold"`},
		{"no kinds", adminToken, `{"url":"https://shop.example/h","kinds":[]}`, "invalid", "at least one event kind"},
		{"bad channel", adminToken, `{"url":"https://shop.example/h","kinds":["hold.paid"],"channel":"Shop Now"}`, "invalid", "channel must be"},
		{"unknown field", adminToken, `{"url":"https://shop.example/h","kinds":["hold.paid"],"secret":"mine"}`, "invalid", "unknown field"},
		{"not json", adminToken, `url=https://shop.example`, "invalid", "not valid JSON"},
	} {
		code, out := call(t, srv, "POST", "/api/webhooks/endpoints", c.token, c.body)
		if out["code"] != c.code || !strings.Contains(out["message"].(string), c.msg) || code < 400 {
			t.Errorf("%s: %d %v, want %s %q", c.name, code, out, c.code, c.msg)
		}
	}
	if n := count(); n != 0 {
		t.Fatalf("refused requests created %d endpoints", n)
	}
	code, out := call(t, srv, "POST", "/api/webhooks/endpoints", adminToken, `{"url":"https://shop.example/h","channel":"shop","kinds":["hold.paid","pickup.redeemed"],"fulfilment":true}`)
	if code != http.StatusCreated || !strings.HasPrefix(out["secret"].(string), "whsec_") || out["fulfilment"] != true {
		t.Fatalf("create: %d %v", code, out)
	}
	id := out["id"].(string)
	code, out = call(t, srv, "GET", "/api/webhooks/endpoints", adminToken, "")
	if code != 200 || strings.Contains(toJSON(out), "whsec_") || !strings.Contains(toJSON(out), id) {
		t.Fatalf("list shows the secret or not the endpoint: %d %v", code, out)
	}
	if code, _ := call(t, srv, "GET", "/api/webhooks/endpoints", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("list without a token: %d", code)
	}
	for _, c := range []struct{ body, msg string }{
		{`{"kinds":["nope"]}`, "unknown event kind"},
		{`{"url":"javascript:alert(1)"}`, "absolute http or https"},
		{`{"channel":"other"}`, "cannot change"},
	} {
		code, out := call(t, srv, "PATCH", "/api/webhooks/endpoints/"+id, adminToken, c.body)
		if code != 400 || !strings.Contains(out["message"].(string), c.msg) {
			t.Errorf("patch %s: %d %v", c.body, code, out)
		}
	}
	ep, _ := r.store.Endpoint(context.Background(), id)
	if ep.URL != "https://shop.example/h" || len(ep.Kinds) != 2 || ep.Channel != "shop" {
		t.Fatalf("refused updates changed the endpoint: %+v", ep)
	}
	if code, _ := call(t, srv, "PATCH", "/api/webhooks/endpoints/"+id, "", `{"enabled":false}`); code != http.StatusUnauthorized {
		t.Fatalf("patch without a token: %d", code)
	}
	code, out = call(t, srv, "PATCH", "/api/webhooks/endpoints/"+id, adminToken, `{"kinds":["`+claims.EventHoldWon+`"],"enabled":false}`)
	if code != 200 || out["disabled"] != true {
		t.Fatalf("patch: %d %v", code, out)
	}
	if code, _ := call(t, srv, "POST", "/api/webhooks/endpoints/"+id+"/deliveries/msg_nope/redeliver", adminToken, ""); code != 404 {
		t.Fatalf("redeliver of an unknown event: %d", code)
	}
	if code, _ := call(t, srv, "GET", "/api/webhooks/endpoints/ep_nope/deliveries", adminToken, ""); code != 404 {
		t.Fatalf("log of an unknown endpoint: %d", code)
	}
	if code, _ := call(t, srv, "DELETE", "/api/webhooks/endpoints/"+id, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("delete without a token: %d", code)
	}
	if code, _ := call(t, srv, "DELETE", "/api/webhooks/endpoints/"+id, adminToken, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d endpoints after delete", n)
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
