package ingest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// relayConnPair returns a relayConn on the accepting side of a loopback
// TCP connection and the dialled side.
func relayConnPair(t *testing.T, rcvbuf int) (*relayConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		if rcvbuf <= 0 {
			return nil
		}
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
	}}
	peer, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := relayListener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc := c.(*relayConn)
	t.Cleanup(func() { rc.Close() })
	return rc, peer
}

// TestRelayConnKeepsWritesWhole: concurrent writers (gortsplib's session
// writer and its response path) never interleave inside one Write, order
// holds per writer, and Close delivers what was pending.
func TestRelayConnKeepsWritesWhole(t *testing.T) {
	rc, peer := relayConnPair(t, 0)
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			frame := make([]byte, 300)
			for i := range each {
				frame[0], frame[1], frame[2] = byte(w), byte(i>>8), byte(i)
				for k := 3; k < len(frame); k++ {
					frame[k] = byte(w)
				}
				if err := rc.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Error(err)
					return
				}
				if _, err := rc.Write(frame); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	wg.Wait()
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	b := <-got
	if len(b) != writers*each*300 {
		t.Fatalf("got %d bytes, want %d", len(b), writers*each*300)
	}
	next := make([]int, writers)
	for off := 0; off < len(b); off += 300 {
		f := b[off : off+300]
		w := int(f[0])
		if w >= writers || int(f[1])<<8|int(f[2]) != next[w] || !bytes.Equal(f[3:], bytes.Repeat([]byte{byte(w)}, 297)) {
			t.Fatalf("frame at %d is torn or out of order: writer %d seq %d, want %d", off, w, int(f[1])<<8|int(f[2]), next[w])
		}
		next[w]++
	}
	if _, err := rc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestRelayConnStalledPeer: with a peer that never reads, Write stops
// accepting once maxPendingWrite is pending and fails at the write
// deadline, like a blocking write(2) would, and the error sticks.
func TestRelayConnStalledPeer(t *testing.T) {
	rc, _ := relayConnPair(t, 4096)
	frame := make([]byte, 1400)
	deadline := time.Now().Add(300 * time.Millisecond)
	if err := rc.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var err error
	written := 0
	for written < 64<<20 {
		if _, err = rc.Write(frame); err != nil {
			break
		}
		written += len(frame)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d bytes: %v, want a deadline error", written, err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Fatalf("the write failed after %v; the deadline was 300ms", el)
	}
	if _, err := rc.Write(frame); err == nil {
		t.Fatal("a write after the failure succeeded")
	}
	closed := make(chan error, 1)
	go func() { closed <- rc.Close() }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung on a stalled peer")
	}
}

// TestRelayConnReads: reads in any size see the stream unchanged, across
// buffer growth.
func TestRelayConnReads(t *testing.T) {
	rc, peer := relayConnPair(t, 0)
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		_, _ = peer.Write(want)
		peer.Close()
	}()
	var got []byte
	sizes := []int{1, 4096, 13, 100000, 1200}
	buf := make([]byte, 100000)
	for i := 0; ; i++ {
		n, err := rc.Read(buf[:sizes[i%len(sizes)]])
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
	}
	if rc.readAt.IsZero() {
		t.Fatal("no read time noted")
	}
}

func TestSlackDeadline(t *testing.T) {
	var d slackDeadline
	var applied []time.Time
	set := func(t time.Time) error { applied = append(applied, t); return nil }
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at    time.Time
		apply bool
		want  time.Time
	}{
		{time.Time{}, false, time.Time{}},                            // nothing set, nothing to clear
		{t0, true, t0.Add(deadlineSlack)},                            // first deadline, rounded up
		{t0.Add(deadlineSlack / 2), false, time.Time{}},              // covered
		{t0.Add(deadlineSlack), false, time.Time{}},                  // covered exactly
		{t0.Add(2 * deadlineSlack), true, t0.Add(3 * deadlineSlack)}, // moves later
		{t0, true, t0},                   // earlier than applied by > slack: exact
		{time.Time{}, true, time.Time{}}, // cleared
	}
	for i, s := range steps {
		n := len(applied)
		if err := d.set(s.at, set); err != nil {
			t.Fatal(err)
		}
		if did := len(applied) > n; did != s.apply {
			t.Fatalf("step %d: applied=%v, want %v", i, did, s.apply)
		}
		if s.apply && !applied[len(applied)-1].Equal(s.want) {
			t.Fatalf("step %d: applied %v, want %v", i, applied[len(applied)-1], s.want)
		}
	}
}
