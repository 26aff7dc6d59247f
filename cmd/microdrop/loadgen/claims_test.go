package loadgen

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

const testToken = "loadgen-test-admin-token"

// apiServer serves the real claims API over a real service and SQLite
// ledger, as `serve` mounts it.
func apiServer(t *testing.T, opts claims.Options) string {
	t.Helper()
	lt, err := newLocalTarget(t.Context(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(claims.NewHandler(lt.svc, microdrop.Admin{Token: testToken}, "http://example.invalid", nil))
	t.Cleanup(func() {
		srv.Close()
		if err := lt.close(); err != nil {
			t.Error(err)
		}
	})
	return srv.URL
}

func checkClaimsReport(t *testing.T, rep ClaimsReport, stock int) {
	t.Helper()
	if rep.Errors != 0 || rep.FirstError != "" {
		t.Errorf("%d errors, first %q", rep.Errors, rep.FirstError)
	}
	// A raffle acknowledges entries, not wins: its winners are drawn at close.
	acked := stock
	if rep.Policy == "raffle" {
		acked = 0
	}
	if rep.Winners != stock || rep.Acked != acked || rep.Oversold || rep.OverCapUsers != 0 || rep.AckedNotInLedger != 0 || !rep.AuditMatch {
		t.Errorf("report %+v, want %d winners, %d acknowledged and in the ledger, audit match", rep, stock, acked)
	}
	// Every user's second claim is refused (cap 1).
	if rep.Rejected < rep.Claims-rep.Users {
		t.Errorf("rejected %d of %d claims from %d users", rep.Rejected, rep.Claims, rep.Users)
	}
	if rep.P50MS > rep.P99MS || rep.P99MS > rep.P999MS || rep.P999MS > rep.MaxMS {
		t.Errorf("percentiles out of order: %+v", rep)
	}
}

func TestClaimsInProcess(t *testing.T) {
	for _, policy := range []string{"fcfs", "bucketed", "raffle"} {
		t.Run(policy, func(t *testing.T) {
			rep, err := Claims(t.Context(), ClaimsConfig{Claims: 600, Users: 300, Stock: 50, Concurrency: 16, Cap: 1, Policy: policy,
				Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Target != "in-process sqlite" || rep.Policy != policy {
				t.Errorf("target %q policy %q", rep.Target, rep.Policy)
			}
			checkClaimsReport(t, rep, 50)
		})
	}
}

// TestClaimsOverHTTP fires through the lean HTTP client at the real API.
func TestClaimsOverHTTP(t *testing.T) {
	url := apiServer(t, claims.Options{ClaimRate: 1e9, ClaimBurst: 1 << 30})
	rep, err := Claims(t.Context(), ClaimsConfig{Claims: 400, Users: 400, Stock: 40, Concurrency: 8, Cap: 1, Policy: "fcfs",
		URLs: []string{url + "/"}, AdminToken: testToken, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rep.Target, "http ") {
		t.Errorf("target %q", rep.Target)
	}
	checkClaimsReport(t, rep, 40)

	if _, err := Claims(t.Context(), ClaimsConfig{Claims: 10, Users: 10, Stock: 1, Concurrency: 1, Cap: 1, Policy: "fcfs",
		URLs: []string{url}, AdminToken: "wrong-token", Timeout: time.Minute}); err == nil {
		t.Error("opened a drop with a wrong admin token")
	}
}

func TestClaimsConfigValidate(t *testing.T) {
	good := ClaimsConfig{Claims: 10, Users: 10, Stock: 1, Concurrency: 1, Cap: 1, Policy: "fcfs", Timeout: time.Second}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(*ClaimsConfig){
		func(c *ClaimsConfig) { c.Claims = 0 },
		func(c *ClaimsConfig) { c.Users = 11 },
		func(c *ClaimsConfig) { c.Stock = 0 },
		func(c *ClaimsConfig) { c.Concurrency = 5000 },
		func(c *ClaimsConfig) { c.Policy = "lottery" },
		func(c *ClaimsConfig) { c.URLs = []string{"http://x"} },
		func(c *ClaimsConfig) { c.Timeout = 0 },
	} {
		c := good
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
