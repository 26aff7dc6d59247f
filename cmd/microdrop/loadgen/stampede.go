package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/microdrop/microdrop/chat/twitch/twitchtest"
	"github.com/microdrop/microdrop/claims"
)

// RoleStampedeViewers is a child that plays a share of a stampede's
// viewers, each on its own connection, so no process needs more sockets
// than its open-file limit.
const RoleStampedeViewers = "stampede-viewers"

// StampedeConfig is `loadgen stampede`: viewers signed in through a test
// OpenID provider (twitchtest, the Twitch sign-in flow) reach the claim page
// behind the QR within a window of the drop opening, load it as a browser
// would (the page, its script and style, with the session cookie), claim
// with the page's form, and load the pickup QR; meanwhile an overlay
// WebSocket and the dashboard's live poll stay connected.
type StampedeConfig struct {
	Viewers        int           // signed-in viewers
	Window         time.Duration // arrivals spread evenly at random over this, from the open
	Stock          int           // the drop's stock
	PerChild       int           // viewers per client process
	SignInParallel int           // sign-ins at once
	Server         string        // microdrop binary to serve ("" is this one)
	Timeout        time.Duration // bound on the stampede after the open
	CPUProfile     string        // the server's CPU profile during the stampede
	Stderr         io.Writer
}

// StampedeReport is what a stampede measured.
type StampedeReport struct {
	Viewers      int     `json:"viewers"`
	WindowS      float64 `json:"window_s"`
	Stock        int     `json:"stock"`
	Children     int     `json:"client_processes"`
	SignInS      float64 `json:"sign_in_s"`
	SignInPerSec float64 `json:"sign_ins_per_sec"`
	// From the open to the last claim answered; claims answered per
	// second over that span.
	SpanS        float64 `json:"span_s"`
	ClaimsPerSec float64 `json:"claims_per_sec"`
	PageP50MS    float64 `json:"page_p50_ms"` // page plus its assets, from the viewer's arrival
	PageP99MS    float64 `json:"page_p99_ms"`
	ClaimP50MS   float64 `json:"claim_p50_ms"` // the form's POST until its answer
	ClaimP99MS   float64 `json:"claim_p99_ms"`
	ClaimMaxMS   float64 `json:"claim_max_ms"`
	Requests     int     `json:"requests"`
	Won          int     `json:"won"`
	SoldOut      int     `json:"sold_out"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Reconnects   int     `json:"reconnects"` // idle keep-alives the server shed, redialled as a browser does
	// The overlay's WebSocket: frames received during the run and when the
	// drop.opened frame came after the open call returned.
	OverlayFrames   int     `json:"overlay_frames"`
	OverlayOpenMS   float64 `json:"overlay_open_ms"`
	DashboardPolls  int     `json:"dashboard_polls"`
	DashboardErrors int     `json:"dashboard_errors"`
	DashboardP99MS  float64 `json:"dashboard_p99_ms"`
	DialP99MS       float64 `json:"dial_p99_ms"`
	LateP99MS       float64 `json:"client_late_p99_ms"` // the clients' own lag behind each arrival time
	ServerCPUS      float64 `json:"server_cpu_s"`
	ClientCPUS      float64 `json:"client_cpu_s"`
	Load1           float64 `json:"load1"`
	// The ledger afterwards.
	Oversold         bool `json:"oversold"`
	OverCapUsers     int  `json:"over_cap_users"`
	AckedNotInLedger int  `json:"acked_not_in_ledger"`
	AuditMatch       bool `json:"audit_match"`
}

// WriteText prints the report.
func (r StampedeReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%d signed-in viewers (%d client processes), arrivals over %.1fs, stock %d; sign-in %.1fs (%.0f/s)\n",
		r.Viewers, r.Children, r.WindowS, r.Stock, r.SignInS, r.SignInPerSec)
	fmt.Fprintf(w, "claims: %.0f/s over %.2fs; won %d, sold out %d, errors %d, reconnects %d\n", r.ClaimsPerSec, r.SpanS, r.Won, r.SoldOut, r.Errors, r.Reconnects)
	fmt.Fprintf(w, "page+assets: p50 %.1f ms, p99 %.1f ms; claim: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d requests\n",
		r.PageP50MS, r.PageP99MS, r.ClaimP50MS, r.ClaimP99MS, r.ClaimMaxMS, r.Requests)
	fmt.Fprintf(w, "overlay: %d frames, drop.opened %.1f ms after the open; dashboard: %d polls, %d errors, p99 %.1f ms\n",
		r.OverlayFrames, r.OverlayOpenMS, r.DashboardPolls, r.DashboardErrors, r.DashboardP99MS)
	fmt.Fprintf(w, "ledger: oversold %v, over-cap users %d, acked wins not in ledger %d, audit match %v\n",
		r.Oversold, r.OverCapUsers, r.AckedNotInLedger, r.AuditMatch)
	fmt.Fprintf(w, "server CPU %.1fs, clients' CPU %.1fs, load %.2f; connect p99 %.1f ms, clients' own lag behind arrival p99 %.1f ms\n",
		r.ServerCPUS, r.ClientCPUS, r.Load1, r.DialP99MS, r.LateP99MS)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

func (c *StampedeConfig) defaults() error {
	switch {
	case c.Viewers <= 0 || c.Viewers > 200000:
		return fmt.Errorf("--viewers must be 1-200000, not %d", c.Viewers)
	case c.Window <= 0 || c.Window > time.Minute:
		return fmt.Errorf("--window must be in (0, 1m], not %v", c.Window)
	case c.Stock <= 0 || c.Stock > claims.MaxStock:
		return fmt.Errorf("--stock must be 1-%d, not %d", claims.MaxStock, c.Stock)
	case c.PerChild <= 0:
		return fmt.Errorf("--per-child must be positive, not %d", c.PerChild)
	case c.SignInParallel <= 0 || c.SignInParallel > 1024:
		return fmt.Errorf("--signin-parallel must be 1-1024, not %d", c.SignInParallel)
	case c.Timeout <= c.Window:
		return fmt.Errorf("--timeout (%v) must be longer than the window (%v)", c.Timeout, c.Window)
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	return nil
}

// Stampede runs one stampede against a server child it starts.
func Stampede(ctx context.Context, cfg StampedeConfig) (StampedeReport, error) {
	rep := StampedeReport{Viewers: cfg.Viewers, WindowS: cfg.Window.Seconds(), Stock: cfg.Stock}
	if err := cfg.defaults(); err != nil {
		return rep, err
	}
	raiseFileLimit(uint64(cfg.SignInParallel*4 + 4096))
	dir, err := os.MkdirTemp("", "microdrop-stampede-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	idp, err := twitchtest.Start(twitchtest.Options{})
	if err != nil {
		return rep, err
	}
	defer idp.Close()
	port, err := freePort()
	if err != nil {
		return rep, err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	token, key := randHex(24), randHex(16)
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\nchannels:\n  stampede:\n    overlay_key: %q\n", token, key)
	if err := os.WriteFile(filepath.Join(dir, "microdrop.yml"), []byte(yml), 0o600); err != nil {
		return rep, err
	}
	env := append([]string{"MICRODROP_PUBLIC_URL=" + base, "TWITCH_CLIENT_ID=" + idp.Options().ClientID, "TWITCH_CLIENT_SECRET=" + idp.ClientSecret(),
		"TWITCH_AUTH_URL=" + idp.AuthURL(), "TWITCH_API_URL=" + idp.APIURL(),
		// Every viewer comes from this one address.
		"MICRODROP_SIGNIN_PER_MINUTE=100000000", "MICRODROP_CLAIMS_PER_MINUTE=100000000"}, liftFrontLimits()...)
	addrc := make(chan string, 1)
	srv, err := startServe(cfg.Server, []string{"--config", filepath.Join(dir, "microdrop.yml"), "--http", fmt.Sprintf("127.0.0.1:%d", port),
		"--rtsp", "off", "--data", filepath.Join(dir, "data"), "--log-level", "info"}, env, func(line string) {
		if servingAddr.MatchString(line) {
			select {
			case addrc <- line:
			default:
			}
		}
		if strings.Contains(line, "level=ERROR") {
			fmt.Fprintln(cfg.Stderr, "server:", line)
		}
	})
	if err != nil {
		return rep, err
	}
	defer srv.stop()
	select {
	case <-addrc:
	case <-srv.done:
		return rep, fmt.Errorf("server exited before serving:\n%s", srv.output())
	case <-time.After(30 * time.Second):
		return rep, errors.New("server did not start within 30s")
	}
	idp.RegisterRedirect(base + "/auth/twitch/callback")

	// Sign every viewer in, as their browser would.
	fmt.Fprintf(cfg.Stderr, "signing in %d viewers...\n", cfg.Viewers)
	cookies := make([]string, cfg.Viewers)
	for i := range cookies {
		idp.AddOIDCUser(twitchtest.OIDCUser{ID: viewerID(i), Login: "viewer" + strconv.Itoa(i), DisplayName: "Viewer " + strconv.Itoa(i)})
	}
	t0 := time.Now()
	if err := signInAll(ctx, idp, base, cookies, cfg.SignInParallel); err != nil {
		return rep, err
	}
	rep.SignInS = Round(time.Since(t0).Seconds(), 2)
	rep.SignInPerSec = Round(float64(cfg.Viewers)/time.Since(t0).Seconds(), 0)

	// The viewers' processes, ready before the QR appears.
	var kids []*Child
	defer func() {
		for _, k := range kids {
			_ = k.Stop(5 * time.Second)
		}
	}()
	for lo := 0; lo < cfg.Viewers; lo += cfg.PerChild {
		hi := min(lo+cfg.PerChild, cfg.Viewers)
		k, err := StartChild(ChildSpec{Role: RoleStampedeViewers, StderrLine: func(l string) { fmt.Fprintln(cfg.Stderr, "viewers:", l) }})
		if err != nil {
			return rep, err
		}
		kids = append(kids, k)
		path := filepath.Join(dir, fmt.Sprintf("viewers-%d.json", len(kids)))
		b, _ := json.Marshal(viewerShare{Base: base, First: lo, Cookies: cookies[lo:hi], Window: cfg.Window, Timeout: cfg.Timeout})
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return rep, err
		}
		if _, err := k.Ask("load "+path, 30*time.Second); err != nil {
			return rep, err
		}
	}
	rep.Children = len(kids)

	api := newAPIClient([]string{base}, token, 1)
	defer api.close()
	call := func(method, path string, body, out any) error {
		_, err := api.do(ctx, method, base+path, body, out)
		return err
	}

	// The overlay, live on the stream.
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://127.0.0.1:"+strconv.Itoa(port)+"/ws/overlay/stampede?key="+key, nil)
	if err != nil {
		return rep, fmt.Errorf("overlay websocket: %w", err)
	}
	defer ws.Close()
	var frames atomic.Int64
	openedAt := make(chan time.Time, 1)
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				return
			}
			frames.Add(1)
			if bytes.Contains(msg, []byte(`"kind":"drop.opened"`)) {
				select {
				case openedAt <- time.Now():
				default:
				}
			}
		}
	}()
	// The dashboard's live poll, every second as dashboard.js does.
	dashStop := make(chan struct{})
	var dashWG sync.WaitGroup
	var dashLat []float64
	dashWG.Add(1)
	go func() {
		defer dashWG.Done()
		for {
			t := time.Now()
			if err := call("GET", "/dashboard/live.json", nil, nil); err != nil {
				rep.DashboardErrors++
				if rep.FirstError == "" {
					rep.FirstError = "dashboard: " + err.Error()
				}
			}
			dashLat = append(dashLat, float64(time.Since(t))/1e6)
			rep.DashboardPolls++
			select {
			case <-dashStop:
				return
			case <-time.After(time.Second):
			}
		}
	}()

	var profDone chan struct{}
	cpu0 := procCPU(srv.pid)
	if cfg.CPUProfile != "" {
		profDone = make(chan struct{})
		go func() {
			defer close(profDone)
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(cfg.Window.Seconds())+2), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := (&http.Client{Timeout: cfg.Timeout + 30*time.Second}).Do(req)
			if err != nil {
				fmt.Fprintln(cfg.Stderr, "server profile:", err)
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			_ = os.WriteFile(cfg.CPUProfile, b, 0o644)
		}()
	}
	// The QR appears: the drop opens.
	var opened claims.DropResponse
	if err := call("POST", "/api/drops", claims.OpenRequest{Channel: "stampede", SKU: "stampede", Title: "Stampede", Stock: cfg.Stock,
		Duration: claims.Duration(cfg.Timeout + time.Minute), Cap: 1, Policy: claims.FCFS}, &opened); err != nil {
		return rep, err
	}
	openT := time.Now()
	u, err := url.Parse(opened.ClaimURL)
	if err != nil {
		return rep, err
	}
	page := u.RequestURI()
	var wg sync.WaitGroup
	results := make([]viewerResults, len(kids))
	errs := make([]error, len(kids))
	for i, k := range kids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := k.Ask(fmt.Sprintf("go %d %s", openT.UnixNano(), page), cfg.Timeout+30*time.Second)
			if err != nil {
				errs[i] = err
				return
			}
			b, err := os.ReadFile(out)
			if err == nil {
				err = json.Unmarshal(b, &results[i])
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	cpu1 := procCPU(srv.pid)
	rep.Load1 = LoadAvg1()
	for _, k := range kids {
		if d, err := k.CPU(); err == nil && d > 0 {
			rep.ClientCPUS += Round(d.Seconds(), 2)
		}
	}
	select {
	case at := <-openedAt:
		rep.OverlayOpenMS = MS(at.Sub(openT))
	default:
		rep.OverlayOpenMS = -1
	}
	close(dashStop)
	dashWG.Wait()
	if profDone != nil {
		<-profDone
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}
	rep.OverlayFrames = int(frames.Load())
	rep.DashboardP99MS = Round(Quantile(Sorted(dashLat), 0.99), 1)
	rep.ServerCPUS = Round(float64(cpu1-cpu0)/1e9, 2)

	var pages, claimLat, dials, late []float64
	var last int64
	acked := map[string]bool{}
	for _, r := range results {
		pages = append(pages, r.PageMS...)
		dials = append(dials, r.DialMS...)
		late = append(late, r.LateMS...)
		claimLat = append(claimLat, r.ClaimMS...)
		rep.Requests += r.Requests
		rep.Won += len(r.Won)
		rep.SoldOut += r.SoldOut
		rep.Errors += r.Errors
		rep.Reconnects += r.Reconnects
		if rep.FirstError == "" && r.FirstError != "" {
			rep.FirstError = r.FirstError
		}
		last = max(last, r.LastAnswer)
		for _, id := range r.Won {
			acked[id] = true
		}
	}
	if last > 0 {
		rep.SpanS = Round(float64(last-openT.UnixNano())/1e9, 3)
		rep.ClaimsPerSec = Round(float64(len(claimLat))/rep.SpanS, 0)
	}
	rep.DialP99MS, rep.LateP99MS = Round(Quantile(Sorted(dials), 0.99), 1), Round(Quantile(Sorted(late), 0.99), 1)
	rep.PageP50MS, rep.PageP99MS = Round(Quantile(Sorted(pages), 0.5), 1), Round(Quantile(pages, 0.99), 1)
	Sorted(claimLat)
	rep.ClaimP50MS, rep.ClaimP99MS, rep.ClaimMaxMS = Round(Quantile(claimLat, 0.5), 1), Round(Quantile(claimLat, 0.99), 1), Round(Quantile(claimLat, 1), 1)

	// The ledger's word on it.
	drop := opened.Drop.ID
	if status, err := api.do(ctx, "POST", base+"/api/drops/"+drop+"/close", nil, nil); err != nil && status != http.StatusConflict {
		return rep, err
	}
	var audit claims.AuditReport
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := call("GET", "/api/drops/"+drop+"/audit", nil, &audit); err != nil {
			return rep, err
		}
		if audit.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("drop %s not final after 30s", drop)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep.Oversold, rep.OverCapUsers, rep.AuditMatch = audit.Oversold, audit.OverCapUsers, audit.Match
	won := map[string]bool{}
	for offset := 0; offset >= 0; {
		var pageOf struct {
			Entries    []claims.EntryView `json:"entries"`
			NextOffset *int               `json:"next_offset"`
		}
		if err := call("GET", fmt.Sprintf("/api/drops/%s/entries?offset=%d&limit=%d", drop, offset, claims.MaxPageSize), nil, &pageOf); err != nil {
			return rep, err
		}
		for _, e := range pageOf.Entries {
			if e.Outcome == claims.OutcomeWon {
				won[e.UserID[strings.LastIndexByte(e.UserID, ':')+1:]] = true
			}
		}
		offset = -1
		if pageOf.NextOffset != nil {
			offset = *pageOf.NextOffset
		}
	}
	for id := range acked {
		if !won[id] {
			rep.AckedNotInLedger++
		}
	}
	return rep, nil
}

func viewerID(i int) string { return "v" + strconv.Itoa(i+1) }

// signInAll signs each viewer in through the provider's authorize page and
// keeps their session cookie.
func signInAll(ctx context.Context, idp *twitchtest.Server, base string, cookies []string, parallel int) error {
	baseURL, _ := url.Parse(base)
	tr := &http.Transport{MaxIdleConnsPerHost: parallel, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cookies) || ctx.Err() != nil {
					return
				}
				c, err := signIn(tr, idp, base, baseURL, viewerID(i))
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("sign-in of viewer %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(len(cookies)))
					return
				}
				cookies[i] = c
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func signIn(tr http.RoundTripper, idp *twitchtest.Server, base string, baseURL *url.URL, id string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: tr, Jar: jar, Timeout: 30 * time.Second}
	noFollow := *c
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Get(base + "/auth/twitch/start?next=" + url.QueryEscape("/c/stampede"))
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound {
		return "", fmt.Errorf("sign-in start answered %d", res.StatusCode)
	}
	res, err = idp.SignIn(&noFollow, res.Header.Get("Location"), id)
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusFound && res.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("authorize answered %d", res.StatusCode)
	}
	// The redirect back to the app's callback, which sets the session.
	res, err = noFollow.Get(res.Header.Get("Location"))
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	for _, ck := range jar.Cookies(baseURL) {
		if ck.Name == "microdrop_viewer" && ck.Value != "" {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("no session after the callback (answered %d)", res.StatusCode)
}

// viewerShare is one child's share of the viewers.
type viewerShare struct {
	Base    string        `json:"base"`
	First   int           `json:"first"`
	Cookies []string      `json:"cookies"`
	Window  time.Duration `json:"window"`
	Timeout time.Duration `json:"timeout"`
}

// viewerResults is what a child measured.
type viewerResults struct {
	PageMS     []float64 `json:"page_ms"`
	ClaimMS    []float64 `json:"claim_ms"`
	Won        []string  `json:"won"` // viewer ids told they won
	SoldOut    int       `json:"sold_out"`
	Errors     int       `json:"errors"`
	FirstError string    `json:"first_error"`
	Requests   int       `json:"requests"`
	Reconnects int       `json:"reconnects"`
	LastAnswer int64     `json:"last_answer_unix_ns"`
	DialMS     []float64 `json:"dial_ms"`
	// Late is how far behind its arrival time each viewer started: the
	// clients' own lag, which would otherwise pass for the server's.
	LateMS []float64 `json:"late_ms"`
}

// runStampedeChild plays its share: "load PATH" reads it, "go OPEN_NS PAGE"
// runs it from the open and replies with the results' path.
func runStampedeChild(ctx context.Context, in io.Reader, ctl io.Writer) error {
	raiseFileLimit(1 << 20)
	var share viewerShare
	var dir string
	serveControl(in, ctl, &profiler{rate: 1000}, func(cmd, arg string) (string, error) {
		switch cmd {
		case "load":
			b, err := os.ReadFile(arg)
			if err != nil {
				return "", err
			}
			dir = filepath.Dir(arg)
			return "ok", json.Unmarshal(b, &share)
		case "go":
			ns, page, ok := strings.Cut(arg, " ")
			open, err := strconv.ParseInt(ns, 10, 64)
			if !ok || err != nil || share.Base == "" {
				return "", fmt.Errorf("go OPEN_NS PAGE after load, not %q", arg)
			}
			res := playViewers(ctx, share, time.Unix(0, open), page)
			b, _ := json.Marshal(res)
			out := filepath.Join(dir, fmt.Sprintf("results-%d.json", share.First))
			return out, os.WriteFile(out, b, 0o600)
		}
		return "", fmt.Errorf("unknown command %q", cmd)
	})
	return nil
}

// browser is one viewer's phone: one keep-alive connection, its cookie.
type browser struct {
	host, cookie string
	// local spreads the phones over loopback source addresses: 20,000
	// connections to one port from one address would use up its
	// ephemeral ports (with the sign-ins' TIME_WAITs and other runs').
	local      *net.TCPAddr
	dialMS     float64 // the first connection's connect
	conn       net.Conn
	r          *bufio.Reader
	reconnects int
	requests   int
}

// do sends one request and reads the whole answer. A kept-alive
// connection the server has shed is redialled once, as browsers do.
func (b *browser) do(method, path, form string, deadline time.Time) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		fresh := b.conn == nil
		if fresh {
			t := time.Now()
			d := net.Dialer{Timeout: time.Until(deadline), LocalAddr: b.local}
			c, err := d.Dial("tcp", b.host)
			if err != nil {
				return 0, nil, err
			}
			if b.dialMS == 0 {
				b.dialMS = float64(time.Since(t)) / 1e6
			}
			b.conn, b.r = c, bufio.NewReaderSize(c, 16<<10)
		}
		_ = b.conn.SetDeadline(deadline)
		var req bytes.Buffer
		fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: microdrop-loadgen-stampede\r\nAccept: */*\r\nCookie: microdrop_viewer=%s\r\n", method, path, b.host, b.cookie)
		if method == http.MethodPost {
			fmt.Fprintf(&req, "Origin: http://%s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", b.host, len(form), form)
		} else {
			req.WriteString("\r\n")
		}
		b.requests++
		_, err := b.conn.Write(req.Bytes())
		var res *http.Response
		if err == nil {
			res, err = http.ReadResponse(b.r, nil)
		}
		if err != nil {
			b.conn.Close()
			b.conn = nil
			if !fresh && attempt == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
				b.reconnects++
				continue
			}
			return 0, nil, err
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.Close {
			b.conn.Close()
			b.conn = nil
		}
		return res.StatusCode, body, err
	}
}

var (
	assetRef = regexp.MustCompile(`(?:src|href)="(/overlay/assets/[^"]+|/api/tokens/[^"]+)"`)
	csrfIn   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	codeIn   = regexp.MustCompile(`name="code" id="claim-code" value="([^"]*)"`)
)

func playViewers(ctx context.Context, share viewerShare, open time.Time, page string) viewerResults {
	u, _ := url.Parse(share.Base)
	var res viewerResults
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Errors++
		if res.FirstError == "" {
			res.FirstError = err.Error()
		}
	}
	deadline := open.Add(share.Timeout)
	rng := rand.New(rand.NewPCG(uint64(open.UnixNano()), uint64(share.First)))
	browsers := make([]*browser, len(share.Cookies))
	var wg sync.WaitGroup
	for i, ck := range share.Cookies {
		at := open.Add(time.Duration(rng.Int64N(int64(share.Window))))
		n := share.First + i
		b := &browser{host: u.Host, cookie: ck, local: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+n/250%250), byte(2+n%250))}}
		browsers[i] = b
		id := viewerID(share.First + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				return
			}
			arrived := time.Now()
			mu.Lock()
			res.LateMS = append(res.LateMS, float64(arrived.Sub(at))/1e6)
			mu.Unlock()
			st, body, err := b.do("GET", page, "", deadline)
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("claim page answered %d", st)
			}
			if err != nil {
				fail(err)
				return
			}
			html := string(body)
			for _, m := range assetRef.FindAllStringSubmatch(html, -1) {
				if st, _, err := b.do("GET", m[1], "", deadline); err != nil || st != http.StatusOK {
					fail(fmt.Errorf("asset %s: %d %v", m[1], st, err))
					return
				}
			}
			pageMS := float64(time.Since(arrived)) / 1e6
			csrf, code := csrfIn.FindStringSubmatch(html), codeIn.FindStringSubmatch(html)
			if strings.Contains(html, `data-state="sold_out"`) {
				// Arrived after the last unit: the page says so, no form.
				mu.Lock()
				res.PageMS = append(res.PageMS, pageMS)
				res.SoldOut++
				mu.Unlock()
				return
			}
			if csrf == nil || !strings.Contains(html, `id="claim-form"`) {
				fail(fmt.Errorf("claim page without the claim form (signed in?): %.300s", html[min(len(html), strings.Index(html, "<main")+1):]))
				return
			}
			vals := url.Values{"csrf": {csrf[1]}}
			if code != nil {
				vals.Set("code", code[1])
			}
			form := vals.Encode()
			t := time.Now()
			st, body, err = b.do("POST", page, form, deadline)
			claimMS := float64(time.Since(t)) / 1e6
			done := time.Now().UnixNano()
			if err != nil {
				fail(err)
				return
			}
			won := st == http.StatusOK && bytes.Contains(body, []byte(`class="pickup-qr"`))
			soldOut := st == http.StatusGone || st == http.StatusConflict || bytes.Contains(body, []byte("sold out"))
			if !won && !soldOut {
				fail(fmt.Errorf("claim answered %d: %.200s", st, body))
				return
			}
			if won {
				// The phone shows the pickup QR.
				for _, m := range assetRef.FindAllStringSubmatch(string(body), -1) {
					if strings.HasPrefix(m[1], "/api/tokens/") {
						if st, _, err := b.do("GET", m[1], "", deadline); err != nil || st != http.StatusOK {
							fail(fmt.Errorf("pickup QR: %d %v", st, err))
							return
						}
					}
				}
			}
			mu.Lock()
			res.PageMS = append(res.PageMS, pageMS)
			res.ClaimMS = append(res.ClaimMS, claimMS)
			res.LastAnswer = max(res.LastAnswer, done)
			if won {
				res.Won = append(res.Won, id)
			} else {
				res.SoldOut++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, b := range browsers {
		if b.dialMS > 0 {
			res.DialMS = append(res.DialMS, b.dialMS)
		}
		res.Requests += b.requests
		res.Reconnects += b.reconnects
		if b.conn != nil {
			b.conn.Close()
		}
	}
	return res
}
