package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// TestLoadgenRelayJSON runs a small relay load against a relay child and
// checks the report: every key is there, every packet sent reached each
// reader, and the relay's CPU is measured apart from the clients'.
func TestLoadgenRelayJSON(t *testing.T) {
	rep := runRelayLoad(t, "--publishers", "2", "--readers", "2", "--bitrate", "1M", "--seconds", "1", "--json")
	for _, k := range []string{"streams", "readers", "added_latency_p99_ms", "cpu_percent", "server_cpu_percent", "client_cpu_percent",
		"dropped_packets", "relay_path_latency_p99_ms", "publisher_queue_p99_ms", "reader_queue_p99_ms", "in_relay_latency_p99_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q: %v", k, rep)
		}
	}
	if rep["streams"].(float64) != 2 || rep["readers"].(float64) != 4 || rep["server"] != "child" {
		t.Errorf("streams/readers/server = %v/%v/%v", rep["streams"], rep["readers"], rep["server"])
	}
	sent, got := rep["packets_sent"].(float64), rep["packets_received"].(float64)
	if sent == 0 || got+rep["dropped_packets"].(float64) < 2*sent {
		t.Errorf("sent %v, received %v by 2 readers each", sent, got)
	}
	srv, cli, all := rep["server_cpu_percent"].(float64), rep["client_cpu_percent"].(float64), rep["cpu_percent"].(float64)
	if srv < 0 || cli < 0 || all < srv || all < cli {
		t.Errorf("cpu: server %v, clients %v, total %v", srv, cli, all)
	}
	if p50, p99 := rep["added_latency_p50_ms"].(float64), rep["added_latency_p99_ms"].(float64); p50 <= 0 || p99 < p50 {
		t.Errorf("latency p50 %v, p99 %v", p50, p99)
	}
}

// TestLoadgenRelayInProc: with the relay in this process its CPU cannot be
// told apart, and the report says so.
func TestLoadgenRelayInProc(t *testing.T) {
	rep := runRelayLoad(t, "--publishers", "1", "--readers", "1", "--bitrate", "1M", "--seconds", "0.5", "--server", "inproc", "--json")
	if rep["server"] != "inproc" || rep["server_cpu_percent"].(float64) != -1 || rep["cpu_percent"].(float64) < 0 {
		t.Errorf("in-process report: %v", rep)
	}
	if rep["packets_received"].(float64) != rep["packets_sent"].(float64) {
		t.Errorf("sent %v, received %v", rep["packets_sent"], rep["packets_received"])
	}
}

func runRelayLoad(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errb bytes.Buffer
	if err := runLoadgenRelay(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return rep
}

func TestLoadgenRelayBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--bitrate", "fast"}, {"--server", "remote"}} {
		var out, errb bytes.Buffer
		if err := runLoadgenRelay(context.Background(), args, &out, &errb); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestMain lets this test binary stand in for microdrop as the relay child
// that `loadgen relay` starts by re-executing itself.
func TestMain(m *testing.M) {
	if os.Getenv(relayChildEnv) == "1" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
