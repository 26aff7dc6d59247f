package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/microdrop/microdrop/claims"
	"github.com/microdrop/microdrop/docs/bench"
)

// DurableConfig is `loadgen durable`: durable all-win claims over HTTP,
// driven by wrk with docs/bench/wrk-claim.lua, beside the Redis reference
// (docs/bench/claim.lua on a redis-server of its own with appendfsync
// always), driven by redis-benchmark, alternately in the same minutes. Both
// clients are C programs, so neither side pays for a Go client.
type DurableConfig struct {
	Seconds       int      // wrk's duration per run
	Connections   int      // connections for wrk and redis-benchmark alike
	Threads       int      // wrk threads
	Runs          int      // rounds of (Redis, each server binary)
	RedisRequests int      // redis-benchmark requests per run (it has no duration)
	Servers       []string // microdrop binaries to serve claims, in turn ("" is this one)
	Stock         int      // the drop's stock: enough that every claim wins
	// CPUProfile, if set, is a path prefix: each microdrop run writes the
	// server's CPU profile (from its /debug/pprof) to PREFIX-<run>-<n>.pprof.
	CPUProfile string
	Stderr     io.Writer
}

// DurableRow is one measured run.
type DurableRow struct {
	Target   string  `json:"target"`
	Client   string  `json:"client"`
	Run      int     `json:"run"`
	Requests int     `json:"requests"`
	PerSec   float64 `json:"per_sec"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	Errors   int     `json:"errors"`
	// ServerCPUUS is the server's CPU (user+system) per request, µs.
	ServerCPUUS float64 `json:"server_cpu_us_per_op"`
	Load1       float64 `json:"load1"`
	// Wins acknowledged to the client and wins the store holds afterwards
	// (the ledger's audit; for Redis, the winners set), and whether more
	// was handed out than the stock.
	AckedWins  int  `json:"acked_wins"`
	StoredWins int  `json:"stored_wins"`
	Oversold   bool `json:"oversold"`
	Consistent bool `json:"consistent"` // every acknowledged win is stored, and the store agrees with itself
}

// DurableReport is every run, and each microdrop target's best rate over
// Redis's best.
type DurableReport struct {
	Rows  []DurableRow       `json:"rows"`
	Ratio map[string]float64 `json:"ratio_to_redis"`
}

func (c *DurableConfig) defaults() error {
	if c.Seconds <= 0 || c.Seconds > 600 {
		return fmt.Errorf("--seconds must be 1-600, not %d", c.Seconds)
	}
	if c.Connections <= 0 || c.Connections > 10000 {
		return fmt.Errorf("--connections must be 1-10000, not %d", c.Connections)
	}
	if c.Threads <= 0 || c.Threads > c.Connections {
		return fmt.Errorf("--threads must be 1-connections, not %d", c.Threads)
	}
	if c.Runs <= 0 || c.Runs > 20 {
		return fmt.Errorf("--runs must be 1-20, not %d", c.Runs)
	}
	if c.RedisRequests <= 0 {
		return fmt.Errorf("--redis-requests must be positive, not %d", c.RedisRequests)
	}
	if c.Stock <= 0 || c.Stock > claims.MaxStock {
		return fmt.Errorf("--stock must be 1-%d, not %d", claims.MaxStock, c.Stock)
	}
	if len(c.Servers) == 0 {
		c.Servers = []string{""}
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	for _, tool := range []string{"wrk", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("loadgen durable needs %s on PATH (Debian: apt-get install wrk redis-server redis-tools): %w", tool, err)
		}
	}
	return nil
}

// Durable runs the comparison.
func Durable(ctx context.Context, cfg DurableConfig) (DurableReport, error) {
	var rep DurableReport
	if err := cfg.defaults(); err != nil {
		return rep, err
	}
	dir, err := os.MkdirTemp("", "microdrop-durable-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "wrk-claim.lua")
	if err := os.WriteFile(script, []byte(bench.WrkClaim), 0o600); err != nil {
		return rep, err
	}
	best := map[string]float64{}
	var bestRedis float64
	for run := 1; run <= cfg.Runs; run++ {
		row, err := durableRedis(ctx, cfg, filepath.Join(dir, fmt.Sprintf("redis-%d", run)))
		if err != nil {
			return rep, fmt.Errorf("redis run %d: %w", run, err)
		}
		row.Run = run
		rep.Rows = append(rep.Rows, row)
		bestRedis = max(bestRedis, row.PerSec)
		for i, bin := range cfg.Servers {
			row, err := durableMicrodrop(ctx, cfg, bin, script, filepath.Join(dir, fmt.Sprintf("md-%d-%d", run, i)), fmt.Sprintf("%d-%d", run, i))
			if err != nil {
				return rep, fmt.Errorf("microdrop %s run %d: %w", serverName(bin), run, err)
			}
			row.Run = run
			rep.Rows = append(rep.Rows, row)
			best[row.Target] = max(best[row.Target], row.PerSec)
		}
	}
	rep.Ratio = map[string]float64{}
	for t, v := range best {
		if bestRedis > 0 {
			rep.Ratio[t] = Round(v/bestRedis, 2)
		}
	}
	return rep, nil
}

func serverName(bin string) string {
	if bin == "" {
		return "microdrop"
	}
	return "microdrop " + bin
}

// WriteText prints the runs as a table.
func (r DurableReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%-3s %-34s %-16s %9s %9s %8s %8s %6s %10s %6s %s\n", "run", "target", "client", "requests", "per sec", "p50 ms", "p99 ms", "errors", "srv µs/op", "load", "checks")
	for _, x := range r.Rows {
		check := fmt.Sprintf("acked %d, stored %d, oversold %v", x.AckedWins, x.StoredWins, x.Oversold)
		if !x.Consistent {
			check += " INCONSISTENT"
		}
		fmt.Fprintf(w, "%-3d %-34s %-16s %9d %9.0f %8.2f %8.2f %6d %10.1f %6.2f %s\n", x.Run, x.Target, x.Client, x.Requests, x.PerSec, x.P50MS, x.P99MS, x.Errors, x.ServerCPUUS, x.Load1, check)
	}
	for t, v := range r.Ratio {
		fmt.Fprintf(w, "best %s / best redis: %.2f\n", t, v)
	}
}

func cpuPerOp(d time.Duration, n int) float64 {
	if d < 0 || n == 0 {
		return -1
	}
	return Round(float64(d)/1e3/float64(n), 1)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a server started for one run, in its own process group.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	tail bytes.Buffer
}

func startProc(name string, args, env []string, line func(string)) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			if p.tail.Len() < 64<<10 {
				p.tail.WriteString(sc.Text() + "\n")
			}
			p.mu.Unlock()
			if line != nil {
				line(sc.Text())
			}
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// served is a microdrop serve under test: this binary re-run as a server
// child, or another build started as `BIN serve`.
type served struct {
	pid    int
	done   <-chan struct{}
	stop   func()
	output func() string
}

func startServe(bin string, args, env []string, line func(string)) (*served, error) {
	if bin != "" {
		p, err := startProc(bin, append([]string{"serve"}, args...), env, line)
		if err != nil {
			return nil, err
		}
		return &served{pid: p.cmd.Process.Pid, done: p.done, stop: p.stop, output: p.output}, nil
	}
	var mu sync.Mutex
	var tail bytes.Buffer
	c, err := StartChild(ChildSpec{Role: RoleOverlayServer, Args: args, Env: env, StderrLine: func(l string) {
		mu.Lock()
		if tail.Len() < 64<<10 {
			tail.WriteString(l + "\n")
		}
		mu.Unlock()
		if line != nil {
			line(l)
		}
	}})
	if err != nil {
		return nil, err
	}
	return &served{pid: c.Pid(), done: c.Done(), stop: func() { _ = c.Stop(15 * time.Second) },
		output: func() string { mu.Lock(); defer mu.Unlock(); return tail.String() }}, nil
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tail.String()
}

// stop asks the process group to end (SIGTERM), then kills it.
func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(15 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killWait):
	}
}

// resp sends one command to Redis and reads one reply line (enough for
// the simple, integer and bulk replies the set-up needs).
func resp(rw *bufio.ReadWriter, args ...string) (string, error) {
	fmt.Fprintf(rw, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(rw, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := rw.Flush(); err != nil {
		return "", err
	}
	line, err := rw.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rw, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line[1:], nil
}

func durableRedis(ctx context.Context, cfg DurableConfig, dir string) (DurableRow, error) {
	row := DurableRow{Target: "redis (Lua, appendfsync always)", Client: "redis-benchmark"}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	port, err := freePort()
	if err != nil {
		return row, err
	}
	p, err := startProc("redis-server", []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--appendonly", "yes",
		"--appendfsync", "always", "--save", "", "--dir", dir, "--daemonize", "no"}, nil, nil)
	if err != nil {
		return row, err
	}
	defer p.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("redis-server did not listen on %s: %w\n%s", addr, err, p.output())
		}
		select {
		case <-p.done:
			return row, fmt.Errorf("redis-server exited:\n%s", p.output())
		case <-ctx.Done():
			return row, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	rw := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	sha, err := resp(rw, "SCRIPT", "LOAD", bench.RedisClaim)
	if err != nil {
		return row, err
	}
	// The stock is the requests' count: every claim wins unless two
	// random users collide (redis-benchmark draws them from 10^12).
	if _, err := resp(rw, "SET", "stock", strconv.Itoa(cfg.RedisRequests)); err != nil {
		return row, err
	}
	pid := p.cmd.Process.Pid
	cpu0 := procCPU(pid)
	out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-c", strconv.Itoa(cfg.Connections), "-n", strconv.Itoa(cfg.RedisRequests), "-r", "1000000000", "--csv",
		"EVALSHA", sha, "2", "stock", "winners", "u:__rand_int__").Output()
	cpu1 := procCPU(pid)
	row.Load1 = LoadAvg1()
	if err != nil {
		return row, fmt.Errorf("redis-benchmark: %w: %s", err, out)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 7 {
		return row, fmt.Errorf("redis-benchmark printed no CSV summary: %q", out)
	}
	row.PerSec, _ = strconv.ParseFloat(recs[1][1], 64)
	row.P50MS, _ = strconv.ParseFloat(recs[1][4], 64)
	row.P99MS, _ = strconv.ParseFloat(recs[1][6], 64)
	row.Requests = cfg.RedisRequests
	row.ServerCPUUS = cpuPerOp(cpu1-cpu0, row.Requests)
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	left, err := resp(rw, "GET", "stock")
	if err != nil {
		return row, err
	}
	won, err := resp(rw, "SCARD", "winners")
	if err != nil {
		return row, err
	}
	l, _ := strconv.Atoi(left)
	row.StoredWins, _ = strconv.Atoi(won)
	// redis-benchmark does not count replies by value: every reply that
	// was not an error is taken as acknowledged, and each stored win must
	// match one unit taken from the stock.
	row.AckedWins = row.StoredWins
	row.Oversold = l < 0
	row.Consistent = cfg.RedisRequests-l == row.StoredWins && !row.Oversold
	return row, nil
}

// wrkSummary is what wrk-claim.lua's done() prints.
type wrkSummary struct {
	Requests     int     `json:"requests"`
	Seconds      float64 `json:"seconds"`
	PerSec       float64 `json:"per_sec"`
	Won          int     `json:"won"`
	NotWon       int     `json:"not_won"`
	SocketErrors int     `json:"socket_errors"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
}

func durableMicrodrop(ctx context.Context, cfg DurableConfig, bin, script, dir, tag string) (DurableRow, error) {
	row := DurableRow{Target: serverName(bin) + " (HTTP, SQLite)", Client: "wrk + Lua"}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return row, err
	}
	token := randHex(24)
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\n", token)
	path := filepath.Join(dir, "microdrop.yml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		return row, err
	}
	addrc := make(chan string, 1)
	env := append([]string{"MICRODROP_PUBLIC_URL="}, liftFrontLimits()...)
	p, err := startServe(bin, []string{"--config", path, "--http", "127.0.0.1:0", "--rtsp", "off", "--data", filepath.Join(dir, "data"), "--log-level", "info"}, env,
		func(line string) {
			if m := servingAddr.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		})
	if err != nil {
		return row, err
	}
	defer p.stop()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case <-p.done:
		return row, fmt.Errorf("server exited before serving:\n%s", p.output())
	case <-time.After(30 * time.Second):
		return row, errors.New("server did not start within 30s")
	case <-ctx.Done():
		return row, ctx.Err()
	}
	api := newAPIClient([]string{base}, token, 1)
	defer api.close()
	call := func(method, path string, body, out any) error {
		_, err := api.do(ctx, method, base+path, body, out)
		return err
	}
	var opened claims.DropResponse
	if err := call("POST", "/api/drops", claims.OpenRequest{Channel: "durable", SKU: "bench", Title: "durable claims", Stock: cfg.Stock,
		Duration: claims.Duration(30 * time.Minute), Cap: 1, Policy: claims.FCFS}, &opened); err != nil {
		return row, err
	}
	drop := opened.Drop.ID
	pid := p.pid
	var profWG sync.WaitGroup
	if cfg.CPUProfile != "" && cfg.Seconds > 3 {
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			time.Sleep(time.Second)
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, cfg.Seconds-2), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := (&http.Client{Timeout: time.Duration(cfg.Seconds+30) * time.Second}).Do(req)
			if err != nil {
				fmt.Fprintln(cfg.Stderr, "server profile:", err)
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if err := os.WriteFile(fmt.Sprintf("%s-%s.pprof", cfg.CPUProfile, tag), b, 0o644); err != nil {
				fmt.Fprintln(cfg.Stderr, "server profile:", err)
			}
		}()
	}
	cpu0 := procCPU(pid)
	wrk := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(cfg.Threads), "-c", strconv.Itoa(cfg.Connections),
		"-d", fmt.Sprintf("%ds", cfg.Seconds), "--timeout", "10s", "-s", script, base)
	wrk.Env = append(os.Environ(), "MICRODROP_ADMIN_TOKEN="+token, "DROP="+drop, "PREFIX=r"+tag+"-")
	out, err := wrk.Output()
	cpu1 := procCPU(pid)
	row.Load1 = LoadAvg1()
	profWG.Wait()
	if err != nil {
		return row, fmt.Errorf("wrk: %w: %s", err, out)
	}
	var sum wrkSummary
	if i := bytes.LastIndex(out, []byte("\n{")); i < 0 || json.Unmarshal(bytes.TrimSpace(out[i:]), &sum) != nil {
		return row, fmt.Errorf("wrk printed no summary: %s", out)
	}
	row.Requests, row.PerSec, row.P50MS, row.P99MS = sum.Requests, Round(sum.PerSec, 0), sum.P50MS, sum.P99MS
	row.Errors = sum.NotWon + sum.SocketErrors
	row.AckedWins = sum.Won
	row.ServerCPUUS = cpuPerOp(cpu1-cpu0, sum.Requests)
	if err := call("POST", "/api/drops/"+drop+"/close", nil, nil); err != nil {
		return row, err
	}
	var audit claims.AuditReport
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := call("GET", "/api/drops/"+drop+"/audit", nil, &audit); err != nil {
			return row, err
		}
		if audit.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			return row, fmt.Errorf("drop %s not final after 30s", drop)
		}
		time.Sleep(50 * time.Millisecond)
	}
	row.StoredWins, row.Oversold = audit.Awarded, audit.Oversold
	row.Consistent = !audit.Oversold && audit.OverCapUsers == 0 && audit.StockAgrees && audit.Match && audit.Awarded >= sum.Won
	return row, nil
}
