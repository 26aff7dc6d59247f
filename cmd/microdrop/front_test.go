package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
	"github.com/microdrop/microdrop/claims"
)

// TestIdleConnectionsDoNotStarveTheService holds far more idle connections
// than the server has file descriptors (ulimit -n 512 in its shell), from
// many addresses, half of them keep-alives after a request and half silent
// since connecting, while /healthz and claims keep answering.
func TestIdleConnectionsDoNotStarveTheService(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux: the idle clients dial from many 127.0.0.0/8 addresses")
	}
	port := freePort(t)
	args := []string{"-c", `ulimit -n 512 && exec "$0" "$@"`, microdropBinary(t), "serve",
		"--http", fmt.Sprintf("127.0.0.1:%d", port), "--rtsp", "off", "--data", t.TempDir()}
	cmd := exec.Command("sh", args...)
	cmd.Env = append(os.Environ(), "MICRODROP_ADMIN_TOKEN="+testAdminToken)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), logs: logs}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	healthy := func() error {
		resp, err := fresh.Get(s.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatal("server never became healthy")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var open claims.DropResponse
	if st, err := api(t, "POST", s.url+"/api/drops", rawJSON(`{"channel":"streamer","sku":"cap","stock":100,"duration":"10m","policy":"fcfs"}`), &open); st != 201 || err != nil {
		t.Fatalf("open: %d %v", st, err)
	}

	// 1,600 idle connections from 40 addresses: more than the fd limit.
	const addrs, perAddr = 40, 40
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for a := 0; a < addrs; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(a+1))}, Timeout: 5 * time.Second}
			for i := 0; i < perAddr; i++ {
				c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					continue
				}
				if i%2 == 0 { // a keep-alive left idle after one request
					fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(conns) < 1000 {
		t.Fatalf("only %d idle connections opened", len(conns))
	}
	for i := 0; i < 20; i++ {
		if err := healthy(); err != nil {
			t.Fatalf("healthz %d with %d idle connections held: %v", i, len(conns), err)
		}
		var res claims.ClaimResult
		if st, err := api(t, "POST", s.url+"/api/drops/"+open.Drop.ID+"/claims", claims.ClaimBody{UserID: fmt.Sprintf("idle_test_%d", i)}, &res); st != 200 || err != nil {
			t.Fatalf("claim %d with idle connections held: %d %v", i, st, err)
		}
	}
	if strings.Contains(logs.String(), "too many open files") {
		t.Fatalf("the server ran out of descriptors:\n%s", logs.String())
	}
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// TestConnCapPerAddress: one address holds at most its share; others are
// unaffected; trusted proxies are not capped.
func TestConnCapPerAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnCap(ln, 3, 1000, newClientIPs(nil))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), ConnState: lim.connState}
	go func() { _ = srv.Serve(lim) }()
	defer srv.Close()
	dialFrom := func(last byte) (net.Conn, bool) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, last)}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			return nil, false
		}
		resp.Body.Close()
		return c, true
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	served := 0
	for i := 0; i < 6; i++ {
		if c, ok := dialFrom(1); ok {
			held = append(held, c)
			served++
		}
	}
	if served != 3 {
		t.Fatalf("one address got %d connections, want the cap of 3", served)
	}
	if c, ok := dialFrom(2); !ok {
		t.Fatal("another address was refused")
	} else {
		held = append(held, c)
	}
	if _, _, refused := lim.stats(); refused != 3 {
		t.Fatalf("refused %d, want 3", refused)
	}
}

// TestConnCapShedsIdle: at the total cap the oldest idle connection makes
// room for a new one.
func TestConnCapShedsIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnCap(ln, 100, 4, newClientIPs(nil))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), ConnState: lim.connState}
	go func() { _ = srv.Serve(lim) }()
	defer srv.Close()
	var held []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond) // let the server see them (StateNew)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a new connection at the cap was not served: %v", err)
	}
	resp.Body.Close()
	if open, shed, _ := lim.stats(); shed < 1 || open > 4 {
		t.Fatalf("open %d shed %d", open, shed)
	}
}

// TestClientIPBehindProxies: X-Forwarded-For counts only from a trusted proxy.
func TestClientIPBehindProxies(t *testing.T) {
	c := newClientIPs([]string{"10.0.0.0/8", "192.0.2.7"})
	for _, tc := range []struct{ remote, xff, want string }{
		{"203.0.113.5:1234", "1.2.3.4", "203.0.113.5"},
		{"10.1.2.3:80", "1.2.3.4", "1.2.3.4"},
		{"10.1.2.3:80", "6.6.6.6, 1.2.3.4, 10.9.9.9", "1.2.3.4"},
		{"192.0.2.7:80", "garbage", "192.0.2.7"},
		{"10.1.2.3:80", "", "10.1.2.3"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := c.of(r); got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s via %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

// TestFrontRateLimits: claims and sign-in starts are limited per address;
// the admin bridge is not; another address is unaffected.
func TestFrontRateLimits(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	admin := microdrop.NewAdmin(testAdminToken, false, nil)
	f := newFront(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), admin,
		FrontConfig{RatePerIP: 1000, BurstPerIP: 1000, SignInRate: 8, ClaimRate: 40}, func() time.Time { return now })
	hit := func(path, remote string, bearer bool) int {
		r := httptest.NewRequest("POST", path, nil)
		r.RemoteAddr = remote
		if bearer {
			r.Header.Set("Authorization", "Bearer "+testAdminToken)
		}
		w := httptest.NewRecorder()
		f.ServeHTTP(w, r)
		return w.Code
	}
	ok := 0
	for i := 0; i < 50; i++ {
		if hit("/api/drops/x/claims", "198.51.100.1:1", false) == 200 {
			ok++
		}
	}
	if ok != 10 { // the burst: a quarter of a minute's budget
		t.Fatalf("%d claims passed from one address in an instant, want 10", ok)
	}
	if hit("/api/drops/x/claims", "198.51.100.2:1", false) != 200 {
		t.Fatal("another address was limited")
	}
	if hit("/api/drops/x/claims", "198.51.100.1:1", true) != 200 {
		t.Fatal("the admin bridge was limited")
	}
	for i := 0; i < 2; i++ {
		hit("/auth/twitch/start", "198.51.100.3:1", false)
	}
	if hit("/auth/twitch/start", "198.51.100.3:1", false) != http.StatusTooManyRequests {
		t.Fatal("sign-in starts are not limited")
	}
	now = now.Add(time.Minute)
	if hit("/api/drops/x/claims", "198.51.100.1:1", false) != 200 {
		t.Fatal("the budget did not refill")
	}
}

// A connection through the front door's cap still offers its socket, so
// the overlay hub writes its fan-out straight to it (without, every
// overlay got a writer goroutine of its own); bytes written to the
// descriptor reach the peer, and the cap still counts the connection.
func TestCapConnOffersItsSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := newConnCap(ln, 10, 100, newClientIPs(nil))
	defer lim.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := lim.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		t.Fatalf("%T offers no SyscallConn", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var werr error
	if err := rc.Write(func(fd uintptr) bool { _, werr = syscall.Write(int(fd), []byte("raw")); return true }); err != nil || werr != nil {
		t.Fatal(err, werr)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "raw" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	lim.mu.Lock()
	open := lim.open
	lim.mu.Unlock()
	if open != 1 {
		t.Fatalf("cap counts %d open connections, want 1", open)
	}
	_ = conn.Close()
	lim.mu.Lock()
	open = lim.open
	lim.mu.Unlock()
	if open != 0 {
		t.Fatalf("after close the cap counts %d, want 0", open)
	}
}
