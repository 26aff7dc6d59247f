// Package overlay owns what the streamer and the viewers see in a browser:
// the OBS browser-source overlay (/overlay/{channel}) and the WebSocket hub
// that feeds it (/ws/overlay/{channel}), the admin dashboard (/dashboard),
// the claim page a drop's QR code leads to (/c/{id}) and the pickup desk
// (/redeem).
//
// The hub subscribes to the event Bus once and fans events out per channel:
// a client gets a snapshot of the channel's state on connect, then the same
// prepared frame as every other client of its channel. Claim events are
// coalesced per channel (at most FrameRate frames a second); opens, sell-outs
// and closes go out at once. Every client has a bounded send buffer: one that
// falls behind is disconnected (the page reconnects and resyncs from a fresh
// snapshot) and never delays the others.
//
// A frame is encoded once per channel and written to the clients' sockets
// by a few goroutines (one per CPU), each write a non-blocking write(2): a
// fan-out to ten thousand overlays wakes no goroutine per client. Only a
// client whose socket is full gets a goroutine, which waits for it (at most
// HubOptions.WriteTimeout) while later frames queue in its buffer.
//
// The package reads claims (through claims.Service) and asks it to open,
// close, extend, claim and redeem; it never writes the ledger itself, never
// decides a claim, and never sends the overlay key or the admin token to a
// page that did not present it.
package overlay
