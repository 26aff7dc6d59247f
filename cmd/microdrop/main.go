// Command microdrop runs the microdrop service and its tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/microdrop/microdrop/cmd/microdrop/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := run
	if role := os.Getenv(loadgen.ChildEnv); role != "" {
		// A load generator re-ran this binary as the server it measures.
		run = func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runLoadgenChild(ctx, role, args, stdout, stderr)
		}
	}
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "microdrop:", err)
		}
		os.Exit(1)
	}
}

const usage = `microdrop turns stream moments into fair limited releases.

Usage:
  microdrop serve [flags]          run the service (overlay, chat, claims, media)
  microdrop loadgen claims|overlay|relay|fairness [flags]
                                   load generators; --json for one JSON summary
  microdrop audit [--url U] DROP   recompute a drop's winners and compare
  microdrop audit --money [--url U] prove the books balance and every hold matches its postings
  microdrop receipt verify --keys URL|FILE RECEIPT
                                   verify a purchase receipt offline against published keys
  microdrop cue encode|detect      the audio cue codec
  microdrop payouts run [--config F] [--data DIR]
                                   pay creators what is due, resuming an unfinished run
  microdrop export --session S --out bundle.zip
                                   export a post-stream highlight bundle
  microdrop verify [--key FILE] bundle.zip|DIR
                                   check a bundle's hashes and signatures offline

Run "microdrop COMMAND --help" for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "loadgen":
		return runLoadgen(ctx, args[1:], stdout, stderr)
	case "audit":
		return runAudit(ctx, args[1:], stdout, stderr)
	case "cue":
		return runCue(ctx, args[1:], stdout, stderr)
	case "receipt":
		return runReceipt(ctx, args[1:], stdout, stderr)
	case "export":
		return runExport(ctx, args[1:], stdout, stderr)
	case "payouts":
		return runPayoutsCmd(ctx, args[1:], stdout, stderr)
	case "verify":
		return runVerify(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	m := NewMain(stdout, stderr)
	if err := m.ParseFlags(args, os.LookupEnv); err != nil {
		return err
	}
	if err := m.Run(ctx); err != nil {
		_ = m.Close()
		return err
	}
	<-ctx.Done()
	m.Logger.Info("shutting down")
	return m.Close()
}
