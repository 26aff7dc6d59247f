package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/microdrop/microdrop/claims"
)

const testAdminToken = "test-admin-token-0123456789"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// microdropBinary builds the microdrop command once per test run, for tests that
// must run it as a real process (to kill it).
func microdropBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "microdrop-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "microdrop")
		out, err := exec.Command("go", "build", "-o", buildPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// server is microdrop running as a child process in its own process group.
type server struct {
	cmd  *exec.Cmd
	url  string
	logs *lockedWriter
}

// startServer runs `microdrop serve` on data and port, plus extra flags and
// environment (later variables win), and waits until it is healthy. Its log
// is shown if the test fails.
func startServer(t *testing.T, data string, port int, extraArgs []string, extraEnv ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--http", fmt.Sprintf("127.0.0.1:%d", port), "--rtsp", "off", "--data", data}, extraArgs...)
	cmd := exec.Command(microdropBinary(t), args...)
	cmd.Env = append(os.Environ(), append([]string{"MICRODROP_ADMIN_TOKEN=" + testAdminToken}, extraEnv...)...)
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
			t.Logf("server %s log:\n%s", s.url, logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not become healthy: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.w)
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// kill sends SIGKILL to the whole process group: no graceful anything.
func (s *server) kill() {
	if s.cmd.Process == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func api(t *testing.T, method, url string, in, out any) (int, error) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: %w", raw, err)
		}
	}
	return resp.StatusCode, nil
}

// TestCrashLosesNothingAcknowledged kills the server with SIGKILL in the
// middle of a burst and checks, from the ledger after restart, that every
// acknowledged win is there and stock adds up.
func TestCrashLosesNothingAcknowledged(t *testing.T) {
	data := t.TempDir()
	port := freePort(t)
	s := startServer(t, data, port, nil)
	const stock = 100000
	var open claims.DropResponse
	if st, err := api(t, "POST", s.url+"/api/drops", map[string]any{"channel": "crash", "sku": "tee", "stock": stock, "duration": "10m", "policy": "fcfs", "cap": 1}, &open); st != 201 || err != nil {
		t.Fatalf("open: %d %v", st, err)
	}
	id := open.Drop.ID

	b := startBurst(s.url, id, 32)
	b.waitAcked(500, 30*time.Second)
	s.kill()
	acked, failures := b.stop()
	if len(acked) < 500 {
		t.Fatalf("only %d wins acknowledged before the kill", len(acked))
	}
	if failures == 0 {
		t.Fatal("no claim failed: the kill did not land mid-burst")
	}

	s = startServer(t, data, freePort(t), nil)
	listing := struct{ Entries []claims.EntryView }{allEntries(t, s.url, id)}
	won := map[string]bool{}
	perUser := map[string]int{}
	for _, e := range listing.Entries {
		if e.Outcome == claims.OutcomeWon {
			won[e.Token] = true
			perUser[e.UserID]++
			if perUser[e.UserID] > 1 {
				t.Fatalf("user %s won twice", e.UserID)
			}
		}
	}
	missing := 0
	for tok := range acked {
		if !won[tok] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged wins are not in the ledger after the crash", missing, len(acked))
	}
	var after claims.DropResponse
	if st, err := api(t, "GET", s.url+"/api/drops/"+id, nil, &after); st != 200 || err != nil {
		t.Fatal(st, err)
	}
	if len(won) > stock || after.Drop.Remaining != stock-len(won) {
		t.Fatalf("after restart: %d wins, remaining %d, stock %d", len(won), after.Drop.Remaining, stock)
	}
	if after.Drop.State != "open" {
		t.Fatalf("the drop did not resume after restart: %s", after.Drop.State)
	}
	// The resumed decider keeps deciding, and remembers who already won.
	var res claims.ClaimResult
	if st, _ := api(t, "POST", s.url+"/api/drops/"+id+"/claims", claims.ClaimBody{UserID: "after_restart"}, &res); st != 200 || res.Outcome != "won" {
		t.Fatalf("claim after restart: %d %+v", st, res)
	}
	for _, user := range acked {
		if st, _ := api(t, "POST", s.url+"/api/drops/"+id+"/claims", claims.ClaimBody{UserID: user}, nil); st != http.StatusConflict {
			t.Fatalf("a winner from before the crash claimed again: %d", st)
		}
		break
	}
	t.Logf("acknowledged %d wins before SIGKILL; ledger holds %d; %d requests failed at the kill", len(acked), len(won), failures)
}

// burst fires claims from new viewers at a drop over HTTP until stopped,
// remembering every win acknowledged (token to user).
type burst struct {
	mu       sync.Mutex
	acked    map[string]string
	failures atomic.Int64
	halt     chan struct{}
	wg       sync.WaitGroup
}

func startBurst(base, dropID string, workers int) *burst {
	b := &burst{acked: map[string]string{}, halt: make(chan struct{})}
	var next atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := 0; w < workers; w++ {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-b.halt:
					return
				default:
				}
				user := fmt.Sprintf("viewer%06d", next.Add(1))
				body, _ := json.Marshal(claims.ClaimBody{UserID: user})
				// The admin bridge names its users; an anonymous body may not.
				req, _ := http.NewRequest("POST", base+"/api/drops/"+dropID+"/claims", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+testAdminToken)
				resp, err := client.Do(req)
				if err != nil {
					b.failures.Add(1)
					continue
				}
				var res claims.ClaimResult
				_ = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if resp.StatusCode == 200 && res.Token != "" {
					b.mu.Lock()
					b.acked[res.Token] = user
					b.mu.Unlock()
				}
			}
		}()
	}
	return b
}

// waitAcked waits (bounded) until n wins have been acknowledged.
func (b *burst) waitAcked(n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		got := len(b.acked)
		b.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the burst and returns the acknowledged wins and failed requests.
func (b *burst) stop() (map[string]string, int64) {
	close(b.halt)
	b.wg.Wait()
	return b.acked, b.failures.Load()
}

// TestServeInProcess starts the same Main the binary runs, on port 0, and
// drives it like a user would.
func TestServeInProcess(t *testing.T) {
	var stderr bytes.Buffer
	m := NewMain(io.Discard, &lockedWriter{w: &stderr})
	if err := m.ParseFlags([]string{"--http", "127.0.0.1:0", "--rtsp", "off", "--data", t.TempDir()}, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(fmt.Sprint(&stderr), m.Config.AdminToken) {
		t.Fatal("a generated admin token was not printed at first start")
	}
	base := "http://" + m.HTTPAddr
	resp, err := http.Get(base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("POST", base+"/api/drops", strings.NewReader(`{"channel":"streamer","sku":"cap","stock":1,"duration":"1m","policy":"fcfs"}`))
	req.Header.Set("Authorization", "Bearer "+m.Config.AdminToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("open: %v %v", resp, err)
	}
	var open claims.DropResponse
	json.NewDecoder(resp.Body).Decode(&open)
	resp.Body.Close()
	req, _ = http.NewRequest("POST", base+"/api/drops/"+open.Drop.ID+"/claims", strings.NewReader(`{"user_id":"u1"}`))
	req.Header.Set("Authorization", "Bearer "+m.Config.AdminToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("claim: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`microdrop_claims_total{outcome="won"} 1`, "microdrop_claim_decision_seconds_bucket", "microdrop_ledger_commit_batch_size", "microdrop_bus_subscribers"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestSIGTERMFinishesPendingCommits stops the server with SIGTERM in the
// middle of a burst: it must exit cleanly, and every win it acknowledged must
// be in the ledger when it comes back.
func TestSIGTERMFinishesPendingCommits(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, freePort(t), nil)
	var open claims.DropResponse
	if st, err := api(t, "POST", s.url+"/api/drops", map[string]any{"channel": "term", "sku": "tee", "stock": 50000, "duration": "10m", "policy": "fcfs"}, &open); st != 201 || err != nil {
		t.Fatalf("open: %d %v", st, err)
	}
	b := startBurst(s.url, open.Drop.ID, 16)
	b.waitAcked(300, 30*time.Second)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := s.cmd.Wait()
	acked, _ := b.stop()
	if err != nil {
		t.Fatalf("server did not exit cleanly on SIGTERM: %v\n%s", err, s.logs.String())
	}
	if !strings.Contains(s.logs.String(), "shutting down") {
		t.Fatalf("no shutdown in the log:\n%s", s.logs.String())
	}

	s = startServer(t, data, freePort(t), nil)
	listing := struct{ Entries []claims.EntryView }{allEntries(t, s.url, open.Drop.ID)}
	inLedger := map[string]bool{}
	for _, e := range listing.Entries {
		inLedger[e.Token] = true
	}
	for tok := range acked {
		if !inLedger[tok] {
			t.Fatalf("acknowledged win %s missing after a graceful stop", tok)
		}
	}
	t.Logf("%d wins acknowledged before SIGTERM, all in the ledger", len(acked))
}

// allEntries pages through GET /api/drops/{id}/entries.
func allEntries(t *testing.T, base, id string) []claims.EntryView {
	t.Helper()
	var all []claims.EntryView
	offset := 0
	for {
		var page struct {
			Entries    []claims.EntryView `json:"entries"`
			Total      int                `json:"total"`
			NextOffset *int               `json:"next_offset"`
		}
		if st, err := api(t, "GET", fmt.Sprintf("%s/api/drops/%s/entries?offset=%d&limit=%d", base, id, offset, claims.MaxPageSize), nil, &page); st != 200 || err != nil {
			t.Fatalf("entries: %d %v", st, err)
		}
		all = append(all, page.Entries...)
		if page.NextOffset == nil {
			if len(all) != page.Total {
				t.Fatalf("paged %d entries of %d", len(all), page.Total)
			}
			return all
		}
		offset = *page.NextOffset
	}
}
