package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/microdrop/microdrop/cmd/microdrop/loadgen"
)

// runLoadgen parses a load generator's flags and hands them to package
// loadgen, which owns the measuring; BENCHMARKS.md quotes these flags, so
// they do not change.
func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("loadgen: say what to load: claims, durable, stampede, overlay, relay or fairness")
	}
	switch args[0] {
	case "claims":
		return runLoadgenClaims(ctx, args[1:], stdout, stderr)
	case "durable":
		return runLoadgenDurable(ctx, args[1:], stdout, stderr)
	case "stampede":
		return runLoadgenStampede(ctx, args[1:], stdout, stderr)
	case "overlay":
		return runLoadgenOverlay(ctx, args[1:], stdout, stderr)
	case "relay":
		return runLoadgenRelay(ctx, args[1:], stdout, stderr)
	case "fairness":
		return runLoadgenFairness(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("loadgen: unknown target %q (claims, durable, stampede, overlay, relay or fairness)", args[0])
}

// runLoadgenChild runs this process as the server a load generator started
// (loadgen.ChildEnv names its role).
func runLoadgenChild(ctx context.Context, role string, args []string, stdout, stderr io.Writer) error {
	return loadgen.RunChild(ctx, role, args, loadgen.ChildDeps{Serve: runServe, Stdin: os.Stdin, Stdout: stdout, Stderr: stderr})
}

// report prints rep as one JSON object or as text.
func report(stdout io.Writer, asJSON bool, rep interface{ WriteText(io.Writer) }) error {
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	rep.WriteText(stdout)
	return nil
}

func runLoadgenClaims(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen claims", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.ClaimsConfig
	fs.IntVar(&cfg.Claims, "claims", 100000, "claims to fire")
	fs.IntVar(&cfg.Users, "users", 100000, "distinct users")
	fs.IntVar(&cfg.Stock, "stock", 1000, "drop stock")
	fs.IntVar(&cfg.Concurrency, "concurrency", 256, "claims in flight at once")
	fs.StringVar(&cfg.Policy, "policy", "fcfs", "fcfs, bucketed or raffle")
	fs.IntVar(&cfg.Cap, "cap", 1, "per-user cap")
	fs.Int64Var(&cfg.PriceMinor, "price", 0, "price in minor units; with --pay every win is a hold")
	pay := fs.String("pay", "", "confirmation classes the drop takes (wallet, card; comma-separated): wins become holds")
	urls := fs.String("url", "", "fire at running servers (comma-separated, round robin) instead of in-process")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("MICRODROP_ADMIN_TOKEN"), "admin token for --url (or MICRODROP_ADMIN_TOKEN)")
	fs.StringVar(&cfg.Data, "data", "", "data dir for the in-process ledger (default: a temporary dir, removed after)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the burst to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *urls != "" {
		cfg.URLs = strings.Split(*urls, ",")
	}
	if *pay != "" {
		cfg.Pay = strings.Split(*pay, ",")
	}
	rep, err := loadgen.Claims(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, rep)
}

func runLoadgenDurable(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen durable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadgen.DurableConfig{Stderr: stderr}
	fs.IntVar(&cfg.Seconds, "seconds", 10, "wrk's duration per microdrop run")
	fs.IntVar(&cfg.Connections, "connections", 64, "connections, for wrk and redis-benchmark alike")
	fs.IntVar(&cfg.Threads, "threads", 2, "wrk threads")
	fs.IntVar(&cfg.Runs, "runs", 1, "rounds, each Redis then every server binary in turn")
	fs.IntVar(&cfg.RedisRequests, "redis-requests", 500000, "redis-benchmark requests per run")
	fs.IntVar(&cfg.Stock, "stock", 1000000, "the drop's stock (enough that every claim wins)")
	servers := fs.String("servers", "", "microdrop binaries to serve claims, comma-separated, in turn (default: this one), e.g. a build before a change and after it")
	fs.StringVar(&cfg.CPUProfile, "server-cpuprofile", "", "path prefix: write each microdrop server's CPU profile to PREFIX-RUN-N.pprof")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *servers != "" {
		cfg.Servers = strings.Split(*servers, ",")
	}
	rep, err := loadgen.Durable(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, rep)
}

func runLoadgenStampede(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen stampede", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadgen.StampedeConfig{Stderr: stderr}
	fs.IntVar(&cfg.Viewers, "viewers", 20000, "signed-in viewers")
	fs.DurationVar(&cfg.Window, "window", 5*time.Second, "every viewer reaches the claim page within this of the drop opening")
	fs.IntVar(&cfg.Stock, "stock", 20000, "the drop's stock")
	fs.IntVar(&cfg.PerChild, "per-child", 5000, "viewers per client process (each viewer holds a connection)")
	fs.IntVar(&cfg.SignInParallel, "signin-parallel", 32, "sign-ins at once before the stampede")
	fs.StringVar(&cfg.Server, "server", "", "microdrop binary to serve (default: this one)")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "bound on the stampede from the open")
	fs.StringVar(&cfg.CPUProfile, "server-cpuprofile", "", "write the server's CPU profile during the stampede to this file")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep, err := loadgen.Stampede(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, rep)
}

func runLoadgenOverlay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen overlay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadgen.OverlayConfig{Stderr: stderr}
	fs.IntVar(&cfg.Subscribers, "subscribers", 1000, "WebSocket overlay clients to connect")
	fs.IntVar(&cfg.ClientProcs, "client-procs", -1, "processes the clients are spread over (-1: one per 9,000 clients, at least 2 from 2,000; 0: in this process)")
	asJSON := fs.Bool("json", false, "print one JSON summary")
	fs.StringVar(&cfg.URL, "url", "", "a running microdrop (http://host:port); empty starts a server child on loopback")
	fs.StringVar(&cfg.Channel, "channel", "loadgen", "channel to watch and open the drop in (with --url)")
	fs.StringVar(&cfg.Key, "key", "", "the channel's overlay key (with --url)")
	fs.StringVar(&cfg.Token, "token", "", "admin token (with --url; also MICRODROP_ADMIN_TOKEN)")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Second, "how long to wait for every client to receive the open")
	fs.IntVar(&cfg.DialParallel, "dial-parallel", 128, "connections dialled at once (shared out among the client processes)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the clients (this process) during the fan-out to this file")
	fs.StringVar(&cfg.ServerCPUProfile, "server-cpuprofile", "", "write a CPU profile of the server child during the fan-out to this file")
	fs.IntVar(&cfg.ServerProcs, "server-procs", 0, "GOMAXPROCS of the server child (0: the Go default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.URL != "" && cfg.Token == "" {
		cfg.Token = os.Getenv("MICRODROP_ADMIN_TOKEN")
	}
	res, err := loadgen.Overlay(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, res)
}

func runLoadgenRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadgen.RelayConfig{Stderr: stderr}
	fs.IntVar(&cfg.Publishers, "publishers", 4, "streams published over RTSP/TCP")
	fs.IntVar(&cfg.Readers, "readers", 1, "RTSP readers per stream")
	fs.StringVar(&cfg.Bitrate, "bitrate", "6M", "video bitrate per stream (k/M suffixes)")
	fs.Float64Var(&cfg.Seconds, "seconds", 10, "how long to publish")
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.StringVar(&cfg.Server, "server", "child", "where the relay runs: child (a child process, CPU measured apart), inproc, or external (a running RTSP server: --addr, --pid)")
	fs.StringVar(&cfg.Addr, "addr", "", "with --server external: its RTSP host:port")
	fs.IntVar(&cfg.PID, "pid", 0, "with --server external: its process id (CPU and memory from /proc)")
	fs.BoolVar(&cfg.Highlights, "highlights", false, "run highlight capture in the relay child, as serve does")
	fs.IntVar(&cfg.Bound, "bound", 0, "with --highlights: how many of the streams are bound to a channel (the others to none)")
	fs.IntVar(&cfg.BufferSeconds, "buffer-seconds", 0, "with --highlights: highlights.buffer_seconds (0: 120)")
	fs.IntVar(&cfg.BufferMB, "buffer-mb", 0, "with --highlights: highlights.buffer_mb (0: 256)")
	fs.IntVar(&cfg.BufferMBTotal, "buffer-mb-total", 0, "with --highlights: highlights.buffer_mb_total (0: 512)")
	fs.BoolVar(&cfg.Stagger, "stagger", false, "spread the publishers' frames over the frame interval instead of sending every stream's frame at the same instant")
	fs.IntVar(&cfg.ClientGOGC, "client-gogc", 0, "GOGC of this process (the clients; with --server inproc also the relay); 0 leaves the Go default or $GOGC")
	fs.IntVar(&cfg.ServerGOGC, "server-gogc", 0, "GOGC of the relay child; 0 leaves the Go default or $GOGC")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of this process (the clients; with --server inproc also the relay) over the publishing window")
	fs.StringVar(&cfg.ServerCPUProfile, "server-cpuprofile", "", "write a CPU profile of the relay child over the publishing window")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "write an allocation profile of this process when the publishing window ends")
	fs.StringVar(&cfg.ServerMemProfile, "server-memprofile", "", "write an allocation profile of the relay child when the publishing window ends")
	fs.StringVar(&cfg.Trace, "trace", "", "write an execution trace of this process over the first second of the publishing window")
	fs.StringVar(&cfg.ServerTrace, "server-trace", "", "write an execution trace of the relay child over the first second of the publishing window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep, err := loadgen.Relay(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, rep)
}

func runLoadgenFairness(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("microdrop loadgen fairness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.FairnessConfig
	fs.IntVar(&cfg.Viewers, "viewers", 600, "simulated viewers")
	fs.IntVar(&cfg.Stock, "stock", 100, "drop stock")
	fs.IntVar(&cfg.Cap, "cap", 1, "per-viewer cap")
	fs.StringVar(&cfg.Preset, "preset", "twitch", `stream delays: "twitch" (normal latency, 1s-6s) or "youtube" (normal latency, 2s-30s)`)
	delay := fs.String("delay", "", "stream delay range MIN-MAX (e.g. 1s-6s), uniform; overrides --preset")
	reaction := fs.String("reaction", "200ms-800ms", "reaction time range MIN-MAX after the drop appears on a viewer's screen")
	policies := fs.String("policy", strings.Join(loadgen.DefaultPolicies(), ","), "policies to compare, comma-separated (passed to the server as they are)")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "rounds, each a fresh crowd; the win rates add up over all")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the crowd's delays and reaction times")
	fs.DurationVar(&cfg.Duration, "duration", 0, "the drop's window (0: the latest arrival plus 2s)")
	grace := fs.String("grace", "", "the drop's grace (empty: the server's default)")
	fs.DurationVar(&cfg.BucketWidth, "bucket-width", 0, "the drop's bucket width (0: the server's default)")
	urls := fs.String("url", "", "claim at a running server through its admin bridge instead of in-process")
	fs.StringVar(&cfg.AdminToken, "admin-token", os.Getenv("MICRODROP_ADMIN_TOKEN"), "admin token for --url (or MICRODROP_ADMIN_TOKEN)")
	fs.StringVar(&cfg.Data, "data", "", "data dir for the in-process ledger (default: a temporary dir, removed after)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if *delay != "" {
		if cfg.Delay, err = loadgen.ParseDelayRange(*delay); err != nil {
			return fmt.Errorf("--delay: %w", err)
		}
		cfg.Preset = ""
	} else if d, ok := loadgen.DelayPreset(cfg.Preset); ok {
		cfg.Delay = d
	} else {
		return fmt.Errorf("--preset must be twitch or youtube, not %q", cfg.Preset)
	}
	if cfg.Reaction, err = loadgen.ParseDelayRange(*reaction); err != nil {
		return fmt.Errorf("--reaction: %w", err)
	}
	for _, p := range strings.Split(*policies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Policies = append(cfg.Policies, p)
		}
	}
	if *grace != "" {
		g, err := time.ParseDuration(*grace)
		if err != nil {
			return fmt.Errorf("--grace: %w", err)
		}
		cfg.Grace = &g
	}
	if *urls != "" {
		cfg.URLs = strings.Split(*urls, ",")
	}
	rep, err := loadgen.Fairness(ctx, cfg)
	if err != nil {
		return err
	}
	return report(stdout, *asJSON, rep)
}
