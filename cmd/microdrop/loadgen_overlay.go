package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// SendP99MS is from the frame's server send timestamp to receipt.
	SendP99MS float64 `json:"send_p99_ms"`
	Missed    int     `json:"missed"`
	ConnectS  float64 `json:"connect_s"`
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 19000 {
		return fmt.Errorf("--subscribers must be between 1 and 19000 (open files are capped per process), not %d", *n)
	}
	if *parallel < 1 || *parallel > 4096 {
		return errors.New("--dial-parallel must be between 1 and 4096")
	}
	overlayRaiseFileLimit(uint64(*n) + 512)

	if *target == "" {
		tmp, err := os.MkdirTemp("", "microdrop-loadgen-overlay-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*key, *token, *channel = overlayRandHex(12), overlayRandHex(16), "loadgen"
		child, addr, err := startOverlayServerChild(ctx, tmp, *channel, *key, *token, stderr)
		if err != nil {
			return err
		}
		defer child.stop()
		*target = "http://" + addr
	} else if *token == "" {
		*token = os.Getenv("MICRODROP_ADMIN_TOKEN")
	}
	if *key == "" || *token == "" {
		return errors.New("with --url, give --key (the overlay key) and --token (the admin token)")
	}
	res, err := measureOverlay(ctx, *target, *channel, *key, *token, *n, *parallel, *timeout, stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "overlay fan-out: %d subscribers (%d connected in %.1fs)\n", res.Subscribers, res.Connected, res.ConnectS)
	fmt.Fprintf(stdout, "event -> client latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms (send -> client p99 %.2f ms)\n", res.P50MS, res.P99MS, res.MaxMS, res.SendP99MS)
	fmt.Fprintf(stdout, "missed: %d\n", res.Missed)
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

var overlayServingAddr = regexp.MustCompile(`msg=serving .*?http=(\S+)`)

// startOverlayServerChild runs `microdrop serve` on a loopback port with a
// throw-away data dir and a config naming the channel's overlay key.
func startOverlayServerChild(ctx context.Context, dir, channel, key, token string, stderr io.Writer) (*overlayServerChild, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "microdrop.yml")
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\nchannels:\n  %s:\n    overlay_key: %q\n", token, channel, key)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(exe, "serve", "--config", cfg, "--http", "127.0.0.1:0", "--rtsp", "off",
		"--data", filepath.Join(dir, "data"), "--log-level", "info")
	cmd.Env = append(os.Environ(), "MICRODROP_PUBLIC_URL=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start server child: %w", err)
	}
	c := &overlayServerChild{cmd: cmd, done: make(chan struct{})}
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

type overlayLoadFrame struct {
	Type     string  `json:"type"`
	Kind     string  `json:"kind"`
	AtMS     float64 `json:"at_ms"`
	ServerMS float64 `json:"server_ms"`
}

type overlayReceived struct {
	at   float64 // Unix ms
	data []byte
}

func measureOverlay(ctx context.Context, base, channel, key, token string, n, parallel int, timeout time.Duration, stderr io.Writer) (OverlayLoadResult, error) {
	res := OverlayLoadResult{Subscribers: n}
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
		mu        sync.Mutex
		got       []overlayReceived
	)
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
			// The first frame is the snapshot: once it is here the client is subscribed.
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
			go func() {
				defer finished.Done()
				defer conn.Close()
				for {
					_, data, err := conn.ReadMessage()
					recv := float64(time.Now().UnixMicro()) / 1000
					if err != nil {
						return
					}
					// Decode later: JSON work here would steal CPU from the
					// deliveries still being measured.
					if !bytes.Contains(data, []byte(`"kind":"drop.opened"`)) {
						continue
					}
					mu.Lock()
					got = append(got, overlayReceived{recv, data})
					mu.Unlock()
					return
				}
			}()
		}()
	}
	ready.Wait()
	res.Connected = int(connected.Load())
	res.ConnectS = time.Since(start).Seconds()
	if res.Connected < n {
		fmt.Fprintf(stderr, "loadgen: %d of %d clients failed to connect: %v\n", n-res.Connected, n, firstErr.Load())
	}

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
	close(conns)
	for c := range conns {
		_ = c.Close() // unblocks readers still waiting
	}
	<-done

	mu.Lock()
	defer mu.Unlock()
	var lat, send []float64
	for _, r := range got {
		var f overlayLoadFrame
		if json.Unmarshal(r.data, &f) != nil || f.Type != "event" {
			continue
		}
		lat = append(lat, r.at-f.AtMS)
		send = append(send, r.at-f.ServerMS)
	}
	res.Missed = n - len(lat)
	slices.Sort(lat)
	slices.Sort(send)
	res.P50MS, res.P99MS, res.MaxMS = overlayPct(lat, 0.50), overlayPct(lat, 0.99), overlayPct(lat, 1)
	res.SendP99MS = overlayPct(send, 0.99)
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
