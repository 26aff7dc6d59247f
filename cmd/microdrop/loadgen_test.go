package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/microdrop/microdrop/cmd/microdrop/loadgen"
)

// TestMain lets this test binary stand in for microdrop as the server child
// a load generator starts by re-running its own binary.
func TestMain(m *testing.M) {
	if role := os.Getenv(loadgen.ChildEnv); role != "" {
		if err := runLoadgenChild(context.Background(), role, os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLoadgenOverlay runs the overlay fan-out against `serve` in a child
// (this test binary re-run) and checks every client got the open.
func TestLoadgenOverlay(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"loadgen", "overlay", "--subscribers", "20", "--json"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var res loadgen.OverlayLoadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Connected != 20 || res.Missed != 0 {
		t.Errorf("connected %d, missed %d of 20", res.Connected, res.Missed)
	}
	if res.ServerCPUMS < 0 || res.P99MS < res.P50MS || res.MaxMS < res.P99MS {
		t.Errorf("server cpu %v ms, p50 %v, p99 %v, max %v", res.ServerCPUMS, res.P50MS, res.P99MS, res.MaxMS)
	}
}

// TestLoadgenStampede signs viewers in through the test OpenID provider and
// runs a small stampede against `serve` in a child: every viewer loads the
// page and claims, the ledger holds every acknowledged win, the overlay and
// dashboard were live.
func TestLoadgenStampede(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"loadgen", "stampede", "--viewers", "30", "--per-child", "12", "--stock", "20",
		"--window", "500ms", "--timeout", "30s", "--json"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep loadgen.StampedeReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if rep.Children != 3 || rep.Won != 20 || rep.SoldOut != 10 || rep.Errors != 0 {
		t.Errorf("%d client processes, won %d, sold out %d, errors %d (%s); want 3, 20, 10, 0", rep.Children, rep.Won, rep.SoldOut, rep.Errors, rep.FirstError)
	}
	if rep.Oversold || rep.OverCapUsers != 0 || rep.AckedNotInLedger != 0 || !rep.AuditMatch {
		t.Errorf("ledger: oversold %v, over cap %d, acked not in ledger %d, audit match %v", rep.Oversold, rep.OverCapUsers, rep.AckedNotInLedger, rep.AuditMatch)
	}
	if rep.OverlayFrames == 0 || rep.OverlayOpenMS < -1000 || rep.DashboardPolls == 0 || rep.DashboardErrors != 0 {
		t.Errorf("overlay %d frames (open at %v ms), dashboard %d polls, %d errors", rep.OverlayFrames, rep.OverlayOpenMS, rep.DashboardPolls, rep.DashboardErrors)
	}
	// Each viewer: page, its assets, the claim; each winner: the QR too.
	if rep.Requests < 30*3+20 || rep.PageP99MS < rep.PageP50MS || rep.ClaimMaxMS < rep.ClaimP99MS {
		t.Errorf("%d requests, page p50 %v p99 %v, claim p99 %v max %v", rep.Requests, rep.PageP50MS, rep.PageP99MS, rep.ClaimP99MS, rep.ClaimMaxMS)
	}
}

// TestLoadgenDurable runs the durable comparison for a second each: wrk
// against `serve` in a child, redis-benchmark against a redis-server of its
// own, both with every claim a win and the stores checked after.
func TestLoadgenDurable(t *testing.T) {
	for _, tool := range []string{"wrk", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI: %v", tool, err)
			}
			t.Skipf("%s not installed (apt-get install wrk redis-server redis-tools)", tool)
		}
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"loadgen", "durable", "--seconds", "1", "--connections", "8", "--redis-requests", "2000", "--json"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep loadgen.DurableReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("rows %+v, want redis and microdrop", rep.Rows)
	}
	for _, r := range rep.Rows {
		if r.Requests == 0 || r.PerSec <= 0 || r.Errors != 0 || r.Oversold || !r.Consistent || r.AckedWins == 0 || r.StoredWins < r.AckedWins {
			t.Errorf("%+v", r)
		}
	}
	if r, ok := rep.Ratio[rep.Rows[1].Target]; !ok || r <= 0 {
		t.Errorf("ratio %v", rep.Ratio)
	}
}

// TestLoadgenOverlayClientProcesses spreads the clients over two client
// children, each from a loopback address of its own, and measures from
// the API call: every client got the open, and no receipt comes before
// the call or the event.
func TestLoadgenOverlayClientProcesses(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"loadgen", "overlay", "--subscribers", "30", "--client-procs", "2", "--json"}, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var res loadgen.OverlayLoadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.ClientProcs != 2 || res.Connected != 30 || res.Missed != 0 {
		t.Fatalf("client processes %d, connected %d, missed %d of 30", res.ClientProcs, res.Connected, res.Missed)
	}
	if res.APIMinMS <= 0 || res.APIMinMS < res.MinMS || res.APIP99MS < res.APIP50MS || res.APIMaxMS < res.APIP99MS || res.APIToEventMS < 0 {
		t.Errorf("API -> client min %v p50 %v p99 %v max %v, event -> client min %v, call -> event %v",
			res.APIMinMS, res.APIP50MS, res.APIP99MS, res.APIMaxMS, res.MinMS, res.APIToEventMS)
	}
	if res.ClientCPUMS <= 0 || res.ServerCPUMS < 0 {
		t.Errorf("client CPU %v ms, server CPU %v ms", res.ClientCPUMS, res.ServerCPUMS)
	}
}

func TestLoadgenBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"durable", "--seconds", "0"},
		{"durable", "--connections", "-1"},
		{"durable", "--threads", "100", "--connections", "8"},
		{"durable", "--stock", "2000000"},
		{"stampede", "--viewers", "0"},
		{"stampede", "--window", "0s"},
		{"stampede", "--window", "10s", "--timeout", "5s"},
		{"stampede", "--stock", "0"},
		{"relay", "--bitrate", "fast"},
		{"relay", "--server", "remote"},
		{"claims", "--policy", "lottery"},
		{"claims", "--url", "http://127.0.0.1:1", "--admin-token", ""},
		{"overlay", "--subscribers", "0"},
		{"overlay", "--subscribers", "20000", "--client-procs", "1"},
		{"overlay", "--client-procs", "-2"},
		{"relay", "--highlights", "--server", "inproc"},
		{"relay", "--highlights", "--bound", "5", "--publishers", "4"},
		{"relay", "--server", "external", "--addr", "127.0.0.1:1"},
		{"fairness", "--preset", "vimeo"},
		{"fairness", "--delay", "6s-1s"},
		{"fairness", "--reaction", "soon"},
		{"fairness", "--url", "http://127.0.0.1:1", "--admin-token", ""},
		{"nosuch"},
	} {
		var out, errb bytes.Buffer
		if err := runLoadgen(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
