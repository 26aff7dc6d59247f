package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// OverlayLoadResult is what `loadgen overlay --json` prints.
type OverlayLoadResult struct {
	Subscribers int `json:"subscribers"`
	Connected   int `json:"connected"`
	// ClientProcs is how many processes the clients ran in (0: in the
	// load generator's own).
	ClientProcs int `json:"client_procs"`
	// Latency from the moderator's action (the load generator making the
	// admin API call that opens the drop) to each client's receipt of the
	// drop.opened frame: what a streamer sees.
	APIMinMS float64 `json:"api_min_ms"`
	APIP50MS float64 `json:"api_p50_ms"`
	APIP99MS float64 `json:"api_p99_ms"`
	APIMaxMS float64 `json:"api_max_ms"`
	// APIAnswerMS is how long the API call took to answer; APIToEventMS
	// from the call to the event's time (the request reaching the claims
	// service and its decision).
	APIAnswerMS  float64 `json:"api_answer_ms"`
	APIToEventMS float64 `json:"api_to_event_ms"`
	// Latency from the event's time (the claims service's clock when it
	// decided the open, before the ledger commit) to each client's receipt.
	MinMS float64 `json:"min_ms"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// SendP99MS is from the frame's server send timestamp to receipt.
	SendP99MS float64 `json:"send_p99_ms"`
	// BuildMS is from the event's time to the frame's send timestamp (the
	// ledger commit, the bus and the hub building the frame): part of
	// every latency above.
	BuildMS  float64 `json:"build_ms"`
	Missed   int     `json:"missed"`
	ConnectS float64 `json:"connect_s"`
	// CPU spent from just before the open to the last receipt: the server
	// child's (-1 with --url) and the clients' (all their processes). Per
	// delivery, these are what the fan-out costs, whatever else the
	// machine is doing.
	ServerCPUMS    float64 `json:"server_cpu_ms"`
	ClientCPUMS    float64 `json:"client_cpu_ms"`
	ServerCPUPerUS float64 `json:"server_cpu_per_delivery_us"`
	ClientCPUPerUS float64 `json:"client_cpu_per_delivery_us"`
	LoadAvg1       float64 `json:"loadavg_1m"`
}

// OverlayConfig is a `loadgen overlay` run: Subscribers WebSocket overlay
// clients (in client children or this process), one drop opened, the time its DropOpened frame
// takes to reach each of them.
type OverlayConfig struct {
	Subscribers int
	// ClientProcs is how many client processes share the subscribers
	// (each from a loopback address of its own); 0 runs them in this
	// process, -1 picks one process per 9,000 clients, at least 2 from
	// 2,000 clients up.
	ClientProcs int
	// URL is a running microdrop; empty starts `serve` as a child on
	// loopback (then Channel, Key and Token are made up).
	URL              string
	Channel, Key     string
	Token            string
	Timeout          time.Duration // for every client to receive the open
	DialParallel     int
	CPUProfile       string // the clients (this process) during the fan-out
	ServerCPUProfile string // the server child during the fan-out
	ServerProcs      int    // GOMAXPROCS of the server child; 0 for Go's default
	Stderr           io.Writer
}

// Validate says what is wrong with c, in the flags' words.
func (c OverlayConfig) Validate() error {
	switch {
	case c.ClientProcs < -1 || c.ClientProcs > 50:
		return errors.New("--client-procs must be -1 (automatic), 0 (in this process) or up to 50")
	case c.Subscribers < 1 || c.Subscribers > 19000*max(1, c.ClientProcs) && c.ClientProcs >= 0 || c.Subscribers > 200000:
		return fmt.Errorf("--subscribers must be between 1 and 19000 per client process (open files are capped per process), at most 200000, not %d", c.Subscribers)
	case c.DialParallel < 1 || c.DialParallel > 4096:
		return errors.New("--dial-parallel must be between 1 and 4096")
	case c.URL != "" && (c.Key == "" || c.Token == ""):
		return errors.New("with --url, give --key (the overlay key) and --token (the admin token)")
	case c.URL == "" && c.ServerProcs < 0:
		return errors.New("--server-procs must be 0 or more")
	}
	return nil
}

// Overlay measures the fan-out of one DropOpened to cfg.Subscribers
// clients. The server is a child process (or cfg.URL), so neither side
// needs more than Subscribers open files.
func Overlay(ctx context.Context, cfg OverlayConfig) (OverlayLoadResult, error) {
	if err := cfg.Validate(); err != nil {
		return OverlayLoadResult{}, err
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.ClientProcs == -1 {
		cfg.ClientProcs = cfg.Subscribers/9000 + 1
		if cfg.Subscribers >= 2000 {
			cfg.ClientProcs = max(2, cfg.ClientProcs)
		}
	}
	if cfg.ClientProcs == 0 {
		raiseFileLimit(uint64(cfg.Subscribers) + 512)
	}
	if cfg.URL == "" {
		// The server child holds every subscriber's socket: its limit is
		// this process's, raised where allowed. Past it the server cannot
		// even accept the API call that opens the drop.
		need := uint64(cfg.Subscribers) + 512
		raiseFileLimit(need)
		var l syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < need {
			return OverlayLoadResult{}, fmt.Errorf("the server child needs %d open files for %d subscribers, and this process may open %d (hard limit %d, which it cannot raise): use at most %d subscribers, or raise the hard limit (ulimit -Hn)",
				need, cfg.Subscribers, l.Cur, l.Max, int(l.Max)-512)
		}
	}
	var srv *overlayServer
	if cfg.URL == "" {
		tmp, err := os.MkdirTemp("", "microdrop-loadgen-overlay-")
		if err != nil {
			return OverlayLoadResult{}, err
		}
		defer os.RemoveAll(tmp)
		cfg.Key, cfg.Token, cfg.Channel = randHex(12), randHex(16), "loadgen"
		srv, err = startOverlayServer(ctx, tmp, cfg)
		if err != nil {
			return OverlayLoadResult{}, err
		}
		defer srv.child.Stop(15 * time.Second)
		cfg.URL = "http://" + srv.addr
	}
	return measureOverlay(ctx, cfg, srv)
}

// WriteText prints the result for a person.
func (res OverlayLoadResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "overlay fan-out: %d subscribers in %d client processes (%d connected in %.1fs)\n", res.Subscribers, max(1, res.ClientProcs), res.Connected, res.ConnectS)
	fmt.Fprintf(w, "API call -> client latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms (the call answered in %.2f ms; event time %.2f ms after the call)\n", res.APIP50MS, res.APIP99MS, res.APIMaxMS, res.APIAnswerMS, res.APIToEventMS)
	fmt.Fprintf(w, "event -> client latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms (send -> client p99 %.2f ms)\n", res.P50MS, res.P99MS, res.MaxMS, res.SendP99MS)
	fmt.Fprintf(w, "missed: %d\n", res.Missed)
	if res.ServerCPUMS >= 0 {
		fmt.Fprintf(w, "CPU per delivery: server %.2f µs, clients %.2f µs (load average %.2f)\n", res.ServerCPUPerUS, res.ClientCPUPerUS, res.LoadAvg1)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// raiseFileLimit raises the soft open-file limit towards want, and the
// hard one too where the process may (a server child with more clients
// than the usual hard limit).
func raiseFileLimit(want uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || l.Cur >= want {
		return
	}
	if l.Max < want {
		hard := l
		hard.Cur, hard.Max = want, want
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &hard) == nil {
			return
		}
	}
	l.Cur = min(want, l.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// overlayServer is `microdrop serve` in a child, with the CPU meter and
// profile of its control pipe.
type overlayServer struct {
	child   *Child
	addr    string
	profile string
	cpu0    time.Duration
}

// servingAddr finds the HTTP address in serve's "serving" log line.
var servingAddr = regexp.MustCompile(`msg=serving .*?http=(\S+)`)

// startOverlayServer runs `microdrop serve` on a loopback port with a
// throw-away data dir and a config naming the channel's overlay key.
func startOverlayServer(ctx context.Context, dir string, cfg OverlayConfig) (*overlayServer, error) {
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\nchannels:\n  %s:\n    overlay_key: %q\n", cfg.Token, cfg.Channel, cfg.Key)
	path := filepath.Join(dir, "microdrop.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		return nil, err
	}
	env := append([]string{"MICRODROP_PUBLIC_URL=", fmt.Sprintf("MICRODROP_MAX_OVERLAY_CLIENTS=%d", cfg.Subscribers+100)}, liftFrontLimits()...)
	if cfg.ServerProcs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", cfg.ServerProcs))
	}
	addrc := make(chan string, 1)
	var tailMu sync.Mutex
	var tail bytes.Buffer
	child, err := StartChild(ChildSpec{Role: RoleOverlayServer, Env: env,
		Args: []string{"--config", path, "--http", "127.0.0.1:0", "--rtsp", "off", "--data", filepath.Join(dir, "data"), "--log-level", "info"},
		StderrLine: func(line string) {
			if m := servingAddr.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
				fmt.Fprintln(cfg.Stderr, "server:", line)
			}
			tailMu.Lock()
			if tail.Len() < 64<<10 {
				tail.WriteString(line + "\n")
			}
			tailMu.Unlock()
		}})
	if err != nil {
		return nil, err
	}
	srv := &overlayServer{child: child, profile: cfg.ServerCPUProfile}
	select {
	case srv.addr = <-addrc:
		return srv, nil
	case <-child.Done():
		tailMu.Lock()
		defer tailMu.Unlock()
		return nil, fmt.Errorf("server child exited before serving:\n%s", tail.String())
	case <-time.After(30 * time.Second):
		_ = child.Stop(5 * time.Second)
		return nil, errors.New("server child did not start within 30s")
	case <-ctx.Done():
		_ = child.Stop(5 * time.Second)
		return nil, ctx.Err()
	}
}

// beginWindow notes the child's CPU time and starts its CPU profile, if
// asked for; endWindow stops the profile and returns the CPU milliseconds
// the child spent in between, or -1.
func (s *overlayServer) beginWindow() error {
	if s.profile != "" {
		if _, err := s.child.Ask("profile cpu "+s.profile, 10*time.Second); err != nil {
			return err
		}
	}
	var err error
	s.cpu0, err = s.child.CPU()
	return err
}

func (s *overlayServer) endWindow() float64 {
	cpu1, err := s.child.CPU()
	if s.profile != "" {
		_, _ = s.child.Ask("profile", 10*time.Second)
	}
	if err != nil || s.cpu0 < 0 || cpu1 < 0 {
		return -1
	}
	return float64(cpu1-s.cpu0) / 1e6
}

// runOverlayServerChild is `microdrop serve` with a control pipe: "cpu" and
// "profile" as every child, and the end of its standard input stops it.
func runOverlayServerChild(ctx context.Context, args []string, deps ChildDeps, ctl io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n, err := strconv.Atoi(os.Getenv("MICRODROP_MAX_OVERLAY_CLIENTS")); err == nil && n > 0 {
		raiseFileLimit(uint64(n) + 1024)
	}
	prof := &profiler{rate: 1000}
	defer prof.stop()
	go func() {
		defer cancel()
		serveControl(deps.Stdin, ctl, prof, nil)
	}()
	return deps.Serve(ctx, args, deps.Stdout, deps.Stderr)
}

// overlaySub is one client's receipt of the open: when the frame's last
// byte was read (Unix ms), and the frame's event and send times as they
// were written, parsed once the window is over.
type overlaySub struct {
	recv       float64
	got        bool
	at, sent   [32]byte
	atN, sentN uint8
	// pong is the answer owed to the server's last ping (nil: none), so
	// that a client waiting longer than the server's ping timeout (while
	// tens of thousands of others connect) stays connected.
	pong []byte
}

// pongFrame is a client's pong (masked, with a zero key: the payload as
// it is, RFC 6455 5.3) carrying payload.
func pongFrame(payload []byte) []byte {
	f := append([]byte{0x8A, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	return f
}

var (
	// overlayOpenKind marks the frame the clients wait for.
	overlayOpenKind  = []byte(`"kind":"drop.opened"`)
	overlayEventType = []byte(`"type":"event"`)
	overlayAtKey     = []byte(`"at_ms":`)
	overlayServerKey = []byte(`"server_ms":`)
)

// overlayFrames walks the whole server frames at the start of p (server
// frames are unmasked, RFC 6455) and returns true at the first text frame
// of the drop's open, noting its times in sub; else what is left of p, an
// incomplete frame.
func overlayFrames(p []byte, recv float64, sub *overlaySub) (bool, []byte) {
	for len(p) >= 2 {
		hdr, size := 2, int(p[1]&0x7f)
		switch {
		case size == 126 && len(p) >= 4:
			hdr, size = 4, int(binary.BigEndian.Uint16(p[2:4]))
		case size == 127 && len(p) >= 10:
			hdr, size = 10, int(binary.BigEndian.Uint64(p[2:10]))
		case size >= 126:
			return false, p // the length is not all here yet
		}
		if p[1]&0x80 != 0 {
			hdr += 4 // a masked frame: not from a server, but parse it
		}
		if len(p) < hdr+size {
			return false, p
		}
		payload := p[hdr : hdr+size]
		if p[0]&0x0f == 0x9 && size <= 125 {
			sub.pong = pongFrame(payload) // a ping: answer it once this read is done
		}
		if p[0]&0x0f == 0x1 && bytes.Contains(payload, overlayOpenKind) && bytes.Contains(payload, overlayEventType) {
			// The frame's own times are its top-level at_ms and
			// server_ms: no nested object has such keys, and a string
			// cannot hold `"key":` unescaped. Only their digits are
			// copied here: parsing and JSON stay out of the measured
			// window (and off the stacks of ten thousand goroutines).
			if overlayNumberAfter(payload, overlayAtKey, &sub.at, &sub.atN) &&
				overlayNumberAfter(payload, overlayServerKey, &sub.sent, &sub.sentN) {
				sub.recv, sub.got = recv, true
				return true, nil
			}
		}
		p = p[hdr+size:]
	}
	return false, p
}

// overlayNumberAfter copies the JSON number after the first key in b.
func overlayNumberAfter(b, key []byte, to *[32]byte, n *uint8) bool {
	i := bytes.Index(b, key)
	if i < 0 {
		return false
	}
	b = b[i+len(key):]
	k := 0
	for k < len(b) && k < len(to) && (b[k] >= '0' && b[k] <= '9' || b[k] == '.' || b[k] == '-' || b[k] == '+' || b[k] == 'e' || b[k] == 'E') {
		k++
	}
	*n = uint8(copy(to[:], b[:k]))
	return k > 0
}

// overlayReadOpen reads server frames from nc until the drop's open, and
// notes when its last byte came in. It reads the socket under gorilla's
// reader, into a buffer borrowed only once the socket is readable, and
// allocates nothing per frame: the clients' own cost stays small next to
// the deliveries they measure.
//
// bufs lends the clients read buffers only while they read, so ten
// thousand waiting clients hold none (and touch no fresh memory while the
// fan-out is measured).
func overlayReadOpen(nc net.Conn, sub *overlaySub, bufs *sync.Pool) {
	var rest []byte // an incomplete frame, kept between reads (rare)
	sc, ok := nc.(syscall.Conn)
	if !ok { // TLS: read through the connection
		buf := make([]byte, 16<<10)
		for {
			k := copy(buf, rest)
			n, err := nc.Read(buf[k:])
			recv := float64(time.Now().UnixMicro()) / 1000
			if n <= 0 && err != nil {
				return
			}
			done, left := overlayFrames(buf[:k+n], recv, sub)
			if done {
				return
			}
			rest = append(rest[:0], left...)
			if sub.pong != nil {
				_, _ = nc.Write(sub.pong)
				sub.pong = nil
			}
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	for {
		var done, failed bool
		err := rc.Read(func(fd uintptr) bool {
			bp := bufs.Get().(*[]byte)
			defer bufs.Put(bp)
			buf := *bp
			if len(rest) > len(buf)/2 {
				buf = make([]byte, 2*len(rest)) // a frame larger than the buffers
			}
			k := copy(buf, rest)
			n, err := syscall.Read(int(fd), buf[k:])
			if err == syscall.EAGAIN || err == syscall.EINTR {
				return false // wait in the poller
			}
			if n <= 0 {
				failed = true
				return true
			}
			recv := float64(time.Now().UnixMicro()) / 1000
			var left []byte
			done, left = overlayFrames(buf[:k+n], recv, sub)
			rest = append(rest[:0], left...)
			return true
		})
		if done || failed || err != nil {
			return
		}
		if sub.pong != nil {
			_, _ = nc.Write(sub.pong)
			sub.pong = nil
		}
	}
}

// overlayClients are WebSocket overlay clients of one process, each
// waiting for the drop's open.
type overlayClients struct {
	subs      []overlaySub
	conns     chan *websocket.Conn
	finished  sync.WaitGroup
	connected int
	failed    int
	firstErr  error
}

// dialOverlayClients connects n clients to wsURL, parallel at a time, from
// localIP when set (a loopback address of its own per client process, so
// that no process runs out of ephemeral ports), and returns once each is
// subscribed (has read its snapshot) or failed.
func dialOverlayClients(ctx context.Context, wsURL string, n, parallel int, localIP string) *overlayClients {
	bufs := &sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	nd := &net.Dialer{Timeout: 20 * time.Second}
	if localIP != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	dialer := &websocket.Dialer{HandshakeTimeout: 20 * time.Second, ReadBufferSize: 2048, WriteBufferSize: 256, NetDialContext: nd.DialContext}
	oc := &overlayClients{subs: make([]overlaySub, n), conns: make(chan *websocket.Conn, n)}
	var (
		ready     sync.WaitGroup
		connected atomic.Int64
		errOnce   sync.Once
		firstErr  error // the first failure (errors of every type: no atomic.Value)
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	sem := make(chan struct{}, parallel)
	ready.Add(n)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			var conn *websocket.Conn
			var err error
			// A server busy accepting tens of thousands overflows its
			// accept queue now and then (a reset): try again, backing off.
			for attempt := 0; attempt < 10; attempt++ {
				conn, _, err = dialer.DialContext(ctx, wsURL, nil)
				if err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
			}
			if err != nil {
				fail(err)
				ready.Done()
				return
			}
			// The first frame is the snapshot: once it is here the client
			// is subscribed, and nothing more comes before the open.
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, _, err := conn.ReadMessage(); err != nil {
				fail(err)
				conn.Close()
				ready.Done()
				return
			}
			_ = conn.SetReadDeadline(time.Time{})
			connected.Add(1)
			oc.conns <- conn
			oc.finished.Add(1)
			ready.Done()
			// The connection stays open until every client is done:
			// closing it now would load the server while it is still
			// delivering to the others.
			go func() {
				defer oc.finished.Done()
				overlayReadOpen(conn.NetConn(), &oc.subs[i], bufs)
			}()
		}()
	}
	ready.Wait()
	oc.connected = int(connected.Load())
	oc.failed = n - oc.connected
	oc.firstErr = firstErr // ready.Wait: every dialler is done
	return oc
}

// wait waits until every connected client has the open, or timeout, then
// closes the connections.
func (oc *overlayClients) wait(ctx context.Context, timeout time.Duration) {
	done := make(chan struct{})
	go func() { oc.finished.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	oc.closeAll()
	<-done
}

func (oc *overlayClients) closeAll() {
	close(oc.conns)
	for c := range oc.conns {
		_ = c.Close() // unblocks readers still waiting
	}
}

// overlayReceipts are the clients' receipts of the open, Unix milliseconds:
// when each client had the frame, and the event and send times it carried.
type overlayReceipts struct {
	Recv []float64 `json:"recv"`
	At   []float64 `json:"at"`
	Sent []float64 `json:"sent"`
}

func (oc *overlayClients) receipts() overlayReceipts {
	var r overlayReceipts
	for _, s := range oc.subs {
		if !s.got {
			continue
		}
		at, err1 := strconv.ParseFloat(string(s.at[:s.atN]), 64)
		sent, err2 := strconv.ParseFloat(string(s.sent[:s.sentN]), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		r.Recv, r.At, r.Sent = append(r.Recv, s.recv), append(r.At, at), append(r.Sent, sent)
	}
	return r
}

// overlayClientSide is where the clients run: in this process or in
// client children.
type overlayClientSide interface {
	connect(ctx context.Context) (connected, failed int, err error)
	cpu() time.Duration // -1 when unknown
	// receipts waits for every client to have the open (at most timeout).
	receipts(ctx context.Context, timeout time.Duration) (overlayReceipts, error)
	close()
}

type inprocClients struct {
	wsURL  string
	n, par int
	oc     *overlayClients
}

func (c *inprocClients) connect(ctx context.Context) (int, int, error) {
	c.oc = dialOverlayClients(ctx, c.wsURL, c.n, c.par, "")
	return c.oc.connected, c.oc.failed, c.oc.firstErr
}
func (c *inprocClients) cpu() time.Duration { return ProcessCPU() }
func (c *inprocClients) receipts(ctx context.Context, timeout time.Duration) (overlayReceipts, error) {
	c.oc.wait(ctx, timeout)
	return c.oc.receipts(), nil
}
func (c *inprocClients) close() {}

// childClients are client children (RoleOverlayClients), each with its
// share of the subscribers and a loopback source address of its own.
type childClients struct {
	kids []*Child
}

func startClientChildren(wsURL string, n, procs, parallel int, stderr io.Writer) (*childClients, error) {
	cc := &childClients{}
	for i := range procs {
		share := n / procs
		if i < n%procs {
			share++
		}
		kid, err := StartChild(ChildSpec{Role: RoleOverlayClients,
			Args:       []string{wsURL, strconv.Itoa(share), strconv.Itoa(max(1, parallel/procs)), fmt.Sprintf("127.0.%d.%d", 1+i/200, 10+i%200)},
			StderrLine: func(line string) { fmt.Fprintf(stderr, "clients %d: %s\n", i, line) }})
		if err != nil {
			cc.close()
			return nil, err
		}
		cc.kids = append(cc.kids, kid)
	}
	return cc, nil
}

// each asks every child the same, at once, and returns the replies.
func (cc *childClients) each(cmd string, timeout time.Duration) ([]string, error) {
	out := make([]string, len(cc.kids))
	errs := make([]error, len(cc.kids))
	var wg sync.WaitGroup
	for i, k := range cc.kids {
		wg.Go(func() { out[i], errs[i] = k.Ask(cmd, timeout) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (cc *childClients) connect(context.Context) (int, int, error) {
	replies, err := cc.each("connect", 5*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	var connected, failed int
	var firstErr error
	for _, r := range replies {
		fields := strings.SplitN(r, " ", 3)
		c, err1 := strconv.Atoi(fields[0])
		f, err2 := 0, error(nil)
		if len(fields) > 1 {
			f, err2 = strconv.Atoi(fields[1])
		}
		if len(fields) < 2 || err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("client child: bad reply %q", r)
		}
		connected, failed = connected+c, failed+f
		if len(fields) == 3 && firstErr == nil {
			firstErr = errors.New(fields[2])
		}
	}
	return connected, failed, firstErr
}

func (cc *childClients) cpu() time.Duration {
	var sum time.Duration
	for _, k := range cc.kids {
		d, err := k.CPU()
		if err != nil {
			return -1
		}
		sum += d
	}
	return sum
}

func (cc *childClients) receipts(_ context.Context, timeout time.Duration) (overlayReceipts, error) {
	replies, err := cc.each("receipts "+strconv.FormatInt(timeout.Milliseconds(), 10), timeout+time.Minute)
	if err != nil {
		return overlayReceipts{}, err
	}
	var all overlayReceipts
	for _, r := range replies {
		var one overlayReceipts
		if err := json.Unmarshal([]byte(r), &one); err != nil {
			return all, fmt.Errorf("client child receipts: %w", err)
		}
		all.Recv, all.At, all.Sent = append(all.Recv, one.Recv...), append(all.At, one.At...), append(all.Sent, one.Sent...)
	}
	return all, nil
}

func (cc *childClients) close() {
	for _, k := range cc.kids {
		_ = k.Stop(15 * time.Second)
	}
}

// runOverlayClientsChild is one client process of `loadgen overlay`: args
// are the WebSocket URL, its number of clients, dials at once and its
// loopback source address. "connect" dials them all and answers
// "CONNECTED FAILED [first error]"; "receipts MS" waits at most MS
// milliseconds for every client to have the open and answers one JSON
// overlayReceipts line.
func runOverlayClientsChild(ctx context.Context, args []string, in io.Reader, ctl io.Writer) error {
	if len(args) != 4 {
		return fmt.Errorf("overlay clients child: want URL N PARALLEL LOCAL-IP, got %q", args)
	}
	n, err1 := strconv.Atoi(args[1])
	par, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil || n < 1 || n > 19000 || par < 1 {
		return fmt.Errorf("overlay clients child: bad N or PARALLEL in %q", args)
	}
	raiseFileLimit(uint64(n) + 512)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var oc *overlayClients
	prof := &profiler{rate: 1000}
	defer prof.stop()
	serveControl(in, ctl, prof, func(cmd, arg string) (string, error) {
		switch cmd {
		case "connect":
			if oc != nil {
				return "", errors.New("already connected")
			}
			oc = dialOverlayClients(ctx, args[0], n, par, args[3])
			// No collection while the deliveries are being measured.
			debug.SetGCPercent(-1)
			reply := fmt.Sprintf("%d %d", oc.connected, oc.failed)
			if oc.firstErr != nil {
				reply += " " + strings.ReplaceAll(oc.firstErr.Error(), "\n", " ")
			}
			return reply, nil
		case "receipts":
			ms, err := strconv.Atoi(arg)
			if oc == nil || err != nil || ms <= 0 {
				return "", errors.New("receipts MS, after connect")
			}
			oc.wait(ctx, time.Duration(ms)*time.Millisecond)
			b, err := json.Marshal(oc.receipts())
			return string(b), err
		}
		return "", fmt.Errorf("unknown command %q", cmd)
	})
	return nil
}

func measureOverlay(ctx context.Context, cfg OverlayConfig, srv *overlayServer) (OverlayLoadResult, error) {
	n := cfg.Subscribers
	res := OverlayLoadResult{Subscribers: n, ClientProcs: cfg.ClientProcs, ServerCPUMS: -1, ClientCPUMS: -1, LoadAvg1: LoadAvg1()}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return res, fmt.Errorf("--url: %w", err)
	}
	wsURL := "ws://" + u.Host + "/ws/overlay/" + url.PathEscape(cfg.Channel) + "?key=" + url.QueryEscape(cfg.Key)
	if u.Scheme == "https" {
		wsURL = "wss" + strings.TrimPrefix(wsURL, "ws")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var side overlayClientSide
	if cfg.ClientProcs == 0 {
		side = &inprocClients{wsURL: wsURL, n: n, par: cfg.DialParallel}
	} else {
		cc, err := startClientChildren(wsURL, n, cfg.ClientProcs, cfg.DialParallel, cfg.Stderr)
		if err != nil {
			return res, err
		}
		side = cc
	}
	defer side.close()
	start := time.Now()
	connected, failed, err := side.connect(ctx)
	if err != nil && connected == 0 {
		return res, fmt.Errorf("overlay clients: %w", err)
	}
	res.Connected = connected
	res.ConnectS = time.Since(start).Seconds()
	if failed > 0 {
		fmt.Fprintf(cfg.Stderr, "loadgen: %d of %d clients failed to connect: %v\n", failed, n, err)
	}
	if cfg.ClientProcs == 0 {
		// No collection while the deliveries are being measured (this
		// waits for one under way to finish).
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
	}

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return res, err
		}
		defer f.Close()
		runtime.SetCPUProfileRate(1000) // StartCPUProfile then warns that the rate is already set
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	if srv != nil {
		if err := srv.beginWindow(); err != nil {
			return res, fmt.Errorf("server child: %w", err)
		}
	}
	cpu0 := side.cpu()
	body := fmt.Sprintf(`{"channel":%q,"sku":"LOADGEN-1","title":"Loadgen drop","stock":100,"duration":"60s"}`, cfg.Channel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(cfg.URL, "/")+"/api/drops", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	// The moderator's action: the clock starts as the request is made
	// (the machine's clock, which the clients' receipts are on too).
	called := float64(time.Now().UnixMicro()) / 1000
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("open drop: %w", err)
	}
	res.APIAnswerMS = Round(float64(time.Now().UnixMicro())/1000-called, 2)
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("open drop: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	rc, err := side.receipts(ctx, cfg.Timeout)
	if err != nil {
		return res, err
	}
	if cpu1 := side.cpu(); cpu0 >= 0 && cpu1 >= 0 {
		res.ClientCPUMS = float64(cpu1-cpu0) / 1e6
	}
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if srv != nil {
		res.ServerCPUMS = srv.endWindow()
	}

	var api, lat, send []float64
	for i := range rc.Recv {
		api = append(api, rc.Recv[i]-called)
		lat = append(lat, rc.Recv[i]-rc.At[i])
		send = append(send, rc.Recv[i]-rc.Sent[i])
		res.BuildMS = math.Round((rc.Sent[i]-rc.At[i])*100) / 100
		res.APIToEventMS = math.Round((rc.At[i]-called)*100) / 100
	}
	res.Missed = n - len(lat)
	slices.Sort(api)
	slices.Sort(lat)
	slices.Sort(send)
	res.APIMinMS, res.APIP50MS, res.APIP99MS, res.APIMaxMS = overlayPct(api, 0), overlayPct(api, 0.50), overlayPct(api, 0.99), overlayPct(api, 1)
	res.MinMS, res.P50MS, res.P99MS, res.MaxMS = overlayPct(lat, 0), overlayPct(lat, 0.50), overlayPct(lat, 0.99), overlayPct(lat, 1)
	res.SendP99MS = overlayPct(send, 0.99)
	if len(lat) > 0 {
		if res.ClientCPUMS >= 0 {
			res.ClientCPUPerUS = math.Round(res.ClientCPUMS*1000/float64(len(lat))*100) / 100
		}
		if res.ServerCPUMS >= 0 {
			res.ServerCPUPerUS = math.Round(res.ServerCPUMS*1000/float64(len(lat))*100) / 100
		}
	}
	res.ClientCPUMS = math.Round(res.ClientCPUMS*100) / 100
	return res, nil
}

// overlayPct is the Quantile of sorted milliseconds, to 0.01 ms.
func overlayPct(xs []float64, p float64) float64 { return Round(Quantile(xs, p), 2) }
