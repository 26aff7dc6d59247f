// Package loadgen holds microdrop's load generators: claims (in-process or
// over HTTP), overlay fan-out, the media relay and the fairness simulation.
// `microdrop loadgen` parses flags and calls Claims, Overlay, Relay or
// Fairness; BENCHMARKS.md records what they print.
//
// Every figure is computed one way: latencies go through Quantile (nearest
// rank) and CPU time through ProcessCPU (getrusage of the process that
// spent it; a child reports its own over the control pipe), so rows
// measured by different modes compare.
//
// A server under test that must be measured apart from the clients runs as
// a child: this binary re-run with ChildEnv naming its role (see Child and
// RunChild). The command's main must hand such a process to RunChild before
// anything else.
//
// This package must never be imported by anything but cmd/microdrop, and
// must never change what it measures to make a figure look better: the
// claims mode checks its invariants against the ledger, not its own
// counters.
package loadgen
