// Package chat owns what viewers and moderators type: the message model every
// platform adapter produces, the command grammar (!drop, !claim, !stock,
// !clip, !mytoken), who may run which command, cooldowns and per-user rate
// limits, the Router that turns commands into calls on the claims service,
// and the Outbox that coalesces and paces replies under a platform's send
// limits.
//
// It must never import a platform adapter (chat/twitch, chat/local depend on
// it, not the reverse), never decide a claim itself (claims does), and never
// let internal error text reach chat: replies carry microdrop.ErrorMessage only.
// Malformed or unauthorised commands change nothing.
package chat
