// Package twitchtest is a stand-in for Twitch in tests: an EventSub
// WebSocket server and the few helix and OAuth endpoints microdrop calls,
// speaking the message shapes of Twitch's reference (EventSub WebSocket
// messages: session_welcome, session_keepalive, notification,
// session_reconnect, revocation; Create EventSub Subscription; Send Chat
// Message; Send Whisper; Get Users; Create Stream Marker; Create Clip and
// Get Clips; Validate and refresh tokens).
//
// It is as strict as Twitch's reference wherever it answers, so a client
// that passes against it passes against Twitch: JSON bodies are read only
// when sent as application/json and their required fields must be there
// (Create Stream Marker takes user_id from the body, never the query);
// scopes are checked; Send Chat Message is counted at arrival over a
// sliding window (20 per 30 s, 100 for the broadcaster or a moderator)
// and refused with 429 over it, while the Ratelimit-* headers report only
// the helix points bucket (800 per minute), as Twitch's do; Send
// Whisper keeps 3 per second, 100 per minute and 40 new recipients a day;
// authorization_revoked also voids the token.
//
// It owns only test scaffolding: it must never be imported by non-test
// code, and it listens on 127.0.0.1 only.
package twitchtest
