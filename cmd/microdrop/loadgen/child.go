package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ChildEnv is set in a child's environment to its role. A process started
// with it is not a normal run of the command: main hands it to RunChild.
const ChildEnv = "MICRODROP_LOADGEN_CHILD"

// Child roles.
const (
	RoleOverlayServer  = "overlay-server"  // microdrop serve with a control pipe
	RoleRelay          = "relay"           // the ingest server alone
	RoleOverlayClients = "overlay-clients" // WebSocket overlay clients of loadgen overlay
)

// ErrChildStopped is returned by Ask once the child has exited or its
// control pipe has broken.
var ErrChildStopped = errors.New("loadgen child stopped")

// ChildSpec says how to start a child.
type ChildSpec struct {
	Role string
	Args []string
	Env  []string // added to this process's environment
	// StderrLine, if set, gets each line the child writes to standard
	// error; lines are dropped otherwise.
	StderrLine func(line string)
}

// Child is this binary re-run as a server under test, so its CPU is its own.
// It runs in its own process group (a terminal's ^C reaches the parent
// only, and Stop can end anything the child started). The parent talks to
// it by lines: commands on the child's standard input, one reply line each
// on a control pipe (the child's file descriptor 3), so the child's own
// stdout and stderr stay free for its logs. Every wait is bounded.
type Child struct {
	cmd     *exec.Cmd
	stdin   *os.File
	ctl     *os.File
	ctlR    *bufio.Reader
	mu      sync.Mutex // one Ask at a time
	broken  bool       // an Ask timed out: replies no longer line up
	done    chan struct{}
	logs    chan struct{} // closed when the child's stderr is drained
	stop    sync.Once
	err     error // from Wait
	stopErr error
}

// killWait bounds the wait for a child after SIGKILL: the kernel reaps it at
// once unless it is stuck in a device, which is worth an error, not a hang.
const killWait = 5 * time.Second

// StartChild starts this executable in spec.Role.
func StartChild(spec ChildSpec) (*Child, error) {
	if os.Getenv(ChildEnv) != "" {
		return nil, errors.New("loadgen child: refusing to start a child from a child")
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	cmd := exec.Command(exe, spec.Args...)
	cmd.Env = append(append(os.Environ(), spec.Env...), ChildEnv+"="+spec.Role)
	cmd.Stdin, cmd.Stderr, cmd.ExtraFiles = inR, errW, []*os.File{ctlW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	// The child holds its own copies of its ends now.
	inR.Close()
	ctlW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		ctlR.Close()
		errR.Close()
		return nil, fmt.Errorf("start loadgen child %s: %w", spec.Role, err)
	}
	c := &Child{cmd: cmd, stdin: inW, ctl: ctlR, ctlR: bufio.NewReader(ctlR), done: make(chan struct{}), logs: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	go func() {
		defer close(c.logs)
		defer errR.Close()
		sc := bufio.NewScanner(errR)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if spec.StderrLine != nil {
				spec.StderrLine(sc.Text())
			}
		}
	}()
	return c, nil
}

// Pid is the child's process id (and its process group's).
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Done is closed once the child has exited.
func (c *Child) Done() <-chan struct{} { return c.done }

// Ask sends one command and returns the child's reply; a reply "error MSG"
// comes back as an error. It waits at most timeout.
func (c *Child) Ask(cmd string, timeout time.Duration) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken {
		return "", ErrChildStopped
	}
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		c.broken = true
		return "", fmt.Errorf("%w: %v", ErrChildStopped, err)
	}
	_ = c.ctl.SetReadDeadline(time.Now().Add(timeout))
	line, err := c.ctlR.ReadString('\n')
	if err != nil {
		c.broken = true
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", fmt.Errorf("loadgen child: no answer to %q within %v", cmd, timeout)
		}
		return "", fmt.Errorf("%w: %v", ErrChildStopped, err)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return "", fmt.Errorf("loadgen child: %s", msg)
	}
	return line, nil
}

// CPU is the child's CPU time so far, as it measures its own (ProcessCPU).
func (c *Child) CPU() (time.Duration, error) {
	line, err := c.Ask("cpu", 10*time.Second)
	if err != nil {
		return -1, err
	}
	ns, err := strconv.ParseInt(line, 10, 64)
	if err != nil {
		return -1, fmt.Errorf("loadgen child cpu %q: %w", line, err)
	}
	return time.Duration(ns), nil
}

// Stop ends the child: its standard input closes and it gets SIGINT (either
// makes a child of this package exit); after grace its whole process group
// gets SIGKILL. It returns once the child is gone, or with an error after
// killWait more. It may be called more than once.
func (c *Child) Stop(grace time.Duration) error {
	c.stop.Do(func() {
		_ = c.stdin.Close()
		_ = c.cmd.Process.Signal(os.Interrupt)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = syscall.Kill(-c.Pid(), syscall.SIGKILL)
			select {
			case <-c.done:
			case <-time.After(killWait):
				c.stopErr = fmt.Errorf("loadgen child %d still running %v after SIGKILL", c.Pid(), killWait)
				return
			}
		}
		// The log reader ends when the last writer of the child's stderr
		// does; a grandchild may keep it, so do not wait long.
		select {
		case <-c.logs:
		case <-time.After(time.Second):
		}
		_ = c.ctl.Close()
	})
	return c.stopErr
}

// Err is how the child exited (nil for status 0), once Done is closed.
func (c *Child) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// ChildDeps is what RunChild needs from the command.
type ChildDeps struct {
	// Serve runs `microdrop serve` with args until ctx ends (RoleOverlayServer).
	Serve          func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Control is where replies go; the child's file descriptor 3 when nil.
	Control io.Writer
}

// RunChild runs this process as the child role (the value of ChildEnv) with
// the arguments its parent gave.
func RunChild(ctx context.Context, role string, args []string, deps ChildDeps) error {
	ctl := deps.Control
	if ctl == nil {
		f := os.NewFile(3, "loadgen-control")
		if f == nil {
			return errors.New("loadgen child: no control pipe")
		}
		defer f.Close()
		ctl = f
	}
	switch role {
	case RoleRelay:
		return runRelayChild(ctx, args, deps.Stdin, ctl, deps.Stderr)
	case RoleOverlayClients:
		return runOverlayClientsChild(ctx, args, deps.Stdin, ctl)
	case RoleStampedeViewers:
		return runStampedeChild(ctx, deps.Stdin, ctl)
	case RoleOverlayServer:
		if deps.Serve == nil {
			return errors.New("loadgen child: this binary cannot serve")
		}
		return runOverlayServerChild(ctx, args, deps, ctl)
	}
	return fmt.Errorf("loadgen child: unknown role %q", role)
}

// serveControl answers the parent's commands, one reply line each, until
// in closes. The commands every child knows: "cpu" (ProcessCPU in
// nanoseconds) and "profile KIND PATH" / "profile" (start / stop).
func serveControl(in io.Reader, out io.Writer, prof *profiler, handle func(cmd, arg string) (string, error)) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		var reply string
		var err error
		switch cmd {
		case "cpu":
			reply = strconv.FormatInt(int64(ProcessCPU()), 10)
		case "profile":
			reply = "ok"
			if kind, path, _ := strings.Cut(arg, " "); kind == "" {
				prof.stop()
			} else {
				err = prof.start(kind, path)
			}
		default:
			if handle == nil {
				err = fmt.Errorf("unknown command %q", cmd)
			} else {
				reply, err = handle(cmd, arg)
			}
		}
		if err != nil {
			reply = "error " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		if _, err := fmt.Fprintln(out, reply); err != nil {
			return
		}
	}
}

// profiler holds a running CPU profile, execution trace and allocation
// profile (written at the stop).
type profiler struct {
	rate               int // CPU samples per second; 0 for Go's default
	mu                 sync.Mutex
	cpu, trace, allocs *os.File
}

func (p *profiler) start(kind, path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	switch kind {
	case "cpu":
		if p.cpu != nil {
			err = errors.New("a CPU profile is already running")
			break
		}
		if p.rate > 0 {
			// A short burst needs more samples than Go's 100 a second;
			// StartCPUProfile then warns that the rate is already set.
			runtime.SetCPUProfileRate(p.rate)
		}
		if err = pprof.StartCPUProfile(f); err == nil {
			p.cpu = f
		}
	case "allocs":
		p.allocs = f
		return nil
	case "trace":
		if p.trace != nil {
			err = errors.New("a trace is already running")
		} else if err = trace.Start(f); err == nil {
			p.trace = f
			// Traces grow fast: a second is plenty.
			time.AfterFunc(time.Second, p.stopTrace)
		}
	default:
		err = fmt.Errorf("unknown profile kind %q", kind)
	}
	if err != nil {
		f.Close()
	}
	return err
}

func (p *profiler) stopTrace() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trace != nil {
		trace.Stop()
		p.trace.Close()
		p.trace = nil
	}
}

func (p *profiler) stop() {
	p.stopTrace()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cpu != nil {
		pprof.StopCPUProfile()
		p.cpu.Close()
		p.cpu = nil
	}
	if p.allocs != nil {
		// Cumulative since the process started; the setup is noise next
		// to the measured window.
		_ = pprof.Lookup("allocs").WriteTo(p.allocs, 0)
		p.allocs.Close()
		p.allocs = nil
	}
}

// liftFrontLimits is the environment that lifts serve's per-client caps for
// a child under load: its thousands of clients all come from one address.
func liftFrontLimits() []string {
	return []string{"MICRODROP_MAX_CONNS_PER_IP=1000000", "MICRODROP_RATE_PER_IP=1000000", "MICRODROP_BURST_PER_IP=1000000"}
}
