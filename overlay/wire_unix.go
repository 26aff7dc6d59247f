//go:build unix

package overlay

import (
	"io"
	"net"
	"syscall"
)

// rawSocket is a socket's non-blocking write(2), past Go's poller: the
// poller would park the goroutine on a full socket, where the hub wants to
// move on to the next client. Only the client's current writer calls it.
//
// It writes under RawConn.Control, which holds the descriptor open but
// skips the poller's write lock and deadline check (a cache miss or two
// per client, a few percent of a fan-out). Its caller holds the
// connection's frame lock (guardedConn), which gorilla's own writes take
// too, so no other frame is written meanwhile.
type rawSocket struct {
	rc  syscall.RawConn
	fn  func(fd uintptr)
	buf []byte
	n   int
	err error
}

// newRawWriter returns nil for a connection that is not a socket of the
// net package's, which are all non-blocking (TLS, for one): such a client
// gets a writer goroutine. A wrapper that only counts or caps connections
// (serve's front door) passes by offering the socket's own SyscallConn:
// offering it says that bytes written to the descriptor are the
// connection's bytes.
func newRawWriter(c net.Conn) rawWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &rawSocket{rc: rc}
	s.fn = s.write
	return s
}

func (s *rawSocket) write(fd uintptr) {
	for s.n < len(s.buf) {
		n, errno := writeNB(int(fd), s.buf[s.n:])
		if n > 0 {
			s.n += n
		}
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			return // full: the caller hands the rest over
		case errno != 0:
			s.err = errno
			return
		case n <= 0:
			s.err = io.ErrShortWrite
			return
		}
	}
}

func (s *rawSocket) tryWrite(b []byte) (int, error) {
	s.buf, s.n, s.err = b, 0, nil
	if err := s.rc.Control(s.fn); err != nil {
		s.buf = nil
		return s.n, err
	}
	n, err := s.n, s.err
	s.buf = nil
	return n, err
}
