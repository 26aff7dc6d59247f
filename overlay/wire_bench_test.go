//go:build linux

package overlay

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/microdrop/microdrop"
)

// BenchmarkWriteFloor is the floor under a fan-out's cost per delivery:
// one write(2) of a drop's open frame (the size BenchmarkHubFanout and
// `loadgen overlay` send) to a loopback TCP socket, round-robin over
// conns sockets as a fan-out goes, each drained by a reader goroutine.
// cpu-ns/write is the writing thread's own CPU time (RUSAGE_THREAD) per
// call: on loopback that includes the kernel's delivery into the
// receiving socket and the wake-up of its reader, which a remote viewer
// would not cost the server.
func BenchmarkWriteFloor(b *testing.B) {
	qr, err := NewQRBits("http://localhost:8080/c/01J0000000000000000000000?code=MOON")
	if err != nil {
		b.Fatal(err)
	}
	payload, _ := json.Marshal(Frame{Type: FrameEvent, Kind: microdrop.DropOpened, Seq: 1, Channel: "ch",
		AtMS: unixMS(time.Now()), ServerMS: unixMS(time.Now()), Drop: view(1000, "open"),
		ClaimURL: "http://localhost:8080/c/01J0000000000000000000000?code=MOON", QR: qr})
	frame := encodeFrame(opText, payload)
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			fds := make([]int, n)
			for i := range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				s, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				go func() { _, _ = io.Copy(io.Discard, c) }()
				f, err := s.(*net.TCPConn).File() // a blocking duplicate: write(2) waits instead of EAGAIN
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				fds[i] = int(f.Fd())
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			cpu0 := threadCPU()
			for i := range b.N {
				if _, err := syscall.Write(fds[i%n], frame); err != nil {
					b.Fatal(err)
				}
			}
			cpu := threadCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/write")
			b.ReportMetric(float64(len(frame)), "frame-bytes")
		})
	}
}

// threadCPU is the calling OS thread's user and system time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
