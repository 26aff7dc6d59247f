package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// ClaimsConfig is a `loadgen claims` run: Claims claims from Users distinct
// users at one drop, Concurrency in flight.
type ClaimsConfig struct {
	Claims, Users, Stock, Concurrency, Cap int
	Policy                                 string
	// PriceMinor and Pay make a paid drop: with both, every win is a hold.
	PriceMinor int64
	Pay        []string
	// URLs are running servers to fire at (round robin); none runs the
	// claims service in this process on a durable SQLite ledger in Data
	// (a temporary dir when empty).
	URLs       []string
	AdminToken string
	Data       string
	Timeout    time.Duration
	CPUProfile string // a CPU profile of the burst, when set
}

// Validate says what is wrong with c, in the flags' words.
func (c ClaimsConfig) Validate() error {
	switch {
	case c.Claims < 1 || c.Claims > 10_000_000:
		return errors.New("--claims must be between 1 and 10,000,000")
	case c.Users < 1 || c.Users > c.Claims:
		return errors.New("--users must be between 1 and --claims")
	case c.Stock < 1 || c.Stock > claims.MaxStock:
		return fmt.Errorf("--stock must be between 1 and %d", claims.MaxStock)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return errors.New("--concurrency must be between 1 and 4096")
	case !claims.Policy(c.Policy).Valid():
		return errors.New("--policy must be fcfs, bucketed or raffle")
	case len(c.URLs) > 0 && c.AdminToken == "":
		return errors.New("--url needs the admin token: --admin-token or MICRODROP_ADMIN_TOKEN")
	case c.Timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

// ClaimsReport is what `loadgen claims --json` prints. The invariants are
// checked against the ledger, not the generator's own counters.
type ClaimsReport struct {
	Target           string  `json:"target"`
	Policy           string  `json:"policy"`
	Claims           int     `json:"claims"`
	Users            int     `json:"users"`
	Stock            int     `json:"stock"`
	Concurrency      int     `json:"concurrency"`
	Seconds          float64 `json:"seconds"`
	ClaimsPerSec     float64 `json:"claims_per_sec"`
	P50MS            float64 `json:"p50_ms"`
	P99MS            float64 `json:"p99_ms"`
	P999MS           float64 `json:"p999_ms"`
	MaxMS            float64 `json:"max_ms"`
	Acked            int     `json:"acked_wins"`
	Rejected         int     `json:"rejected"`
	Errors           int     `json:"errors"`
	Winners          int     `json:"winners"`
	Oversold         bool    `json:"oversold"`
	OverCapUsers     int     `json:"over_cap_users"`
	AckedNotInLedger int     `json:"acked_not_in_ledger"`
	AuditMatch       bool    `json:"audit_match"`
	FirstError       string  `json:"-"`
}

// claimTarget is where claims go: this process's claims service or running
// servers' API.
type claimTarget interface {
	open(ctx context.Context, req claims.OpenRequest) (string, error)
	// claim reports a win's token, or rejected for a refusal with a
	// reason (sold out, duplicate, late...); err is anything else.
	claim(ctx context.Context, dropID, user string) (token string, rejected bool, err error)
	// finish closes the drop if it is still live and returns the ledger's
	// entries and audit once the drop is final there.
	// It waits at most wait for the final state.
	finish(ctx context.Context, dropID string, wait time.Duration) ([]claims.Entry, claims.AuditReport, error)
	close() error
}

func newClaimTarget(ctx context.Context, urls []string, token, data string, conc int, opts claims.Options) (claimTarget, string, error) {
	if len(urls) > 0 {
		t := &httpTarget{api: newAPIClient(urls, token, conc)}
		return t, "http " + strings.Join(urls, ","), nil
	}
	t, err := newLocalTarget(ctx, data, opts)
	return t, "in-process sqlite", err
}

// Claims fires cfg.Claims claims at one drop and verifies the outcome from
// the ledger itself.
func Claims(ctx context.Context, cfg ClaimsConfig) (ClaimsReport, error) {
	var rep ClaimsReport
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// Users here claim as fast as the generator can: the per-user rate
	// limit is set out of the way so it measures decisions, not refusals.
	target, label, err := newClaimTarget(ctx, cfg.URLs, cfg.AdminToken, cfg.Data, cfg.Concurrency,
		claims.Options{ClaimRate: 1e9, ClaimBurst: 1 << 30})
	if err != nil {
		return rep, err
	}
	defer target.close()

	grace := claims.Duration(0)
	req := claims.OpenRequest{Channel: fmt.Sprintf("loadgen_%d", time.Now().UnixNano()%1_000_000), SKU: "loadgen", Stock: cfg.Stock,
		Duration: claims.Duration(time.Hour), Grace: &grace, Cap: cfg.Cap, Policy: claims.Policy(cfg.Policy),
		PriceMinor: cfg.PriceMinor, Currency: "EUR", Pay: cfg.Pay}
	if cfg.Policy == string(claims.Raffle) {
		// A raffle decides at close: give it a window the burst fits in.
		req.Duration = claims.Duration(cfg.Timeout / 2)
	}
	dropID, err := target.open(ctx, req)
	if err != nil {
		return rep, fmt.Errorf("open drop: %w", err)
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return rep, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return rep, err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	n := cfg.Claims
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var rejected, failed atomic.Int64
	var mu sync.Mutex
	acked := make(map[string]string) // token -> user
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				user := fmt.Sprintf("user%07d", i%cfg.Users)
				t0 := time.Now()
				tok, rej, err := target.claim(ctx, dropID, user)
				lat[i] = time.Since(t0)
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case rej:
					rejected.Add(1)
				case tok != "":
					mu.Lock()
					acked[tok] = user
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return rep, fmt.Errorf("loadgen stopped before the burst finished: %w", ctx.Err())
	}

	entries, audit, err := target.finish(ctx, dropID, finalWait)
	if err != nil {
		return rep, fmt.Errorf("verify against the ledger: %w", err)
	}
	rep = ClaimsReport{Target: label, Policy: cfg.Policy, Claims: n, Users: cfg.Users, Stock: cfg.Stock, Concurrency: cfg.Concurrency,
		Seconds: elapsed.Seconds(), ClaimsPerSec: float64(n) / elapsed.Seconds(),
		Acked: len(acked), Rejected: int(rejected.Load()), Errors: int(failed.Load()), AuditMatch: audit.Match}
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstError = e
	}
	Sorted(lat)
	rep.P50MS, rep.P99MS, rep.P999MS, rep.MaxMS = MS(Quantile(lat, 0.50)), MS(Quantile(lat, 0.99)), MS(Quantile(lat, 0.999)), MS(Quantile(lat, 1))
	inLedger := map[string]bool{}
	perUser := map[string]int{}
	for _, e := range entries {
		if e.Outcome != claims.OutcomeWon {
			continue
		}
		rep.Winners++
		inLedger[e.Token] = true
		inLedger[claims.HoldID(e.DropID, e.Seq)] = true
		perUser[e.UserID]++
		if perUser[e.UserID] == cfg.Cap+1 {
			rep.OverCapUsers++
		}
	}
	rep.Oversold = rep.Winners > cfg.Stock
	for tok := range acked {
		if !inLedger[tok] {
			rep.AckedNotInLedger++
		}
	}
	return rep, nil
}

// WriteText prints the report for a person.
func (rep ClaimsReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "loadgen claims: %d claims from %d users at a %s drop of %d (%s, concurrency %d)\n",
		rep.Claims, rep.Users, rep.Policy, rep.Stock, rep.Target, rep.Concurrency)
	fmt.Fprintf(w, "  %.0f claims/s over %.2fs; decision latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
		rep.ClaimsPerSec, rep.Seconds, rep.P50MS, rep.P99MS, rep.P999MS, rep.MaxMS)
	fmt.Fprintf(w, "  acknowledged wins %d, rejected %d, errors %d\n", rep.Acked, rep.Rejected, rep.Errors)
	fmt.Fprintf(w, "  ledger: %d winners, oversold %v, users over cap %d, acknowledged but missing %d, audit match %v\n",
		rep.Winners, rep.Oversold, rep.OverCapUsers, rep.AckedNotInLedger, rep.AuditMatch)
	if rep.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", rep.FirstError)
	}
}

// finalWait bounds the wait for a drop's final state to reach the ledger
// after its decider answered.
const finalWait = 10 * time.Second

// localTarget runs the claims service in this process with the durable
// SQLite ledger, as `serve` does.
type localTarget struct {
	svc    *claims.Service
	ledger *sqlite.Ledger
	dir    string
	temp   bool
}

func newLocalTarget(ctx context.Context, dir string, opts claims.Options) (*localTarget, error) {
	t := &localTarget{dir: dir}
	if dir == "" {
		d, err := os.MkdirTemp("", "microdrop-loadgen-")
		if err != nil {
			return nil, err
		}
		t.dir, t.temp = d, true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l, err := sqlite.Open(ctx, filepath.Join(t.dir, "ledger.db"), nil)
	if err != nil {
		t.removeTemp()
		return nil, err
	}
	t.ledger = l
	signer, err := claims.NewTokenSigner([]byte("loadgen-signing-key-0123456789"))
	if err != nil {
		return nil, errors.Join(err, t.ledger.Close(), t.removeTemp())
	}
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer,
		Logger: slog.New(slog.DiscardHandler), Options: opts})
	if err != nil {
		return nil, errors.Join(err, t.ledger.Close(), t.removeTemp())
	}
	t.svc = svc
	if err := svc.Start(ctx); err != nil {
		return nil, errors.Join(err, t.close())
	}
	return t, nil
}

func (t *localTarget) removeTemp() error {
	if t.temp {
		return os.RemoveAll(t.dir)
	}
	return nil
}

func (t *localTarget) open(ctx context.Context, req claims.OpenRequest) (string, error) {
	d, err := t.svc.OpenDrop(ctx, req)
	if err != nil {
		return "", err
	}
	return d.ID, nil
}

func (t *localTarget) claim(ctx context.Context, dropID, user string) (string, bool, error) {
	r, err := t.svc.Claim(ctx, claims.ClaimRequest{DropID: dropID, Viewer: claims.Viewer{UserID: user}})
	if err != nil {
		if reason := microdrop.ErrorReason(err); reason != "" && reason != claims.ReasonUnavailable {
			return "", true, nil
		}
		return "", false, err
	}
	if r.HoldID != "" {
		return r.HoldID, false, nil // a paid drop's win: its hold is the proof
	}
	return r.Token, false, nil
}

func (t *localTarget) finish(ctx context.Context, dropID string, wait time.Duration) ([]claims.Entry, claims.AuditReport, error) {
	if d, err := t.svc.Drop(ctx, dropID); err == nil && !d.State.Final() {
		if _, err := t.svc.CloseDrop(ctx, dropID, "loadgen"); err != nil {
			return nil, claims.AuditReport{}, err
		}
	}
	// The decider commits the final state just after answering.
	var d *claims.Drop
	for deadline := time.Now().Add(wait); ; {
		var err error
		if d, err = t.ledger.Drop(ctx, dropID); err != nil {
			return nil, claims.AuditReport{}, err
		}
		if d.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			return nil, claims.AuditReport{}, fmt.Errorf("drop %s not final in the ledger after %v", dropID, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	es, err := t.ledger.Entries(ctx, dropID)
	if err != nil {
		return nil, claims.AuditReport{}, err
	}
	return es, claims.Audit(d, es), nil
}

func (t *localTarget) close() error {
	return errors.Join(t.svc.Close(), t.ledger.Close(), t.removeTemp())
}

// httpTarget fires at running servers through the JSON API, as the admin
// bridge (the admin bearer vouches for the user id it names).
type httpTarget struct {
	api  *apiClient
	next atomic.Uint64
}

func (t *httpTarget) url() string { return t.api.urls[t.next.Add(1)%uint64(len(t.api.urls))] }

func (t *httpTarget) open(ctx context.Context, req claims.OpenRequest) (string, error) {
	var resp claims.DropResponse
	if _, err := t.api.do(ctx, "POST", t.api.urls[0]+"/api/drops", req, &resp); err != nil {
		return "", err
	}
	return resp.Drop.ID, nil
}

func (t *httpTarget) claim(ctx context.Context, dropID, user string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	body, _ := json.Marshal(claims.ClaimBody{UserID: user, Login: user})
	status, resp, err := t.api.postRaw(t.url(), "/api/drops/"+dropID+"/claims", body)
	switch {
	case err != nil:
		return "", false, err
	case status == http.StatusOK:
		var res claims.ClaimResult
		if err := json.Unmarshal(resp, &res); err != nil {
			return "", false, fmt.Errorf("claim answer %q: %w", resp, err)
		}
		if res.HoldID != "" {
			return res.HoldID, false, nil
		}
		return res.Token, false, nil
	case status >= 400 && status < 500:
		return "", true, nil
	}
	return "", false, fmt.Errorf("claim answered %d: %s", status, resp)
}

func (t *httpTarget) finish(ctx context.Context, dropID string, wait time.Duration) ([]claims.Entry, claims.AuditReport, error) {
	base := t.api.urls[0]
	var d claims.DropResponse
	if _, err := t.api.do(ctx, "GET", base+"/api/drops/"+dropID, nil, &d); err != nil {
		return nil, claims.AuditReport{}, err
	}
	if !claims.State(d.Drop.State).Final() {
		if _, err := t.api.do(ctx, "POST", base+"/api/drops/"+dropID+"/close", nil, nil); err != nil {
			return nil, claims.AuditReport{}, err
		}
	}
	var audit claims.AuditReport
	for deadline := time.Now().Add(wait); ; {
		if _, err := t.api.do(ctx, "GET", base+"/api/drops/"+dropID+"/audit", nil, &audit); err != nil {
			return nil, audit, err
		}
		if audit.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			return nil, audit, fmt.Errorf("drop %s not final after %v", dropID, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var listing struct {
		Entries []claims.EntryView `json:"entries"`
	}
	if _, err := t.api.do(ctx, "GET", base+"/api/drops/"+dropID+"/entries", nil, &listing); err != nil {
		return nil, audit, err
	}
	es := make([]claims.Entry, len(listing.Entries))
	for i, e := range listing.Entries {
		es[i] = e.Entry
		es[i].Token = e.Token
	}
	return es, audit, nil
}

func (t *httpTarget) close() error {
	t.api.close()
	return nil
}
