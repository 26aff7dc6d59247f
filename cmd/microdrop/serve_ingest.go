package main

import "context"

// startIngest wires the ingest component into serve. Until it lands, serve runs
// without it.
func (m *Main) startIngest(_ context.Context) error {
	m.Logger.Info("ingest is not built into this version yet", "component", "ingest")
	return nil
}
