package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// TestLoadgenRelayJSON runs a small relay load and checks the report:
// every key is there and every packet sent reached each reader.
func TestLoadgenRelayJSON(t *testing.T) {
	var out, errb bytes.Buffer
	err := runLoadgenRelay(context.Background(), []string{"--publishers", "2", "--readers", "2", "--bitrate", "1M", "--seconds", "1", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"streams", "readers", "added_latency_p99_ms", "cpu_percent", "dropped_packets"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report lacks %q: %s", k, out.String())
		}
	}
	if rep["streams"].(float64) != 2 || rep["readers"].(float64) != 4 {
		t.Errorf("streams/readers = %v/%v", rep["streams"], rep["readers"])
	}
	sent, got := rep["packets_sent"].(float64), rep["packets_received"].(float64)
	if sent == 0 || got+rep["dropped_packets"].(float64) < 2*sent {
		t.Errorf("sent %v, received %v by 2 readers each", sent, got)
	}
}

func TestLoadgenRelayBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runLoadgenRelay(context.Background(), []string{"--bitrate", "fast"}, &out, &errb); err == nil {
		t.Fatal("bad bitrate accepted")
	}
}
