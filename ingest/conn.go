package ingest

import (
	"net"
	"os"
	"sync"
	"time"
)

// The RTSP server's TCP connections are wrapped so that the relay pays one
// system call per burst instead of one per packet.
//
// gortsplib gives each RTSP session one writer goroutine that takes queued
// packets one at a time and writes each as its own interleaved frame: one
// write(2) per packet per reader, each preceded by SetWriteDeadline. On
// the read side it reads through a 4 KiB bufio.Reader (at most three video
// packets per read(2)) and sets a read deadline before every frame.
// Publishers send each video frame as a burst of packets; relaying 20
// such streams, those calls were a third of the relay's CPU (write(2)
// 20%, read(2) 11-16%, deadline updates 4%), and each reader's packets
// waited for one system call per packet ahead of them.
//
// relayConn keeps gortsplib's semantics while batching:
//   - Write copies the frame into a pending buffer and hands it to a
//     flusher goroutine. The flusher runs once the session's writer has
//     nothing more queued (or another core is free), so every frame queued
//     meanwhile leaves in one write(2). The buffer is bounded: a reader that
//     stops reading makes Write block, up to the write deadline, exactly as
//     a full socket buffer did before, so gortsplib's bounded write queue
//     fills and drops for that reader alone.
//   - Read fills a larger buffer with one read(2), and notes when it
//     returned: the receive time of the packets parsed from it, so the
//     relay needs no clock read per packet.
//   - Deadlines that only move later are applied with up to deadlineSlack
//     of extra time, so a steady stream costs one timer update per
//     deadlineSlack instead of one per packet. Earlier deadlines and
//     clearing them apply at once.

const (
	// maxPendingWrite bounds the bytes a connection holds for the kernel.
	maxPendingWrite = 128 << 10
	// minReadBuffer and maxReadBuffer bound what one read(2) may fetch; the
	// buffer grows when reads fill it, so an idle reader's connection
	// stays small.
	minReadBuffer = 8 << 10
	maxReadBuffer = 64 << 10
	// deadlineSlack is how much later than asked a timeout may fire.
	deadlineSlack = time.Second
	// closeFlushTimeout bounds how long Close waits to hand over what is
	// pending (a final RTSP response).
	closeFlushTimeout = 250 * time.Millisecond
)

// relayListener wraps accepted connections in relayConn.
type relayListener struct {
	net.Listener
}

func (l relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newRelayConn(c), nil
}

type relayConn struct {
	net.Conn

	// Read side: one reader at a time (gortsplib's connection reader,
	// which also runs the packet callbacks).
	rbuf   []byte
	rr, rw int
	rmu    sync.Mutex // guards rdl: net.Conn allows deadlines from any goroutine
	rdl    slackDeadline
	// readAt is when the last read(2) returned: when the bytes being
	// parsed reached the server.
	readAt time.Time

	mu        sync.Mutex
	pending   []byte
	spare     []byte
	flushing  bool          // the flusher owns a batch or has been kicked
	drained   chan struct{} // closed when the flusher takes a batch; nil unless a writer waits
	flushDone chan struct{} // closed when the flusher goroutine ends; nil unless Close waits
	wdl       time.Time     // latest write deadline asked for
	wdlSet    slackDeadline // applied write deadline; the flusher's
	err       error         // sticky write error
	closed    bool
	closeBy   time.Time
	kick      chan struct{}
}

func newRelayConn(c net.Conn) *relayConn {
	rc := &relayConn{Conn: c, kick: make(chan struct{}, 1)}
	go rc.flushLoop()
	return rc
}

func (c *relayConn) Read(p []byte) (int, error) {
	if c.rr == c.rw {
		if c.rbuf == nil {
			c.rbuf = make([]byte, minReadBuffer)
		}
		if len(p) >= len(c.rbuf) {
			n, err := c.Conn.Read(p)
			c.readAt = time.Now()
			return n, err
		}
		n, err := c.Conn.Read(c.rbuf)
		c.readAt = time.Now()
		if n <= 0 {
			return 0, err
		}
		c.rr, c.rw = 0, n
		if n == len(c.rbuf) && n < maxReadBuffer {
			// a backlog: fetch more per call from now on
			grown := make([]byte, min(2*n, maxReadBuffer))
			copy(grown, c.rbuf[:n])
			c.rbuf = grown
		}
	}
	n := copy(p, c.rbuf[c.rr:c.rw])
	c.rr += n
	return n, nil
}

func (c *relayConn) SetReadDeadline(t time.Time) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.rdl.set(t, c.Conn.SetReadDeadline)
}

func (c *relayConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return nil
}

func (c *relayConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Write queues b for the flusher. It blocks only while maxPendingWrite
// bytes wait for a peer that does not read, and then no later than the
// write deadline.
func (c *relayConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	for {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		if c.closed {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if len(c.pending) == 0 || len(c.pending)+len(b) <= maxPendingWrite {
			break
		}
		if err := c.waitDrained(); err != nil {
			c.mu.Unlock()
			return 0, err
		}
	}
	if c.pending == nil {
		c.pending, c.spare = c.spare[:0], nil
	}
	c.pending = append(c.pending, b...)
	if !c.flushing {
		c.flushing = true
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	return len(b), nil
}

// waitDrained waits, with c.mu held, until the flusher takes the pending
// batch or the write deadline passes.
func (c *relayConn) waitDrained() error {
	if c.drained == nil {
		c.drained = make(chan struct{})
	}
	ch, dl := c.drained, c.wdl
	c.mu.Unlock()
	defer c.mu.Lock()
	if dl.IsZero() {
		<-ch
		return nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return os.ErrDeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return os.ErrDeadlineExceeded
	}
}

// flushLoop is the connection's flusher goroutine. Kicked by Write, it is
// put next in line on the writer's core, so it usually runs once the
// session's writer blocks on an empty queue (sooner if another core is
// idle): a burst leaves in few write(2) calls. A parked goroutine costs
// less to wake than a new one costs to start.
func (c *relayConn) flushLoop() {
	for range c.kick {
		c.mu.Lock()
		c.flushLocked()
		done := c.closed
		if done && c.flushDone != nil {
			close(c.flushDone)
			c.flushDone = nil
		}
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// flushLocked hands pending batches to the kernel until none is left; c.mu
// is held on entry and exit, not during write(2).
func (c *relayConn) flushLocked() {
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = nil
		dl := c.wdl
		if c.closed && (dl.IsZero() || dl.After(c.closeBy)) {
			dl = c.closeBy
		}
		if c.drained != nil {
			close(c.drained)
			c.drained = nil
		}
		c.mu.Unlock()

		err := c.wdlSet.set(dl, c.Conn.SetWriteDeadline)
		if err == nil {
			_, err = c.Conn.Write(buf)
		}

		c.mu.Lock()
		if err != nil {
			c.err = err
			c.pending = nil
		}
		c.spare = buf[:0]
	}
	c.flushing = false
	if c.drained != nil { // a writer waits on a batch that failed
		close(c.drained)
		c.drained = nil
	}
}

// Close hands what is pending to the kernel (for at most
// closeFlushTimeout), stops the flusher and closes the connection.
func (c *relayConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.closeBy = time.Now().Add(closeFlushTimeout)
	done := make(chan struct{})
	c.flushDone = done
	busy := c.flushing
	c.mu.Unlock()
	if busy {
		_ = c.Conn.SetWriteDeadline(c.closeBy) // bound a write in progress
	}
	select {
	case c.kick <- struct{}{}:
	default: // a kick is pending: the flusher will see closed
	}
	<-done
	return c.Conn.Close()
}

// slackDeadline applies deadlines that move later at most once per
// deadlineSlack, rounding them up by that much.
type slackDeadline struct {
	applied time.Time
}

func (d *slackDeadline) set(t time.Time, apply func(time.Time) error) error {
	switch {
	case t.IsZero():
		if d.applied.IsZero() {
			return nil
		}
	case !d.applied.IsZero() && !t.After(d.applied) && d.applied.Sub(t) <= deadlineSlack:
		return nil // the applied deadline already covers t, and not by much
	case d.applied.IsZero() || t.After(d.applied):
		t = t.Add(deadlineSlack)
	}
	if err := apply(t); err != nil {
		return err
	}
	d.applied = t
	return nil
}
