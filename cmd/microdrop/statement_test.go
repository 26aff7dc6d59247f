package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/microdrop/microdrop/claims"
)

func getAs(t *testing.T, url string, admin bool) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if admin {
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A creator's money in serve: a paid hold credits the balance less the
// creator's own fee, a refund reverses part of it, the admin API triggers
// a payout run that writes a payout file, and the statement (HTML and
// CSV) itemises it; all admin only, a bad period is a 400.
func TestCreatorMoneyInServe(t *testing.T) {
	data := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "microdrop.yml")
	if err := os.WriteFile(cfg, []byte(`payments:
  fee_basis_points: 1000
creators:
  crea:
    fee_basis_points: 500
    fee_fixed_minor: 25
    payout:
      schedule: threshold
      threshold_minor: 1000
      minimum_minor: 500
      currency: EUR
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	m := NewMain(io.Discard, &lockedWriter{w: &stderr})
	env := func(k string) (string, bool) {
		if k == "MICRODROP_ADMIN_TOKEN" {
			return testAdminToken, true
		}
		return "", false
	}
	if err := m.ParseFlags([]string{"--config", cfg, "--http", "127.0.0.1:0", "--rtsp", "off", "--data", data}, env); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "http://" + m.HTTPAddr
	var open claims.DropResponse
	if st, err := api(t, "POST", base+"/api/drops", map[string]any{"channel": "streamer", "sku": "hoodie", "stock": 2, "price_minor": 4500,
		"currency": "EUR", "duration": "1m", "policy": "fcfs", "pay": []string{"wallet"}, "creator_id": "crea", "limited_run_id": "run-7"}, &open); st != 201 {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID
	var holds []string
	for _, u := range []string{"ann", "ben"} {
		var won claims.ClaimResult
		if st, err := api(t, "POST", base+"/api/drops/"+id+"/claims", map[string]any{"user_id": u}, &won); st != 200 || won.HoldID == "" {
			t.Fatalf("claim: %d %v", st, err)
		}
		holds = append(holds, won.HoldID)
	}
	if st, _ := api(t, "POST", base+"/api/wallets/ann/topup", map[string]any{"key": "k1", "amount_minor": 4500, "currency": "EUR"}, nil); st != 200 {
		t.Fatalf("top-up: %d", st)
	}
	if st, _ := api(t, "POST", base+"/api/holds/"+holds[0]+"/pay", map[string]any{"user_id": "ann", "method": "wallet"}, nil); st != 200 {
		t.Fatalf("pay: %d", st)
	}
	// 4500 less 5% (225) and 0.25: 4250 available; ben's hold is pending.
	var bal struct{ Balances []claims.CreatorBalance }
	if st, err := api(t, "GET", base+"/api/creators/balances", nil, &bal); st != 200 || len(bal.Balances) != 1 ||
		bal.Balances[0].Available != 4250 || bal.Balances[0].Pending != 4250 || bal.Balances[0].CreatorID != "crea" {
		t.Fatalf("balances: %d %v %+v", st, err, bal)
	}
	// Refunds: bad input changes nothing; a 1000 refund takes 944 from the creator.
	for _, body := range []map[string]any{{"amount_minor": 100}, {"key": "r 1"}, {"key": "r1", "amount_minor": 9999}, {"key": "r1", "bogus": 1}} {
		if st, _ := api(t, "POST", base+"/api/holds/"+holds[0]+"/refund", body, nil); st != 400 && st != 409 {
			t.Fatalf("bad refund %v: %d", body, st)
		}
	}
	if st, _ := api(t, "POST", base+"/api/holds/"+holds[1]+"/refund", map[string]any{"key": "r1"}, nil); st != 409 {
		t.Fatalf("refund of an unpaid hold: %d", st)
	}
	if st, _ := api(t, "POST", base+"/api/holds/"+holds[0]+"/refund", map[string]any{"key": "r1", "amount_minor": 1000}, nil); st != 200 {
		t.Fatalf("refund: %d", st)
	}
	// Nobody without the admin token sees or moves creator money.
	for _, u := range []string{"/api/creators/balances", "/api/payouts", "/api/creators/crea/statement", "/dashboard/creators/crea/statement",
		"/dashboard/creators/crea/statement?format=csv"} {
		if st, body := getAs(t, base+u, false); st != 401 || strings.Contains(body, "4250") {
			t.Fatalf("%s without the token: %d %s", u, st, body)
		}
	}
	req, _ := http.NewRequest("POST", base+"/api/payouts/run", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("payout run without the token: %v %v", resp, err)
	}
	var rep claims.RunReport
	if st, err := api(t, "POST", base+"/api/payouts/run", nil, &rep); st != 200 || len(rep.Paid) != 1 || rep.Paid[0].AmountMinor != 4250-944 {
		t.Fatalf("payout run: %d %v %+v", st, err, rep)
	}
	po := rep.Paid[0]
	file, err := os.ReadFile(filepath.Join(data, "payouts", po.Reference))
	if err != nil || !strings.Contains(string(file), po.ID+",drop,crea,run-7,"+id+",hoodie,EUR,3306,33.06 EUR") ||
		!strings.Contains(string(file), po.ID+",creator,crea,,,,EUR,3306,") {
		t.Fatalf("payout file %s: %v\n%s", po.Reference, err, file)
	}
	// The statement, as HTML and CSV.
	st, html := getAs(t, base+"/dashboard/creators/crea/statement", true)
	if st != 200 || !strings.Contains(html, `data-drop="`+id+`"`) || !strings.Contains(html, "EUR 33.06") || !strings.Contains(html, po.ID) ||
		!strings.Contains(html, "run-7") {
		t.Fatalf("statement page: %d\n%s", st, html)
	}
	st, body := getAs(t, base+"/dashboard/creators/crea/statement?format=csv", true)
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if st != 200 || err != nil || len(rows) != 3 || strings.Join(rows[1], ",") != "crea,"+id+",hoodie,run-7,EUR,1,4500,250,1000,56,3306,3306" ||
		rows[2][1] != "total" {
		t.Fatalf("statement CSV: %d %v\n%s", st, err, body)
	}
	if st, body := getAs(t, base+"/api/creators/crea/statement?format=csv", true); st != 200 || !strings.HasPrefix(body, strings.Join(claims.StatementCSVHeader, ",")) {
		t.Fatalf("API statement CSV: %d %s", st, body)
	}
	for _, q := range []string{"from=2026-13-01", "to=yesterday", "from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01", "currency=euro"} {
		if st, body := getAs(t, base+"/dashboard/creators/crea/statement?"+q, true); st != 400 || !strings.Contains(body, "statement-error") {
			t.Fatalf("statement ?%s: %d\n%s", q, st, body)
		}
		if st, _ := getAs(t, base+"/api/creators/crea/statement?"+q, true); st != 400 {
			t.Fatalf("API statement ?%s: %d", q, st)
		}
	}
	if st, _ := getAs(t, base+"/api/creators/no%20one/statement", true); st != 400 {
		t.Fatalf("statement of a bad creator id: %d", st)
	}
	// The dashboard shows the creator's money.
	if st, body := getAs(t, base+"/dashboard", true); st != 200 || !strings.Contains(body, `data-creator="crea"`) || !strings.Contains(body, "EUR 33.06") {
		t.Fatalf("dashboard: %d\n%s", st, body)
	}
	var audit claims.MoneyReport
	if st, _ := api(t, "GET", base+"/api/money/audit", nil, &audit); st != 200 || !audit.Balanced {
		t.Fatalf("books: %+v", audit)
	}
}

func TestPayoutConfigErrors(t *testing.T) {
	for _, c := range []struct{ yml, want string }{
		{"creators:\n  c:\n    payout: {schedule: hourly, currency: EUR}\n", "daily, weekly or threshold"},
		{"creators:\n  c:\n    payout: {schedule: weekly, weekday: someday, currency: EUR}\n", "creators.c.payout.weekday"},
		{"creators:\n  c:\n    payout: {schedule: daily}\n", "currency"},
		{"creators:\n  c:\n    payout: {schedule: threshold, currency: EUR}\n", "threshold_minor"},
		{"creators:\n  c:\n    payout: {schedule: daily, currency: EUR, connect_account: acct_1}\n", "needs payments.stripe.secret_key"},
		{"creators:\n  c:\n    payout: {schedule: daily, currency: EUR, connect_account: ba_1}\n", "acct_"},
		{"creators:\n  c:\n    fee_basis_points: 9000\n", "creators.c: fee_basis_points"},
		{"creators:\n  c:\n    fee_fixed_minor: -1\n", "creators.c: fee_basis_points/fee_fixed_minor"},
	} {
		path := filepath.Join(t.TempDir(), "c.yml")
		_ = os.WriteFile(path, []byte(c.yml), 0o600)
		m := NewMain(io.Discard, io.Discard)
		err := m.ParseFlags([]string{"--config", path}, func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.yml, err, c.want)
		}
	}
}
