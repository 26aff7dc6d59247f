// Package overlay owns what the streamer and the viewers see in a browser:
// the OBS browser-source overlay (/overlay/{channel}) and the WebSocket hub
// that feeds it (/ws/overlay/{channel}), the admin dashboard (/dashboard),
// the claim page a drop's QR code leads to (/c/{id}) and the pickup desk
// (/redeem).
//
// The hub subscribes to the event Bus once, for opens, extensions,
// sell-outs, closes and claims, and fans events out per channel: a client
// gets a snapshot of the channel's state on connect, then the same frame
// as every other client of its channel. The bus never drops the first
// four for the hub; it may shed claims when the hub falls behind, and the
// hub then rebuilds every channel's state from claims and sends every
// client a fresh snapshot. Claim events are coalesced per channel (at
// most FrameRate frames a second); opens, sell-outs and closes go out at
// once. Every client has a bounded send buffer: one that falls behind is
// disconnected (the page reconnects and resyncs from a fresh snapshot) and
// never delays the others. Events carry what the overlay shows (the claim
// code for the QR, the stock after each win): the hub reads claims only
// for a snapshot, never per event.
//
// hub.go holds the channels' state and the coalescing; conn.go the
// transport. A frame is encoded once per channel and written to the
// clients' sockets by a few goroutines (one per CPU), each write a
// non-blocking write(2): a fan-out to ten thousand overlays wakes no
// goroutine per client. Only a client whose socket is full gets a
// goroutine, which waits for it (at most HubOptions.WriteTimeout) while
// later frames queue in its buffer.
//
// That fast path was kept, rather than every frame going through
// gorilla/websocket's writer, because a writer goroutine per connection
// measured 30 % or more server CPU per delivery in `loadgen overlay`
// (a wake-up, a timer and the poller for each client), and fan-out to ten
// thousand overlays is CPU-bound on this hardware. It is made exclusive
// instead: each frame is written under the connection's frame lock, and
// gorilla, which still writes its own control frames (the close at
// shutdown, close replies, the close after a protocol error), is handed a
// connection whose writes take the same lock, so two frames never
// interleave on a socket and nothing follows a close frame.
// TestHubFramesStayWholeUnderCloseAndStop checks it byte by byte.
//
// The package reads claims (through claims.Service) and asks it to open,
// close, extend, claim and redeem; it never writes the ledger itself, never
// decides a claim, and never sends the overlay key or the admin token to a
// page that did not present it.
package overlay
