// Package natstest runs a NATS server with JetStream inside a test process,
// and finds the shared one tests use on a developer machine or in CI.
package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultURL is the shared NATS server tests use unless MICRODROP_TEST_NATS
// names another.
const DefaultURL = "nats://127.0.0.1:4222"

// RunServer starts an in-process NATS server with JetStream on a free port,
// stopped when the test ends, and returns its URL.
func RunServer(tb testing.TB) string {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("in-process NATS server did not start")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

// BusURL returns a bus URL on the shared NATS server (MICRODROP_TEST_NATS
// or DefaultURL) with a stream and subject prefix of its own, deleted when
// the test ends. Without a reachable server the test is skipped, unless
// CI=true, where it fails.
func BusURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv("MICRODROP_TEST_NATS")
	if base == "" {
		base = DefaultURL
	}
	nc, err := nats.Connect(base, nats.Timeout(3*time.Second))
	if err != nil {
		msg := "NATS is not reachable at " + base + " (" + err.Error() + "); start one with JetStream, e.g.\n" +
			"  docker run -d -p 4222:4222 nats:2 -js\n  or: nats-server -js\n" +
			"or set MICRODROP_TEST_NATS"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	stream := "MDTEST_" + id
	tb.Cleanup(func() {
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, stream)
	})
	return base + "?stream=" + stream + "&prefix=mdtest_" + id
}

// FreePort returns a TCP port that was free a moment ago, for child
// processes that must be told their address before they start.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
