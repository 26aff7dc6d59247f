package chat

import (
	"strings"
	"time"
)

// Role is how much a chatter may do in a channel, ordered: each role may do
// everything the roles below it may.
type Role int

const (
	Viewer Role = iota
	Subscriber
	VIP
	Moderator
	Broadcaster
)

var roleNames = [...]string{"viewer", "subscriber", "vip", "moderator", "broadcaster"}

func (r Role) String() string {
	if r < Viewer || r > Broadcaster {
		return "viewer"
	}
	return roleNames[r]
}

// ParseRole reads a role name ("mod" and "sub" are accepted too).
func ParseRole(s string) (Role, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "viewer", "everyone", "":
		return Viewer, true
	case "subscriber", "sub", "founder":
		return Subscriber, true
	case "vip":
		return VIP, true
	case "moderator", "mod":
		return Moderator, true
	case "broadcaster", "streamer":
		return Broadcaster, true
	}
	return Viewer, false
}

// RoleFromBadges returns the highest role the platform's badge set ids
// grant (Twitch: broadcaster, moderator, vip, subscriber, founder).
func RoleFromBadges(setIDs ...string) Role {
	r := Viewer
	for _, id := range setIDs {
		var b Role
		switch id {
		case "broadcaster":
			b = Broadcaster
		case "moderator", "lead_moderator":
			b = Moderator
		case "vip":
			b = VIP
		case "subscriber", "founder":
			b = Subscriber
		default:
			continue
		}
		if b > r {
			r = b
		}
	}
	return r
}

// Message is one chat line as a platform adapter hands it over.
type Message struct {
	Platform    string    // "twitch", "local"
	Channel     string    // channel login
	UserID      string    // platform user id: what claims are keyed by
	Login       string    // lowercase login
	DisplayName string    // as shown in chat
	Role        Role      // highest role from badges (or granted in local chat)
	Text        string    // what was typed
	ID          string    // platform message id (replies thread to it)
	At          time.Time // when the platform saw it; zero means now
	// AccountCreated is when the chatter's account was made, when the
	// platform told us (Twitch Get Users); zero when unknown.
	AccountCreated time.Time
	// Whisper says whether the platform can whisper this chatter now; the
	// zero value is that it can.
	Whisper WhisperState
	// ReserveWhisper, when set, is called for a winner before the bot
	// promises a whisper: it takes the chatter's place under the
	// platform's recipient cap (Twitch: 40 new a day) and says whether a
	// whisper can go, so the public line is right the first time.
	ReserveWhisper func() WhisperState
}

// whisperState is whether a whisper to m's chatter can be promised,
// reserving it where the platform counts recipients.
func (m Message) whisperState() WhisperState {
	if m.Whisper == WhisperAvailable && m.ReserveWhisper != nil {
		return m.ReserveWhisper()
	}
	return m.Whisper
}

// WhisperState is whether a pickup code can reach a chatter by whisper.
type WhisperState int

const (
	// WhisperAvailable: a whisper can be sent.
	WhisperAvailable WhisperState = iota
	// WhisperOff: the platform or the bot's token cannot whisper at all.
	WhisperOff
	// WhisperCapped: the platform's cap on new recipients is reached
	// (Twitch: 40 a day) and this chatter is not one of them.
	WhisperCapped
)

// Name is how replies mention the chatter.
func (m Message) Name() string {
	if m.DisplayName != "" {
		return m.DisplayName
	}
	return m.Login
}
