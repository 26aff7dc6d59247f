package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

// requireFFmpeg skips without ffmpeg, except in CI where it must be there.
func requireFFmpeg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required in CI: apt-get install -y ffmpeg")
		}
		t.Skip("install with: apt-get install -y ffmpeg")
	}
	return p
}

type testServer struct {
	*Server
	bus *microdrop.MemoryBus
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// mustStartServer starts an ingest server on loopback with free ports and
// closes it at the end of the test.
func mustStartServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	if cfg.RTSPAddress == "" {
		cfg.RTSPAddress = "127.0.0.1:0"
	}
	cfg.WebRTCLoopbackOnly = true
	bus := microdrop.NewMemoryBus()
	s, err := New(Deps{Logger: testLogger(t), Bus: bus, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testServer{Server: s, bus: bus}
}

func (ts *testServer) rtspURL(path string) string {
	return fmt.Sprintf("rtsp://%s/%s", ts.RTSPAddr().String(), path)
}

// waitFor polls cond every 20ms until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeUDPPair finds an even UDP port p on loopback with p+1 also free.
func freeUDPPair(t testing.TB) (int, int) {
	t.Helper()
	for range 50 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if p%2 != 0 {
			p--
		}
		a, err1 := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
		b, err2 := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p+1))
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		if err1 == nil && err2 == nil && p != 8000 {
			return p, p + 1
		}
	}
	t.Fatal("no free UDP port pair")
	return 0, 0
}

// runCmd runs a command to completion within limit, failing with its output.
func runCmd(t testing.TB, limit time.Duration, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startCmd starts a background command killed at the end of the test; the
// returned channel closes when it exits.
func startCmd(t testing.TB, name string, args ...string) (<-chan struct{}, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return done, &out
}

// programAudio makes a speech WAV with espeak-ng when available; "" means
// use a sine instead.
func programAudio(t testing.TB, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		return ""
	}
	p := filepath.Join(dir, "speech.wav")
	runCmd(t, 20*time.Second, "espeak-ng", "-w", p, "Welcome back to the stream. The hoodie drop opens in a moment, "+
		"so get ready to claim. Remember to stay hydrated and be kind in chat.")
	return p
}

// readF32 loads little-endian float32 PCM.
func readF32(t testing.TB, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:]))
	}
	return out
}

// annexBNALUs splits an Annex B byte stream.
func annexBNALUs(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+2 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				if end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// findMarker scans H.264 NAL units for microdrop's SEI; frame is the index
// of the picture the marker precedes.
func findMarker(nalus [][]byte) (Marker, int, bool) {
	frame := 0
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch typ := n[0] & 0x1f; {
		case typ == naluTypeSEI:
			if m, err := ParseSEI(n); err == nil {
				return m, frame, true
			}
		case typ >= 1 && typ <= 5:
			frame++
		}
	}
	return Marker{}, 0, false
}

// waitEvent returns the first event of kind on sub within limit.
func waitEvent(t testing.TB, sub *microdrop.Subscription, kind microdrop.Kind, limit time.Duration) microdrop.Event {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case e := <-sub.C():
			if e.Kind == kind {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %s event within %v", kind, limit)
		}
	}
}

func openDrop(t testing.TB, bus microdrop.Bus, channel, id string, code uint32) time.Time {
	t.Helper()
	at := time.Now()
	_, err := bus.Publish(context.Background(), microdrop.Event{
		Kind: microdrop.DropOpened, Channel: channel, DropID: id, At: at,
		Drop: &microdrop.DropView{ID: id, Channel: channel, CueCode: code, State: "open"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}
