package main

import "context"

// startHighlights wires the highlights component into serve. Until it lands, serve runs
// without it.
func (m *Main) startHighlights(_ context.Context) error {
	m.Logger.Info("highlights is not built into this version yet", "component", "highlights")
	return nil
}
