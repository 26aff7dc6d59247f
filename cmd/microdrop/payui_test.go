package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/stripe/stripetest"
)

// serve hands its Stripe card class to the claim page: with Stripe
// configured, a viewer's "Pay by card" on their own hold redirects to the
// hold's Checkout Session.
func TestServeClaimPagePaysByCard(t *testing.T) {
	mock := stripetest.StartMock(t)
	stderr := &lockedWriter{w: &bytes.Buffer{}}
	m := NewMain(io.Discard, stderr)
	vars := map[string]string{"MICRODROP_ADMIN_TOKEN": testAdminToken, "MICRODROP_SECRET_KEY": "sk_test_123",
		"MICRODROP_WEBHOOK_SECRET": "whsec_test_0123456789", "MICRODROP_API_BASE": mock}
	env := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(stderr.String(), "card payments are on") {
		t.Fatalf("serve did not switch card payments on:\n%s", stderr)
	}
	base := "http://" + m.HTTPAddr
	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "hoodie", "stock": 1, "price_minor": 4500,
		"currency": "EUR", "duration": "1m", "policy": "fcfs", "pay": []string{"card"}}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	page := base + "/c/" + open.Drop.ID
	jar, _ := cookiejar.New(nil)
	viewer := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		if r.URL.Host != m.HTTPAddr {
			return http.ErrUseLastResponse // not into Stripe's checkout
		}
		return nil
	}}
	read := func(resp *http.Response, err error) (*http.Response, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	_, body := read(viewer.Get(page))
	csrf := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(body)
	if csrf == nil {
		t.Fatalf("claim page without a form:\n%s", body)
	}
	_, body = read(viewer.PostForm(page, url.Values{"csrf": {csrf[1]}}))
	pay := regexp.MustCompile(`action="(/c/[^"]+/pay)"`).FindStringSubmatch(body)
	if pay == nil || !strings.Contains(body, `id="pay-card"`) || strings.Contains(body, `id="pay-wallet"`) {
		t.Fatalf("a card-only drop with Stripe configured should offer the card:\n%s", body)
	}
	resp, _ := read(viewer.PostForm(base+pay[1], url.Values{"csrf": {csrf[1]}, "method": {"card"}}))
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("pay by card: %d, Location %q", resp.StatusCode, loc)
	}
}
