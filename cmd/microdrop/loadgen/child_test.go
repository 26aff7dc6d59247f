package loadgen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func startTestChild(t *testing.T, role string, stderr func(string)) *Child {
	t.Helper()
	c, err := StartChild(ChildSpec{Role: role, Args: []string{"-test.run=^$"}, StderrLine: stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(time.Second) })
	return c
}

func TestChildAskAndStop(t *testing.T) {
	logs := newLines()
	c := startTestChild(t, roleEcho, logs.add)
	logs.waitFor(t, "echo child ready")
	if pgid, err := syscall.Getpgid(c.Pid()); err != nil || pgid != c.Pid() {
		t.Errorf("child %d in process group %d (%v), want its own", c.Pid(), pgid, err)
	}
	for _, msg := range []string{"hello", "two words"} {
		if got, err := c.Ask("echo "+msg, 10*time.Second); err != nil || got != msg {
			t.Errorf("echo %q: %q, %v", msg, got, err)
		}
	}
	if _, err := c.Ask("nosuch", 10*time.Second); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: %v", err)
	}
	cpu, err := c.CPU()
	if err != nil || cpu < 0 {
		t.Errorf("cpu %v, %v", cpu, err)
	}
	if _, err := c.Ask("profile nosuch /dev/null", 10*time.Second); err == nil {
		t.Error("an unknown profile kind was accepted")
	}
	// The protocol still lines up after errors.
	if got, err := c.Ask("echo again", 10*time.Second); err != nil || got != "again" {
		t.Errorf("after errors: %q, %v", got, err)
	}
	if err := c.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Stop returned before the child exited")
	}
	if err := c.Err(); err != nil {
		t.Errorf("the child exited with %v, want a clean exit on stdin's end", err)
	}
	if _, err := c.Ask("echo late", time.Second); !errors.Is(err, ErrChildStopped) {
		t.Errorf("Ask after Stop: %v, want ErrChildStopped", err)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestChildStopKillsStubborn: a child that ignores SIGINT and the end of its
// input is killed once the grace is over.
func TestChildStopKillsStubborn(t *testing.T) {
	ignoring := make(chan struct{})
	var once sync.Once
	c := startTestChild(t, roleStubborn, func(line string) {
		if strings.Contains(line, "ignoring SIGINT") {
			once.Do(func() { close(ignoring) })
		}
	})
	// Wait until it ignores SIGINT, else the signal ends it early and the
	// test proves less (a fixed sleep was too short on a loaded machine).
	select {
	case <-ignoring:
	case <-time.After(30 * time.Second):
		t.Fatal("the child never said it ignores SIGINT")
	}
	if err := c.Stop(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if !errors.As(c.Err(), &ee) {
		t.Fatalf("exit %v, want killed", c.Err())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("exit %v, want SIGKILL", c.Err())
	}
}

// TestChildAskTimeout: a child that never answers costs the caller the
// timeout, not a hang, and later Asks fail at once instead of reading a
// stale reply.
func TestChildAskTimeout(t *testing.T) {
	c := startTestChild(t, roleSilent, nil)
	_, err := c.Ask("cpu", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("Ask to a silent child: %v", err)
	}
	if _, err := c.Ask("cpu", time.Minute); !errors.Is(err, ErrChildStopped) {
		t.Errorf("Ask after a timeout: %v, want ErrChildStopped", err)
	}
}

func TestChildExitedEarly(t *testing.T) {
	c := startTestChild(t, roleQuit, nil)
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not exit")
	}
	if _, err := c.Ask("cpu", 10*time.Second); !errors.Is(err, ErrChildStopped) {
		t.Errorf("Ask to an exited child: %v, want ErrChildStopped", err)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("Stop of an exited child: %v", err)
	}
}

func TestChildRefusesGrandchildren(t *testing.T) {
	t.Setenv(ChildEnv, roleEcho)
	if _, err := StartChild(ChildSpec{Role: roleEcho}); err == nil {
		t.Error("a child started a child")
	}
}

func TestRunChildUnknownRole(t *testing.T) {
	if err := RunChild(t.Context(), "nosuch", nil, ChildDeps{Control: &strings.Builder{}}); err == nil {
		t.Error("unknown role accepted")
	}
	if err := RunChild(t.Context(), RoleOverlayServer, nil, ChildDeps{Control: &strings.Builder{}}); err == nil {
		t.Error("overlay server child without Serve accepted")
	}
}

// TestServeControlCPU: the child's "cpu" is its ProcessCPU in nanoseconds.
func TestServeControlCPU(t *testing.T) {
	var out strings.Builder
	before := ProcessCPU()
	serveControl(strings.NewReader("cpu\nprofile\n"), &out, &profiler{}, nil)
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 2 || got[1] != "ok" {
		t.Fatalf("replies %q", got)
	}
	ns, err := strconv.ParseInt(got[0], 10, 64)
	if err != nil || time.Duration(ns) < before || time.Duration(ns) > ProcessCPU() {
		t.Errorf("cpu %q (%v) not between %v and now %v", got[0], err, before, ProcessCPU())
	}
}

// TestChildStopKillsGroup: what the child started goes with it, because it
// runs in the child's process group.
func TestChildStopKillsGroup(t *testing.T) {
	pids := make(chan int, 1)
	c := startTestChild(t, roleParent, func(line string) {
		if p, ok := strings.CutPrefix(line, "grandchild "); ok {
			n, _ := strconv.Atoi(p)
			pids <- n
		}
	})
	var gc int
	select {
	case gc = <-pids:
	case <-time.After(30 * time.Second):
		t.Fatal("no grandchild")
	}
	if _, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", gc)); err != nil {
		t.Skipf("cannot see the grandchild in /proc: %v", err)
	}
	if err := c.Stop(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", gc))
		if err != nil {
			break // gone
		}
		// A zombie waiting for its new parent to reap it is dead too.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still running after Stop: %s", gc, b)
		}
	}
}
