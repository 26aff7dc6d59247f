package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/claims/sqlite"
)

// claimsReport is what `loadgen claims --json` prints. The invariants are
// checked against the ledger, not the generator's own counters.
type claimsReport struct {
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
}

type claimTarget interface {
	open(ctx context.Context, req claims.OpenRequest) (string, error)
	claim(ctx context.Context, dropID, user string) (token string, rejected bool, err error)
	// verify returns the ledger's won entries and its audit.
	verify(ctx context.Context, dropID string) ([]claims.Entry, claims.AuditReport, error)
	close() error
}

func runLoadgenClaims(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen claims", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("claims", 100000, "claims to fire")
	users := fs.Int("users", 100000, "distinct users")
	stock := fs.Int("stock", 1000, "drop stock")
	conc := fs.Int("concurrency", 256, "claims in flight at once")
	policy := fs.String("policy", "fcfs", "fcfs, bucketed or raffle")
	capFlag := fs.Int("cap", 1, "per-user cap")
	price := fs.Int64("price", 0, "price in minor units; with --pay every win is a hold")
	pay := fs.String("pay", "", "confirmation classes the drop takes (wallet, card; comma-separated): wins become holds")
	urls := fs.String("url", "", "fire at running servers (comma-separated, round robin) instead of in-process")
	token := fs.String("admin-token", os.Getenv("MICRODROP_ADMIN_TOKEN"), "admin token for --url (or MICRODROP_ADMIN_TOKEN)")
	data := fs.String("data", "", "data dir for the in-process ledger (default: a temporary dir, removed after)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the burst to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > 10_000_000:
		return errors.New("--claims must be between 1 and 10,000,000")
	case *users < 1 || *users > *n:
		return errors.New("--users must be between 1 and --claims")
	case *stock < 1 || *stock > claims.MaxStock:
		return fmt.Errorf("--stock must be between 1 and %d", claims.MaxStock)
	case *conc < 1 || *conc > 4096:
		return errors.New("--concurrency must be between 1 and 4096")
	case !claims.Policy(*policy).Valid():
		return errors.New("--policy must be fcfs, bucketed or raffle")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var target claimTarget
	var err error
	label := "in-process sqlite"
	if *urls != "" {
		if *token == "" {
			return errors.New("--url needs the admin token: --admin-token or MICRODROP_ADMIN_TOKEN")
		}
		target = newHTTPTarget(strings.Split(*urls, ","), *token, *conc)
		label = "http " + *urls
	} else {
		target, err = newLocalTarget(ctx, *data)
		if err != nil {
			return err
		}
	}
	defer target.close()

	grace := claims.Duration(0)
	req := claims.OpenRequest{Channel: fmt.Sprintf("loadgen_%d", time.Now().UnixNano()%1_000_000), SKU: "loadgen", Stock: *stock,
		Duration: claims.Duration(time.Hour), Grace: &grace, Cap: *capFlag, Policy: claims.Policy(*policy), PriceMinor: *price, Currency: "EUR"}
	if *pay != "" {
		req.Pay = strings.Split(*pay, ",")
	}
	if *policy == string(claims.Raffle) {
		// A raffle decides at close: give it a window the burst fits in.
		req.Duration = claims.Duration(*timeout / 2)
	}
	dropID, err := target.open(ctx, req)
	if err != nil {
		return fmt.Errorf("open drop: %w", err)
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	lat := make([]time.Duration, *n)
	var next atomic.Int64
	var rejected, failed atomic.Int64
	var mu sync.Mutex
	acked := make(map[string]string) // token -> user
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || ctx.Err() != nil {
					return
				}
				user := fmt.Sprintf("user%07d", i%*users)
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
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		return fmt.Errorf("loadgen stopped before the burst finished: %w", ctx.Err())
	}

	entries, audit, err := target.verify(ctx, dropID)
	if err != nil {
		return fmt.Errorf("verify against the ledger: %w", err)
	}
	rep := claimsReport{Target: label, Policy: *policy, Claims: *n, Users: *users, Stock: *stock, Concurrency: *conc,
		Seconds: elapsed.Seconds(), ClaimsPerSec: float64(*n) / elapsed.Seconds(),
		Acked: len(acked), Rejected: int(rejected.Load()), Errors: int(failed.Load()), AuditMatch: audit.Match}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	rep.P50MS, rep.P99MS, rep.P999MS, rep.MaxMS = pct(0.50), pct(0.99), pct(0.999), float64(lat[len(lat)-1].Microseconds())/1000
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
		if perUser[e.UserID] == *capFlag+1 {
			rep.OverCapUsers++
		}
	}
	rep.Oversold = rep.Winners > *stock
	for tok := range acked {
		if !inLedger[tok] {
			rep.AckedNotInLedger++
		}
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "loadgen claims: %d claims from %d users at a %s drop of %d (%s, concurrency %d)\n",
		rep.Claims, rep.Users, rep.Policy, rep.Stock, rep.Target, rep.Concurrency)
	fmt.Fprintf(stdout, "  %.0f claims/s over %.2fs; decision latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
		rep.ClaimsPerSec, rep.Seconds, rep.P50MS, rep.P99MS, rep.P999MS, rep.MaxMS)
	fmt.Fprintf(stdout, "  acknowledged wins %d, rejected %d, errors %d\n", rep.Acked, rep.Rejected, rep.Errors)
	fmt.Fprintf(stdout, "  ledger: %d winners, oversold %v, users over cap %d, acknowledged but missing %d, audit match %v\n",
		rep.Winners, rep.Oversold, rep.OverCapUsers, rep.AckedNotInLedger, rep.AuditMatch)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(stdout, "  first error: %s\n", e)
	}
	return nil
}

// localTarget runs the claims service in this process with the durable
// SQLite ledger, as `serve` does.
type localTarget struct {
	svc    *claims.Service
	ledger *sqlite.Ledger
	dir    string
	temp   bool
}

func newLocalTarget(ctx context.Context, dir string) (*localTarget, error) {
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
		return nil, err
	}
	t.ledger = l
	signer, err := claims.NewTokenSigner([]byte("loadgen-signing-key-0123456789"))
	if err != nil {
		return nil, err
	}
	// Users here claim as fast as the generator can: the per-user rate
	// limit is set out of the way so it measures decisions, not refusals.
	svc, err := claims.New(claims.Deps{Ledger: l, Bus: microdrop.NewMemoryBus(), Signer: signer,
		Logger: slog.New(slog.DiscardHandler), Options: claims.Options{ClaimRate: 1e9, ClaimBurst: 1 << 30}})
	if err != nil {
		return nil, err
	}
	t.svc = svc
	return t, svc.Start(ctx)
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
		if microdrop.ErrorReason(err) != "" && microdrop.ErrorReason(err) != claims.ReasonUnavailable {
			return "", true, nil
		}
		return "", false, err
	}
	if r.HoldID != "" {
		return r.HoldID, false, nil // a paid drop's win: its hold is the proof
	}
	return r.Token, false, nil
}

func (t *localTarget) verify(ctx context.Context, dropID string) ([]claims.Entry, claims.AuditReport, error) {
	if d, err := t.svc.Drop(ctx, dropID); err == nil && !d.State.Final() {
		if _, err := t.svc.CloseDrop(ctx, dropID, "loadgen"); err != nil {
			return nil, claims.AuditReport{}, err
		}
	}
	// Let the decider finish so the final state is committed.
	if err := t.svc.Close(); err != nil {
		return nil, claims.AuditReport{}, err
	}
	es, err := t.ledger.Entries(ctx, dropID)
	if err != nil {
		return nil, claims.AuditReport{}, err
	}
	d, err := t.ledger.Drop(ctx, dropID)
	if err != nil {
		return nil, claims.AuditReport{}, err
	}
	return es, claims.Audit(d, es), nil
}

func (t *localTarget) close() error {
	err := errors.Join(t.svc.Close(), t.ledger.Close())
	if t.temp {
		err = errors.Join(err, os.RemoveAll(t.dir))
	}
	return err
}

// httpTarget fires at running servers through the JSON API. Claims go over
// a lean HTTP/1.1 client of its own (raw keep-alive connections, one request
// in flight each): net/http's client cost more CPU than the server it was
// measuring, on the same two cores.
type httpTarget struct {
	urls   []string
	token  string
	client *http.Client
	next   atomic.Uint64
	conns  chan *rawConn
}

func newHTTPTarget(urls []string, token string, conc int) *httpTarget {
	for i := range urls {
		urls[i] = strings.TrimRight(strings.TrimSpace(urls[i]), "/")
	}
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc, IdleConnTimeout: time.Minute}
	return &httpTarget{urls: urls, token: token, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		conns: make(chan *rawConn, conc)}
}

// rawConn is one keep-alive HTTP/1.1 connection to one server.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	host string
	buf  []byte
}

func dialRaw(base string) (*rawConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" {
		return nil, fmt.Errorf("loadgen speaks plain http to %q", base)
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{conn: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 4096), host: u.Host}, nil
}

// post sends one request and reads one response (Content-Length or chunked).
func (c *rawConn) post(path, token string, body []byte) (int, []byte, error) {
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c.w, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		path, c.host, token, len(body))
	c.w.Write(body)
	if err := c.w.Flush(); err != nil {
		return 0, nil, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.Atoi(string(v))
			if err != nil {
				return 0, nil, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")) && bytes.EqualFold(v, []byte("chunked")):
			chunked = true
		}
	}
	c.buf = c.buf[:0]
	switch {
	case chunked:
		for {
			h, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, nil, err
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(h)), 16, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("bad chunk size %q", h)
			}
			if n == 0 {
				_, err = c.r.ReadSlice('\n')
				return status, c.buf, err
			}
			start := len(c.buf)
			c.buf = append(c.buf, make([]byte, n)...)
			if _, err := io.ReadFull(c.r, c.buf[start:]); err != nil {
				return 0, nil, err
			}
			if _, err := c.r.ReadSlice('\n'); err != nil {
				return 0, nil, err
			}
		}
	case length >= 0:
		c.buf = append(c.buf, make([]byte, length)...)
		_, err := io.ReadFull(c.r, c.buf)
		return status, c.buf, err
	}
	return 0, nil, errors.New("response without a length")
}

// postClaim sends a claim over a pooled raw connection; a broken connection
// is dropped, never reused.
func (t *httpTarget) postClaim(base, path string, body []byte) (int, []byte, error) {
	var c *rawConn
	select {
	case c = <-t.conns:
		if c.host != strings.TrimPrefix(base, "http://") {
			c.conn.Close()
			c = nil
		}
	default:
	}
	if c == nil {
		var err error
		if c, err = dialRaw(base); err != nil {
			return 0, nil, err
		}
	}
	status, resp, err := c.post(path, t.token, body)
	if err != nil {
		c.conn.Close()
		return 0, nil, err
	}
	resp = append([]byte(nil), resp...)
	select {
	case t.conns <- c:
	default:
		c.conn.Close()
	}
	return status, resp, nil
}

func (t *httpTarget) do(ctx context.Context, method, url string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		var eb microdrop.ErrorBody
		_ = json.Unmarshal(raw, &eb)
		return resp.StatusCode, &microdrop.Error{Code: eb.Code, Reason: eb.Reason, Message: eb.Message}
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

func (t *httpTarget) url() string { return t.urls[t.next.Add(1)%uint64(len(t.urls))] }

func (t *httpTarget) open(ctx context.Context, req claims.OpenRequest) (string, error) {
	var resp claims.DropResponse
	if _, err := t.do(ctx, "POST", t.urls[0]+"/api/drops", req, &resp); err != nil {
		return "", err
	}
	return resp.Drop.ID, nil
}

func (t *httpTarget) claim(ctx context.Context, dropID, user string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	body, _ := json.Marshal(claims.ClaimBody{UserID: user, Login: user})
	status, resp, err := t.postClaim(t.url(), "/api/drops/"+dropID+"/claims", body)
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

func (t *httpTarget) verify(ctx context.Context, dropID string) ([]claims.Entry, claims.AuditReport, error) {
	var d claims.DropResponse
	if _, err := t.do(ctx, "GET", t.urls[0]+"/api/drops/"+dropID, nil, &d); err != nil {
		return nil, claims.AuditReport{}, err
	}
	if !claims.State(d.Drop.State).Final() {
		if _, err := t.do(ctx, "POST", t.urls[0]+"/api/drops/"+dropID+"/close", nil, nil); err != nil {
			return nil, claims.AuditReport{}, err
		}
	}
	var audit claims.AuditReport
	var listing struct {
		Entries []claims.EntryView `json:"entries"`
	}
	// The decider commits its final state just after answering; wait for it.
	for i := 0; i < 100; i++ {
		if _, err := t.do(ctx, "GET", t.urls[0]+"/api/drops/"+dropID+"/audit", nil, &audit); err != nil {
			return nil, audit, err
		}
		if audit.State.Final() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := t.do(ctx, "GET", t.urls[0]+"/api/drops/"+dropID+"/entries", nil, &listing); err != nil {
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
	t.client.CloseIdleConnections()
	for {
		select {
		case c := <-t.conns:
			c.conn.Close()
		default:
			return nil
		}
	}
}
