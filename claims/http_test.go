package claims_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

const adminToken = "admin-token-0123456789"

type apiClient struct {
	t   *testing.T
	url string
}

func (c apiClient) do(method, path, auth, body string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(raw, &m); err != nil {
			c.t.Fatalf("%s %s: body %q is not JSON", method, path, raw)
		}
	}
	return resp.StatusCode, m
}

func TestAPI(t *testing.T) {
	f := newFixture(t, claims.Options{})
	srv := httptest.NewServer(claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil))
	defer srv.Close()
	c := apiClient{t, srv.URL}

	open := `{"channel":"streamer","sku":"hoodie","title":"Tour hoodie","stock":2,"price_minor":4500,"currency":"EUR","duration":"90s","policy":"fcfs","claim_code":"moon"}`
	if st, body := c.do("POST", "/api/drops", "", open); st != 401 || body["code"] != "unauthorized" {
		t.Fatalf("unauthenticated open: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/drops", "wrong-token-0123456789", open); st != 401 {
		t.Fatalf("wrong token: %d %v", st, body)
	}
	for _, bad := range []string{
		`{"channel":"streamer","sku":"hoodie","stock":2,"duration":"90s","colour":"red"}`,
		`{"channel":"streamer","sku":"hoodie","stock":"two","duration":"90s"}`,
		`{"channel":"streamer","sku":"hoodie","stock":2,"duration":90}`,
		`{"channel":"streamer"`,
		`{"channel":"streamer","sku":"hoodie","stock":2,"duration":"90s"} {}`,
		``,
		`{"channel":"streamer","sku":"hoodie","stock":-1,"duration":"90s"}`,
	} {
		st, body := c.do("POST", "/api/drops", adminToken, bad)
		if st != 400 || body["code"] != "invalid" || body["message"] == "" {
			t.Fatalf("bad body %q: %d %v", bad, st, body)
		}
	}
	big := `{"title":"` + strings.Repeat("x", microdrop.MaxBodyBytes) + `"}`
	if st, body := c.do("POST", "/api/drops", adminToken, big); st != 400 || !strings.Contains(body["message"].(string), "larger") {
		t.Fatalf("oversized body: %d %v", st, body)
	}
	st, body := c.do("POST", "/api/drops", adminToken, open)
	if st != 201 {
		t.Fatalf("open: %d %v", st, body)
	}
	drop := body["drop"].(map[string]any)
	id := drop["id"].(string)
	if drop["claim_code"] != nil || !strings.HasSuffix(body["claim_url"].(string), "/c/"+id+"?code=MOON") || drop["seed"] != nil {
		t.Fatalf("open response leaks or misses fields: %v", body)
	}
	if st, _ := c.do("GET", "/api/drops/"+id, "", ""); st != 200 {
		t.Fatalf("get: %d", st)
	}
	if st, body := c.do("GET", "/api/drops/zzzz", "", ""); st != 404 || body["code"] != "not_found" {
		t.Fatalf("get unknown: %d %v", st, body)
	}
	// A bare user_id from nobody in particular is refused: only the admin
	// bridge names users.
	if st, body := c.do("POST", "/api/drops/"+id+"/claims", "", `{"user_id":"alice","login":"alice","code":"moon"}`); st != 401 || body["code"] != "unauthorized" {
		t.Fatalf("anonymous claim: %d %v", st, body)
	}
	claim := func(user, code string) (int, map[string]any) {
		return c.do("POST", "/api/drops/"+id+"/claims", adminToken, `{"user_id":"`+user+`","login":"`+user+`","code":"`+code+`"}`)
	}
	if st, body := claim("alice", "nope"); st != 400 || body["reason"] != "wrong_code" {
		t.Fatalf("wrong code: %d %v", st, body)
	}
	st, won := claim("alice", "moon")
	if st != 200 || won["outcome"] != "won" {
		t.Fatalf("claim: %d %v", st, won)
	}
	if st, body := claim("alice", "moon"); st != 409 || body["reason"] != "duplicate" {
		t.Fatalf("duplicate: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/drops/"+id+"/claims", adminToken, `{"user_id":"has space"}`); st != 400 || body["code"] != "invalid" {
		t.Fatalf("bad user id: %d %v", st, body)
	}
	claim("bob", "moon")
	if st, body := claim("carol", "moon"); st != 410 || body["code"] != "sold_out" {
		t.Fatalf("sold out: %d %v", st, body)
	}
	tok := won["token"].(string)
	if st, _ := c.do("POST", "/api/redeem", "", `{"token":"`+tok+`"}`); st != 401 {
		t.Fatalf("redeem without admin: %d", st)
	}
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"token":"`+tok+`"}`); st != 200 || body["user_id"] != "alice" {
		t.Fatalf("redeem: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"token":"`+tok+`"}`); st != 409 || body["code"] != "conflict" {
		t.Fatalf("redeem twice: %d %v", st, body)
	}
	if st, body := c.do("POST", "/api/redeem", adminToken, `{"token":"0000000000000000"}`); st != 403 {
		t.Fatalf("forged: %d %v", st, body)
	}
	if st, body := c.do("GET", "/api/drops/"+id+"/audit", "", ""); st != 200 || body["match"] != true {
		t.Fatalf("audit: %d %v", st, body)
	}
	resp, err := http.Get(srv.URL + "/api/tokens/" + tok + "/qr.png")
	if err != nil {
		t.Fatal(err)
	}
	png, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("qr png: %d", resp.StatusCode)
	}
	if st, body := c.do("POST", "/api/drops/"+id+"/extend", adminToken, `{"by":"30s"}`); st != 409 {
		t.Fatalf("extend a sold-out drop: %d %v", st, body)
	}
	if st, body := c.do("GET", "/api/stats", adminToken, ""); st != 200 || body["rejections"] == nil {
		t.Fatalf("stats: %d %v", st, body)
	}
	if st, body := c.do("GET", "/api/nothing", "", ""); st != 404 || body["code"] != "not_found" {
		t.Fatalf("unknown route: %d %v", st, body)
	}
}

// The claim code keeps claims to people who watch the stream: the public
// drop endpoints never show it, in the drop or in its claim link, while the
// admin's answers carry it in the link the overlay puts on stream. Events
// carry it for the overlay.
func TestAPIHidesClaimCodeFromThePublic(t *testing.T) {
	f := newFixture(t, claims.Options{})
	srv := httptest.NewServer(claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil))
	defer srv.Close()
	c := apiClient{t, srv.URL}
	st, body := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"hoodie","stock":2,"duration":"90s","claim_code":"moon42"}`)
	if st != 201 {
		t.Fatalf("open: %d %v", st, body)
	}
	id := body["drop"].(map[string]any)["id"].(string)
	for _, tc := range []struct {
		name, path, auth string
		status           int
		withCode         bool
	}{
		{"public drop", "/api/drops/" + id, "", 200, false},
		{"public drop, wrong token", "/api/drops/" + id, "wrong-token-0123456789", 200, false},
		{"admin drop", "/api/drops/" + id, adminToken, 200, true},
		{"public list", "/api/drops", "", 401, false},
		{"admin list", "/api/drops", adminToken, 200, true},
	} {
		req, err := http.NewRequest("GET", srv.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", "Bearer "+tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, raw)
		}
		if !tc.withCode && bytes.Contains(bytes.ToUpper(raw), []byte("MOON42")) {
			t.Fatalf("%s reveals the claim code: %s", tc.name, raw)
		}
		if tc.status != 200 {
			continue
		}
		var one struct {
			claims.DropResponse
			Drops []claims.DropResponse `json:"drops"`
		}
		if err := json.Unmarshal(raw, &one); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := one.DropResponse
		if len(one.Drops) > 0 {
			got = one.Drops[0]
		}
		if got.Drop == nil || got.Drop.ID != id || !got.Drop.CodeRequired || got.Drop.ClaimCode != "" {
			t.Fatalf("%s: drop %+v", tc.name, got.Drop)
		}
		wantURL := "http://localhost:8080/c/" + id
		if tc.withCode {
			wantURL += "?code=MOON42"
		}
		if got.ClaimURL != wantURL {
			t.Fatalf("%s: claim_url %q, want %q", tc.name, got.ClaimURL, wantURL)
		}
	}
	for {
		select {
		case e := <-f.events.C():
			if e.Kind == microdrop.DropOpened && e.DropID == id {
				if e.Drop == nil || e.Drop.ClaimCode != "MOON42" {
					t.Fatalf("DropOpened carries %+v, want the claim code", e.Drop)
				}
				return
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no DropOpened event")
		}
	}
}

func TestEntriesPaged(t *testing.T) {
	f := newFixture(t, claims.Options{})
	srv := httptest.NewServer(claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil))
	defer srv.Close()
	c := apiClient{t, srv.URL}
	_, body := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"cap","stock":10,"duration":"90s","policy":"fcfs"}`)
	id := body["drop"].(map[string]any)["id"].(string)
	for i := 0; i < 7; i++ {
		if st, b := c.do("POST", "/api/drops/"+id+"/claims", adminToken, fmt.Sprintf(`{"user_id":"u%d"}`, i)); st != 200 {
			t.Fatalf("claim: %d %v", st, b)
		}
	}
	seen := 0
	for offset := 0; ; {
		st, page := c.do("GET", fmt.Sprintf("/api/drops/%s/entries?limit=3&offset=%d", id, offset), adminToken, "")
		if st != 200 || page["total"] != float64(7) {
			t.Fatalf("page at %d: %d %v", offset, st, page)
		}
		n := len(page["entries"].([]any))
		if n > 3 {
			t.Fatalf("page of %d, limit 3", n)
		}
		seen += n
		next, ok := page["next_offset"].(float64)
		if !ok {
			break
		}
		offset = int(next)
	}
	if seen != 7 {
		t.Fatalf("paged through %d of 7 entries", seen)
	}
	for _, q := range []string{"limit=0", "limit=5001", "limit=x", "offset=-1"} {
		if st, _ := c.do("GET", "/api/drops/"+id+"/entries?"+q, adminToken, ""); st != 400 {
			t.Fatalf("%s: %d, want 400", q, st)
		}
	}
}

// TestSubSecondDurationsRefused: the API says 1s-24h and means it.
func TestSubSecondDurationsRefused(t *testing.T) {
	f := newFixture(t, claims.Options{})
	srv := httptest.NewServer(claims.NewHandler(f.svc, microdrop.Admin{Token: adminToken}, "http://localhost:8080", nil))
	defer srv.Close()
	c := apiClient{t, srv.URL}
	for _, d := range []string{"1ns", "500ms", "999ms"} {
		if st, b := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"cap","stock":1,"duration":"`+d+`"}`); st != 400 {
			t.Fatalf("duration %s: %d %v", d, st, b)
		}
	}
	for _, title := range []string{`"bad\u0000"`, `"\u202eevil"`, `"a\u200bb"`, `"\u001b[2J"`} {
		if st, b := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"cap","stock":1,"duration":"1m","title":`+title+`}`); st != 400 || !strings.Contains(b["message"].(string), "title") {
			t.Fatalf("title %s: %d %v", title, st, b)
		}
	}
	st, b := c.do("POST", "/api/drops", adminToken, `{"channel":"streamer","sku":"cap","stock":1,"duration":"1s"}`)
	if st != 201 {
		t.Fatalf("1s: %d %v", st, b)
	}
	id := b["drop"].(map[string]any)["id"].(string)
	if st, b := c.do("POST", "/api/drops/"+id+"/extend", adminToken, `{"by":"500ms"}`); st != 400 {
		t.Fatalf("extend by 500ms: %d %v", st, b)
	}
	if st, b := c.do("POST", "/api/drops/"+id+"/claims", adminToken, `{"user_id":"u1","login":"ann\u202e"}`); st != 400 || !strings.Contains(b["message"].(string), "login") {
		t.Fatalf("bridge login with RLO: %d %v", st, b)
	}
}
