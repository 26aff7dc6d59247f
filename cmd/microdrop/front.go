package main

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/microdrop/microdrop"
)

// The front door: what stands between the internet and the mux. Timeouts
// bound every request and idle connection (routes that must stream are
// exempt per request); the listener caps connections per client address and
// in total, shedding idle keep-alives before the process runs out of file
// descriptors; public requests are rate-limited per client, sign-in starts
// and web claims more tightly. The admin credential is exempt from the rate
// limits (it is the chat bridge and the load generator).

// HTTP server timeouts.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 60 * time.Second
)

// streaming reports routes whose requests outlive writeTimeout by design:
// WebSockets, media signalling, clip and bundle downloads, CPU profiles.
func streaming(path string) bool {
	for _, p := range []string{"/ws/", "/whip/", "/whep/", "/editor/", "/debug/pprof/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// clientIPs finds the client address of a request: the TCP peer, or behind
// a configured proxy the nearest X-Forwarded-For hop that is not a proxy.
type clientIPs struct{ trusted []netip.Prefix }

func newClientIPs(cidrs []string) clientIPs {
	var c clientIPs
	for _, s := range cidrs {
		if p, err := netip.ParsePrefix(s); err == nil {
			c.trusted = append(c.trusted, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			c.trusted = append(c.trusted, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return c
}

func (c clientIPs) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, _ := netip.ParseAddr(remote)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

func (c clientIPs) of(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !c.isTrusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a garbled header: fall back to what we know
		}
		if a = a.Unmap(); !c.isTrusted(a) {
			return a
		}
	}
	return peer
}

// ipLimiter is one token bucket per client address, forgotten when idle.
type ipLimiter struct {
	rate  rate.Limit
	burst int
	now   func() time.Time
	mu    sync.Mutex
	m     map[netip.Addr]*ipBucket
	swept time.Time
}

type ipBucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newIPLimiter(perSecond float64, burst int, now func() time.Time) *ipLimiter {
	return &ipLimiter{rate: rate.Limit(perSecond), burst: burst, now: now, m: make(map[netip.Addr]*ipBucket)}
}

func (l *ipLimiter) allow(a netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.m {
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.m, k)
			}
		}
		l.swept = now
	}
	b, ok := l.m[a]
	if !ok {
		b = &ipBucket{l: rate.NewLimiter(l.rate, l.burst)}
		l.m[a] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}

// front wraps the mux: deadlines per route, rate limits per client.
type front struct {
	next   http.Handler
	admin  microdrop.Admin
	ips    clientIPs
	public *ipLimiter
	signin *ipLimiter
	claims *ipLimiter
}

func newFront(next http.Handler, admin microdrop.Admin, cfg FrontConfig, now func() time.Time) *front {
	return &front{next: next, admin: admin, ips: newClientIPs(cfg.TrustedProxies),
		public: newIPLimiter(cfg.RatePerIP, cfg.BurstPerIP, now),
		signin: newIPLimiter(cfg.SignInRate/60, max(1, int(cfg.SignInRate/4)), now),
		claims: newIPLimiter(cfg.ClaimRate/60, max(1, int(cfg.ClaimRate/4)), now)}
}

func isClaim(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := r.URL.Path
	return (strings.HasPrefix(p, "/api/drops/") && strings.HasSuffix(p, "/claims")) || strings.HasPrefix(p, "/c/")
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if streaming(r.URL.Path) {
		// These answer for as long as the stream or download lasts; their
		// handlers set their own deadlines on the connection.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if r.URL.Path != "/healthz" && !f.admin.Allowed(r) {
		ip := f.ips.of(r)
		lim, what := f.public, "requests"
		switch {
		case strings.HasPrefix(r.URL.Path, "/auth/"):
			lim, what = f.signin, "sign-in attempts"
		case isClaim(r):
			lim, what = f.claims, "claims"
		}
		// Sign-in and claims also count against the general budget.
		if !lim.allow(ip) || (lim != f.public && !f.public.allow(ip)) {
			w.Header().Set("Retry-After", "5")
			microdrop.WriteError(w, microdrop.Errorf(microdrop.ERATELIMIT, "too many %s from your address; wait a few seconds", what))
			return
		}
	}
	f.next.ServeHTTP(w, r)
}

// connCap is a listener that caps open connections per client address and
// in total. At the total cap it closes the longest-idle keep-alive to make
// room, so idle connections can never starve new requests of descriptors.
type connCap struct {
	net.Listener
	perIP   int
	total   int
	trusted clientIPs

	mu    sync.Mutex
	open  int
	byIP  map[netip.Addr]int
	idle  map[*capConn]time.Time
	shed  int
	capIP int
}

type capConn struct {
	net.Conn
	c    *connCap
	ip   netip.Addr
	once sync.Once
}

// SyscallConn is the socket's own, so that writers that go past Go's
// poller (the overlay hub's fan-out) still reach a capped connection: the
// cap only counts connections, it never touches their bytes.
func (cc *capConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := cc.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (cc *capConn) Close() error {
	cc.once.Do(func() { cc.c.release(cc) })
	return cc.Conn.Close()
}

func newConnCap(ln net.Listener, perIP, total int, trusted clientIPs) *connCap {
	return &connCap{Listener: ln, perIP: perIP, total: total, trusted: trusted,
		byIP: make(map[netip.Addr]int), idle: make(map[*capConn]time.Time)}
}

func (c *connCap) Accept() (net.Conn, error) {
	for {
		conn, err := c.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := peerAddr(conn.RemoteAddr().String())
		c.mu.Lock()
		if c.byIP[ip] >= c.perIP && !c.trusted.isTrusted(ip) {
			c.capIP++
			c.mu.Unlock()
			_ = conn.Close()
			continue
		}
		var victim *capConn
		if c.open >= c.total {
			var oldest time.Time
			for v, at := range c.idle {
				if victim == nil || at.Before(oldest) {
					victim, oldest = v, at
				}
			}
			if victim != nil {
				delete(c.idle, victim)
				c.shed++
			}
		}
		c.open++
		c.byIP[ip]++
		c.mu.Unlock()
		if victim != nil {
			_ = victim.Close()
		}
		return &capConn{Conn: conn, c: c, ip: ip}, nil
	}
}

func (c *connCap) release(cc *capConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if c.byIP[cc.ip]--; c.byIP[cc.ip] <= 0 {
		delete(c.byIP, cc.ip)
	}
	delete(c.idle, cc)
}

// connState is the server's ConnState hook: it tracks which connections are
// between requests (the ones safe to shed).
func (c *connCap) connState(conn net.Conn, st http.ConnState) {
	cc, ok := conn.(*capConn)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		// Not in the middle of a request: a connection that has sent
		// nothing yet is as safe to shed as an idle keep-alive.
		c.idle[cc] = time.Now()
	default:
		delete(c.idle, cc)
	}
}

// stats reports open connections, idle ones shed and per-IP refusals.
func (c *connCap) stats() (open, shed, refused int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.shed, c.capIP
}

// fdBudget is how many client connections fit under the descriptor limit,
// leaving room for the ledger, media sockets and files.
func fdBudget(limit uint64) int {
	const reserve = 128
	if limit == 0 || limit > 1<<20 {
		return 1 << 20
	}
	if limit <= 2*reserve {
		return int(limit / 2)
	}
	return int(limit) - reserve
}
