// Package twitch connects the chat router to Twitch: it reads chat through
// an EventSub WebSocket (channel.chat.message), answers through helix Send
// Chat Message and Send Whisper under Twitch's send limits, looks up
// account ages for progressive caps (Get Users), marks drop moments
// with stream markers, and makes Twitch clips of highlights for capture
// and of every !clip while the channel is live (Create Clip, Get Clips).
// It validates the token hourly and reports its Health: a revoked chat
// subscription degrades it with the reason and the fix, and is repaired
// by resubscribing where the reason allows.
//
// It owns the Twitch connection and nothing else: it must never decide a
// claim (chat and claims do), never let one failing helix call block a
// drop, and never act twice on one message id.
package twitch
