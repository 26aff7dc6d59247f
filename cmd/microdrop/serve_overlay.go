package main

import "context"

// startOverlay wires the overlay component into serve. Until it lands, serve runs
// without it.
func (m *Main) startOverlay(_ context.Context) error {
	m.Logger.Info("overlay is not built into this version yet", "component", "overlay")
	return nil
}
