package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
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

// runLoadgenOverlay connects N WebSocket overlay clients, opens one drop and
// measures how long its DropOpened frame takes to reach each of them. The
// clients run in this process; the server is a child process (or --url), so
// neither side needs more than N open files.
func runLoadgenOverlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen overlay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("subscribers", 1000, "WebSocket overlay clients to connect")
	asJSON := fs.Bool("json", false, "print one JSON summary")
	target := fs.String("url", "", "a running microdrop (http://host:port); empty starts a server child on loopback")
	channel := fs.String("channel", "loadgen", "channel to watch and open the drop in (with --url)")
	key := fs.String("key", "", "the channel's overlay key (with --url)")
	token := fs.String("token", "", "admin token (with --url; also MICRODROP_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait for every client to receive the open")
	parallel := fs.Int("dial-parallel", 128, "connections dialled at once")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the clients (this process) during the fan-out to this file")
	serverProfile := fs.String("server-cpuprofile", "", "write a CPU profile of the server child during the fan-out to this file")
	serverProcs := fs.Int("server-procs", 0, "GOMAXPROCS of the server child (0: the Go default)")
	serveChild := fs.Bool("serve-child", false, "internal: run as the server child (the remaining arguments are serve's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveChild {
		return runOverlayServeChild(ctx, fs.Args(), *serverProfile, stdout, stderr)
	}
	if *n < 1 || *n > 19000 {
		return fmt.Errorf("--subscribers must be between 1 and 19000 (open files are capped per process), not %d", *n)
	}
	if *parallel < 1 || *parallel > 4096 {
		return errors.New("--dial-parallel must be between 1 and 4096")
	}
	overlayRaiseFileLimit(uint64(*n) + 512)

	var srv *overlayServerChild
	if *target == "" {
		tmp, err := os.MkdirTemp("", "microdrop-loadgen-overlay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*key, *token, *channel = overlayRandHex(12), overlayRandHex(16), "loadgen"
		child, addr, err := startOverlayServerChild(ctx, tmp, *channel, *key, *token, *serverProfile, *serverProcs, stderr)
		if err != nil {
			return err
		}
		defer child.stop()
		srv = child
		*target = "http://" + addr
	} else if *token == "" {
		*token = os.Getenv("MICRODROP_ADMIN_TOKEN")
	}
	if *key == "" || *token == "" {
		return errors.New("with --url, give --key (the overlay key) and --token (the admin token)")
	}
	res, err := measureOverlay(ctx, *target, *channel, *key, *token, *n, *parallel, *timeout, *cpuProfile, srv, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "overlay fan-out: %d subscribers (%d connected in %.1fs)\n", res.Subscribers, res.Connected, res.ConnectS)
	fmt.Fprintf(stdout, "event -> client latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms (send -> client p99 %.2f ms)\n", res.P50MS, res.P99MS, res.MaxMS, res.SendP99MS)
	fmt.Fprintf(stdout, "missed: %d\n", res.Missed)
	if res.ServerCPUMS >= 0 {
		fmt.Fprintf(stdout, "CPU per delivery: server %.2f µs, clients %.2f µs (load average %.2f)\n", res.ServerCPUPerUS, res.ClientCPUPerUS, res.LoadAvg1)
	}
	return nil
}

func overlayRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func overlayRaiseFileLimit(want uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil || l.Cur >= want {
		return
	}
	l.Cur = min(want, l.Max)
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

type overlayServerChild struct {
	cmd  *exec.Cmd
	done chan struct{}
	cpu  chan float64 // the child's CPU milliseconds over a measured window
}

func (c *overlayServerChild) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// beginWindow asks the child to note its CPU time (and start its CPU
// profile, if it has one); endWindow returns the CPU milliseconds it spent
// since, or -1.
func (c *overlayServerChild) beginWindow() { _ = c.cmd.Process.Signal(syscall.SIGUSR1) }

func (c *overlayServerChild) endWindow() float64 {
	_ = c.cmd.Process.Signal(syscall.SIGUSR2)
	select {
	case ms := <-c.cpu:
		return ms
	case <-time.After(10 * time.Second):
		return -1
	}
}

var (
	overlayServingAddr = regexp.MustCompile(`msg=serving .*?http=(\S+)`)
	overlayChildCPU    = regexp.MustCompile(`^loadgen-child cpu_ms=(\S+)`)
)

// startOverlayServerChild runs `microdrop serve` on a loopback port with a
// throw-away data dir and a config naming the channel's overlay key. The
// child is this binary in --serve-child mode: serve, plus a CPU meter (and
// profile) over the window the parent marks with SIGUSR1 and SIGUSR2.
func startOverlayServerChild(ctx context.Context, dir, channel, key, token, profile string, procs int, stderr io.Writer) (*overlayServerChild, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "microdrop.yml")
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\nchannels:\n  %s:\n    overlay_key: %q\n", token, channel, key)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(exe, "loadgen", "overlay", "--serve-child", "--server-cpuprofile", profile, "--",
		"--config", cfg, "--http", "127.0.0.1:0", "--rtsp", "off",
		"--data", filepath.Join(dir, "data"), "--log-level", "info")
	cmd.Env = append(os.Environ(), "MICRODROP_PUBLIC_URL=")
	cmd.Env = append(cmd.Env, loadgenFront()...)
	if procs > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("GOMAXPROCS=%d", procs))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start server child: %w", err)
	}
	c := &overlayServerChild{cmd: cmd, done: make(chan struct{}), cpu: make(chan float64, 1)}
	addrc := make(chan string, 1)
	var tail bytes.Buffer
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			if m := overlayServingAddr.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
			if m := overlayChildCPU.FindStringSubmatch(line); m != nil {
				var ms float64
				_, _ = fmt.Sscan(m[1], &ms)
				select {
				case c.cpu <- ms:
				default:
				}
				continue
			}
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
				fmt.Fprintln(stderr, "server:", line)
			}
			tailMu.Lock()
			if tail.Len() < 64<<10 {
				tail.WriteString(line + "\n")
			}
			tailMu.Unlock()
		}
	}()
	go func() { _ = cmd.Wait(); close(c.done) }()
	select {
	case addr := <-addrc:
		return c, addr, nil
	case <-c.done:
		tailMu.Lock()
		defer tailMu.Unlock()
		return nil, "", fmt.Errorf("server child exited before serving:\n%s", tail.String())
	case <-time.After(30 * time.Second):
		c.stop()
		return nil, "", errors.New("server child did not start within 30s")
	case <-ctx.Done():
		c.stop()
		return nil, "", ctx.Err()
	}
}

// runOverlayServeChild is `microdrop serve` with a CPU meter: SIGUSR1 notes
// the CPU time used so far and starts the CPU profile (if any); SIGUSR2
// stops the profile and prints the CPU milliseconds spent in between.
func runOverlayServeChild(ctx context.Context, serveArgs []string, profile string, stdout, stderr io.Writer) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		var start float64
		var f *os.File
		for s := range sigs {
			switch s {
			case syscall.SIGUSR1:
				if profile != "" && f == nil {
					var err error
					if f, err = os.Create(profile); err == nil {
						runtime.SetCPUProfileRate(1000)
						if pprof.StartCPUProfile(f) != nil {
							f.Close()
							f = nil
						}
					}
				}
				start = overlayCPUMS()
			case syscall.SIGUSR2:
				used := overlayCPUMS() - start
				if f != nil {
					pprof.StopCPUProfile()
					f.Close()
					f = nil
				}
				fmt.Fprintf(stderr, "loadgen-child cpu_ms=%.3f\n", used)
			}
		}
	}()
	return runServe(ctx, serveArgs, stdout, stderr)
}

// overlayLoadAvg is the 1-minute load average (Linux), or 0.
func overlayLoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscan(string(b), &l)
	return l
}

// overlayCPUMS is this process's user+system CPU time in milliseconds.
func overlayCPUMS() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
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
	// overlayBufs lends the clients read buffers only while they read, so
	// ten thousand waiting clients hold none (and touch no fresh memory
	// while the fan-out is measured).
	overlayBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}
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
func overlayReadOpen(nc net.Conn, sub *overlaySub) {
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
			bp := overlayBufs.Get().(*[]byte)
			defer overlayBufs.Put(bp)
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

func measureOverlay(ctx context.Context, base, channel, key, token string, n, parallel int, timeout time.Duration, profile string, srv *overlayServerChild, stderr io.Writer) (OverlayLoadResult, error) {
	res := OverlayLoadResult{Subscribers: n, ServerCPUMS: -1, LoadAvg1: overlayLoadAvg()}
	u, err := url.Parse(base)
	if err != nil {
		return res, fmt.Errorf("--url: %w", err)
	}
	wsURL := "ws://" + u.Host + "/ws/overlay/" + url.PathEscape(channel) + "?key=" + url.QueryEscape(key)
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
	sem := make(chan struct{}, parallel)
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
				overlayReadOpen(conn.NetConn(), &subs[i])
			}()
		}()
	}
	ready.Wait()
	res.Connected = int(connected.Load())
	res.ConnectS = time.Since(start).Seconds()
	if res.Connected < n {
		fmt.Fprintf(stderr, "loadgen: %d of %d clients failed to connect: %v\n", n-res.Connected, n, firstErr.Load())
	}
	// No collection while the deliveries are being measured (this waits
	// for one under way to finish).
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	if profile != "" {
		f, err := os.Create(profile)
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
		srv.beginWindow()
		time.Sleep(50 * time.Millisecond) // let the child take the signal
	}
	cpu0 := overlayCPUMS()
	body := fmt.Sprintf(`{"channel":%q,"sku":"LOADGEN-1","title":"Loadgen drop","stock":100,"duration":"60s"}`, channel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/api/drops", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
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
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	res.ClientCPUMS = overlayCPUMS() - cpu0
	if profile != "" {
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

// pct is the nearest-rank percentile of sorted xs, rounded to 0.01 ms.
func overlayPct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	i = max(0, min(i, len(xs)-1))
	return math.Round(xs[i]*100) / 100
}
