package loadgen

import (
	"encoding/json"
	"testing"
)

// TestRelayJSON runs a small relay load against a relay child and checks
// the report: every key is there, every packet sent reached each reader,
// and the relay's CPU is measured apart from the clients'.
func TestRelayJSON(t *testing.T) {
	rep := runRelayLoad(t, RelayConfig{Publishers: 2, Readers: 2, Bitrate: "1M", Seconds: 1, Server: "child"})
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

// TestRelayInProc: with the relay in this process its CPU cannot be told
// apart, and the report says so.
func TestRelayInProc(t *testing.T) {
	rep := runRelayLoad(t, RelayConfig{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 0.5, Server: "inproc"})
	if rep["server"] != "inproc" || rep["server_cpu_percent"].(float64) != -1 || rep["cpu_percent"].(float64) < 0 {
		t.Errorf("in-process report: %v", rep)
	}
	if rep["packets_received"].(float64) != rep["packets_sent"].(float64) {
		t.Errorf("sent %v, received %v", rep["packets_sent"], rep["packets_received"])
	}
}

// TestRelayHighlights: with highlights on, the stream bound to a channel
// gets a buffer and the unbound one none, and the relay child's memory is
// reported.
func TestRelayHighlights(t *testing.T) {
	rep := runRelayLoad(t, RelayConfig{Publishers: 2, Readers: 1, Bitrate: "1M", Seconds: 1.5, Server: "child", Highlights: true, Bound: 1})
	if rep["highlights"] != true || rep["bound_streams"].(float64) != 1 || rep["buffered_streams"].(float64) != 1 || rep["buffered_mb"].(float64) <= 0 {
		t.Errorf("highlights report: %v", rep)
	}
	rss, peak, heap := rep["server_rss_mb"].(float64), rep["server_peak_rss_mb"].(float64), rep["server_heap_inuse_mb"].(float64)
	if rss <= 0 || peak < rss || heap <= 0 || heap > peak {
		t.Errorf("memory: resident %v MB, peak %v MB, heap %v MB", rss, peak, heap)
	}
}

func runRelayLoad(t *testing.T, cfg RelayConfig) map[string]any {
	t.Helper()
	rep, err := Relay(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRelayBadConfig(t *testing.T) {
	for _, cfg := range []RelayConfig{
		{Publishers: 1, Readers: 1, Bitrate: "fast", Seconds: 1, Server: "child"},
		{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "remote"},
		{Publishers: 0, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "child"},
		{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "inproc", Highlights: true},
		{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "child", Highlights: true, Bound: 2},
		{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "external", Addr: "127.0.0.1:1"},
		{Publishers: 1, Readers: 1, Bitrate: "1M", Seconds: 1, Server: "child", Highlights: true, BufferMB: -1},
	} {
		if _, err := Relay(t.Context(), cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
