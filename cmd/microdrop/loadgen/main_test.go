package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Roles only this test binary plays, to put the child helper through what
// a real server child might do.
const (
	roleEcho     = "test-echo"     // answers "echo X" with X
	roleSilent   = "test-silent"   // reads commands, never answers
	roleStubborn = "test-stubborn" // ignores SIGINT and the end of stdin
	roleQuit     = "test-quit"     // exits at once
	roleParent   = "test-parent"   // starts a grandchild, says its pid, ignores SIGINT
)

// TestMain lets this test binary stand in for microdrop as the children the
// load generators start by re-running their own binary.
func TestMain(m *testing.M) {
	if role := os.Getenv(ChildEnv); role != "" {
		if err := runTestChild(role); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runTestChild(role string) error {
	ctl := os.NewFile(3, "control")
	switch role {
	case roleEcho:
		// As microdrop's main does, SIGINT does not end the process. It is
		// caught until the process exits: a handler removed on the way out
		// would let a SIGINT that lands after stdin's end kill it.
		signal.Notify(make(chan os.Signal, 1), os.Interrupt)
		fmt.Fprintln(os.Stderr, "echo child ready")
		serveControl(os.Stdin, ctl, &profiler{}, func(cmd, arg string) (string, error) {
			if cmd == "echo" {
				return arg, nil
			}
			return "", fmt.Errorf("unknown command %q", cmd)
		})
		return nil
	case roleSilent:
		_, _ = io.Copy(io.Discard, os.Stdin)
		return nil
	case roleStubborn:
		signal.Ignore(syscall.SIGINT)
		fmt.Fprintln(os.Stderr, "ignoring SIGINT")
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Hour)
		return nil
	case roleQuit:
		return nil
	case roleParent:
		signal.Ignore(syscall.SIGINT)
		gc := exec.Command("sleep", "600")
		if err := gc.Start(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "grandchild %d\n", gc.Process.Pid)
		_ = gc.Wait()
		return nil
	}
	return RunChild(context.Background(), role, os.Args[1:], ChildDeps{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Control: ctl})
}

// lines collects a child's stderr lines for a test.
type lines struct {
	ch chan string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) add(s string) {
	select {
	case l.ch <- s:
	default:
	}
}

func (l *lines) waitFor(t *testing.T, sub string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-l.ch:
			if strings.Contains(s, sub) {
				return
			}
		case <-timeout:
			t.Fatalf("child never said %q", sub)
		}
	}
}
