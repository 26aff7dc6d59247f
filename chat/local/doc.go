// Package local is microdrop's built-in chat: a web page at /chat with a
// WebSocket (/ws/chat) and a JSON endpoint (POST /api/chat) for scripts
// and load tests, so drops work with no Twitch account at all.
//
// It owns the local chat room: who is connected, what roles the admin has
// granted, and delivering bot replies (to everyone) and whispers (to the
// one user). It must never trust a client's claimed role without the
// admin credential, and never decide anything itself: every line goes
// through the chat Router.
package local
