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

func TestLoadgenBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"relay", "--bitrate", "fast"},
		{"relay", "--server", "remote"},
		{"claims", "--policy", "lottery"},
		{"claims", "--url", "http://127.0.0.1:1", "--admin-token", ""},
		{"overlay", "--subscribers", "0"},
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
