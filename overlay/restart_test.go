package overlay_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// lockedBuffer collects a child's output from two pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildMicrodrop builds the real binary once for this test.
func buildMicrodrop(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "microdrop")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/microdrop/microdrop/cmd/microdrop").CombinedOutput()
	if err != nil {
		t.Fatalf("build microdrop: %v\n%s", err, out)
	}
	return bin
}

// server is one run of the real binary in its own process group.
type server struct {
	cmd *exec.Cmd
	out *lockedBuffer
}

func startServer(t *testing.T, bin, cfg, addr, data string) *server {
	t.Helper()
	s := &server{out: &lockedBuffer{}}
	s.cmd = exec.Command(bin, "serve", "--config", cfg, "--http", addr, "--rtsp", "off", "--data", data)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kill)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up on %s:\n%s", addr, s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends the server the hard way (a crash, not a shutdown).
func (s *server) kill() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func api(t *testing.T, method, u, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminTok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s %s", method, u, resp.Status, b)
	}
	return string(b)
}

// Kill the real server under a live overlay and start it again on the same
// port: the page reconnects by itself and resyncs from the new snapshot,
// showing the same drop with the right stock and winners, and then follows
// live claims again.
func TestBrowserOverlayResyncsAfterRestart(t *testing.T) {
	ctx := browser(t)
	bin := buildMicrodrop(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "microdrop.yml")
	yml := fmt.Sprintf("admin_token: %q\nlog_level: warn\nchannels:\n  %s:\n    overlay_key: %q\n", testAdminTok, testChannel, testKey)
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	base := "http://" + addr

	srv := startServer(t, bin, cfg, addr, data)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/overlay/"+testChannel+"?key="+testKey)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first snapshot", `window.microdropOverlay && microdropOverlay.snapshots === 1`)
	body := api(t, http.MethodPost, base+"/api/drops", `{"channel":"streamer","sku":"RESTART","title":"Survivor Tee","stock":10,"duration":"5m"}`)
	id := strings.SplitN(strings.SplitN(body, `"id":"`, 2)[1], `"`, 2)[0]
	for _, u := range []string{"ann", "ben"} {
		api(t, http.MethodPost, base+"/api/drops/"+id+"/claims", fmt.Sprintf(`{"user_id":%q,"login":%q}`, u, u))
	}
	waitFor(t, ctx, "8 left before the restart", `document.getElementById("card").dataset.remaining === "8"`)

	srv.kill()
	waitFor(t, ctx, "the page to notice", `microdropOverlay.connected === false`)
	startServer(t, bin, cfg, addr, data)
	waitFor(t, ctx, "the page to resync", fmt.Sprintf(`microdropOverlay.snapshots === 2 && microdropOverlay.connected &&
		microdropOverlay.drop.id === %q && document.getElementById("card").dataset.remaining === "8" &&
		!document.getElementById("card").classList.contains("hidden") && document.querySelectorAll("#winners li").length === 2`, id))

	api(t, http.MethodPost, base+"/api/drops/"+id+"/claims", `{"user_id":"cat","login":"cat"}`)
	waitFor(t, ctx, "live claims after the resync", `document.getElementById("card").dataset.remaining === "7" &&
		document.querySelector("#winners li").textContent === "cat"`)
}
