package loadgen

import (
	"os/signal"
	"syscall"
)

func ignoreInterrupt() { signal.Ignore(syscall.SIGINT) }
