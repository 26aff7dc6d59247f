// Package twitchtest is a stand-in for Twitch in tests: an EventSub
// WebSocket server and the few helix and OAuth endpoints microdrop calls,
// speaking the message shapes of Twitch's reference (EventSub WebSocket
// messages: session_welcome, session_keepalive, notification,
// session_reconnect, revocation; Create EventSub Subscription; Send Chat
// Message; Send Whisper; Get Users; Create Stream Marker; Create Clip and
// Get Clips; Validate and refresh tokens).
//
// It owns only test scaffolding: it must never be imported by non-test
// code, and it listens on 127.0.0.1 only.
package twitchtest
