package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
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
