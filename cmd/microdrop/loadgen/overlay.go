package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
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
	// Latency from the event's time (the claims service's clock when it
	// decided the open, before the ledger commit) to each client's receipt.
	MinMS float64 `json:"min_ms"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// SendP99MS is from the frame's server send timestamp to receipt.
	SendP99MS float64 `json:"send_p99_ms"`
	// BuildMS is from the event's time to the frame's send timestamp (the
	// ledger commit and the hub building the frame): part of every
	// latency above.
	BuildMS  float64 `json:"build_ms"`
	Missed   int     `json:"missed"`
	ConnectS float64 `json:"connect_s"`
	// CPU spent from just before the open to the last receipt: the server
	// child's (-1 with --url) and the clients'. Per delivery, these are
	// what the fan-out costs, whatever else the machine is doing.
	ServerCPUMS    float64 `json:"server_cpu_ms"`
	ClientCPUMS    float64 `json:"client_cpu_ms"`
	ServerCPUPerUS float64 `json:"server_cpu_per_delivery_us"`
	ClientCPUPerUS float64 `json:"client_cpu_per_delivery_us"`
	LoadAvg1       float64 `json:"loadavg_1m"`
}

// OverlayConfig is a `loadgen overlay` run: Subscribers WebSocket overlay
// clients in this process, one drop opened, the time its DropOpened frame
// takes to reach each of them.
type OverlayConfig struct {
	Subscribers int
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
	case c.Subscribers < 1 || c.Subscribers > 19000:
		return fmt.Errorf("--subscribers must be between 1 and 19000 (open files are capped per process), not %d", c.Subscribers)
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
	raiseFileLimit(uint64(cfg.Subscribers) + 512)
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
	fmt.Fprintf(w, "overlay fan-out: %d subscribers (%d connected in %.1fs)\n", res.Subscribers, res.Connected, res.ConnectS)
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

func raiseFileLimit(want uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || l.Cur >= want {
		return
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
	env := append([]string{"MICRODROP_PUBLIC_URL="}, liftFrontLimits()...)
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
	}
}

func measureOverlay(ctx context.Context, cfg OverlayConfig, srv *overlayServer) (OverlayLoadResult, error) {
	n := cfg.Subscribers
	res := OverlayLoadResult{Subscribers: n, ServerCPUMS: -1, LoadAvg1: LoadAvg1()}
	bufs := &sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return res, fmt.Errorf("--url: %w", err)
	}
	wsURL := "ws://" + u.Host + "/ws/overlay/" + url.PathEscape(cfg.Channel) + "?key=" + url.QueryEscape(cfg.Key)
	if u.Scheme == "https" {
		wsURL = "wss" + strings.TrimPrefix(wsURL, "ws")
	}
	dialer := &websocket.Dialer{HandshakeTimeout: 20 * time.Second, ReadBufferSize: 2048, WriteBufferSize: 256}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		ready     sync.WaitGroup
		finished  sync.WaitGroup
		connected atomic.Int64
		firstErr  atomic.Value
	)
	subs := make([]overlaySub, n)
	conns := make(chan *websocket.Conn, n)
	sem := make(chan struct{}, cfg.DialParallel)
	start := time.Now()
	ready.Add(n)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			var conn *websocket.Conn
			var err error
			for attempt := 0; attempt < 5; attempt++ {
				conn, _, err = dialer.DialContext(ctx, wsURL, nil)
				if err == nil {
					break
				}
				time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
			}
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				ready.Done()
				return
			}
			// The first frame is the snapshot: once it is here the client
			// is subscribed, and nothing more comes before the open.
			if _, _, err := conn.ReadMessage(); err != nil {
				firstErr.CompareAndSwap(nil, err)
				conn.Close()
				ready.Done()
				return
			}
			connected.Add(1)
			conns <- conn
			finished.Add(1)
			ready.Done()
			// The connection stays open until every client is done:
			// closing it now would load the server while it is still
			// delivering to the others.
			go func() {
				defer finished.Done()
				overlayReadOpen(conn.NetConn(), &subs[i], bufs)
			}()
		}()
	}
	ready.Wait()
	res.Connected = int(connected.Load())
	res.ConnectS = time.Since(start).Seconds()
	if res.Connected < n {
		fmt.Fprintf(cfg.Stderr, "loadgen: %d of %d clients failed to connect: %v\n", n-res.Connected, n, firstErr.Load())
	}
	// No collection while the deliveries are being measured (this waits
	// for one under way to finish).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

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
	cpu0 := ProcessCPU()
	body := fmt.Sprintf(`{"channel":%q,"sku":"LOADGEN-1","title":"Loadgen drop","stock":100,"duration":"60s"}`, cfg.Channel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(cfg.URL, "/")+"/api/drops", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return res, fmt.Errorf("open drop: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("open drop: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}

	done := make(chan struct{})
	go func() { finished.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.Timeout):
	case <-ctx.Done():
	}
	res.ClientCPUMS = float64(ProcessCPU()-cpu0) / 1e6
	if cfg.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	if srv != nil {
		res.ServerCPUMS = srv.endWindow()
	}
	close(conns)
	for c := range conns {
		_ = c.Close() // unblocks readers still waiting
	}
	<-done

	var lat, send []float64
	for _, r := range subs {
		if !r.got {
			continue
		}
		at, err1 := strconv.ParseFloat(string(r.at[:r.atN]), 64)
		sent, err2 := strconv.ParseFloat(string(r.sent[:r.sentN]), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		lat = append(lat, r.recv-at)
		send = append(send, r.recv-sent)
		res.BuildMS = math.Round((sent-at)*100) / 100
	}
	res.Missed = n - len(lat)
	slices.Sort(lat)
	slices.Sort(send)
	res.MinMS, res.P50MS, res.P99MS, res.MaxMS = overlayPct(lat, 0), overlayPct(lat, 0.50), overlayPct(lat, 0.99), overlayPct(lat, 1)
	res.SendP99MS = overlayPct(send, 0.99)
	if len(lat) > 0 {
		res.ClientCPUPerUS = math.Round(res.ClientCPUMS*1000/float64(len(lat))*100) / 100
		if res.ServerCPUMS >= 0 {
			res.ServerCPUPerUS = math.Round(res.ServerCPUMS*1000/float64(len(lat))*100) / 100
		}
	}
	res.ClientCPUMS = math.Round(res.ClientCPUMS*100) / 100
	return res, nil
}

// overlayPct is the Quantile of sorted milliseconds, to 0.01 ms.
func overlayPct(xs []float64, p float64) float64 { return Round(Quantile(xs, p), 2) }
