package main

import "context"

// startChat wires the chat component into serve. Until it lands, serve runs
// without it.
func (m *Main) startChat(_ context.Context) error {
	m.Logger.Info("chat is not built into this version yet", "component", "chat")
	return nil
}
