//go:build unix

package overlay

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// countingConn wraps a socket the way a connection cap does, offering the
// socket's own SyscallConn; opaqueConn wraps it without (as TLS does).
type countingConn struct{ *net.TCPConn }

func (c countingConn) SyscallConn() (syscall.RawConn, error) { return c.TCPConn.SyscallConn() }

type opaqueConn struct{ net.Conn }

// The hub writes straight to a socket behind a wrapper that offers the
// socket, and never past one that does not.
func TestRawWriterGoesPastOnlyWrappersOfferingTheSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if newRawWriter(opaqueConn{s}) != nil {
		t.Fatal("a raw writer past a wrapper that hides the socket")
	}
	w := newRawWriter(countingConn{s.(*net.TCPConn)})
	if w == nil {
		t.Fatal("no raw writer behind a wrapper that offers the socket")
	}
	frame := encodeFrame(opText, []byte("hello"))
	if n, err := w.tryWrite(frame); err != nil || n != len(frame) {
		t.Fatalf("tryWrite = %d, %v", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(frame) {
		t.Fatalf("read %q, %v; want %q", got, err, frame)
	}
}
