package twitchtest

import "encoding/json"

// The EventSub WebSocket message envelope, field for field from
// https://dev.twitch.tv/docs/eventsub/websocket-reference/:
//
//	{"metadata": {"message_id": "96a3f3b5-5dec-4eed-908e-e11ee657416c",
//	              "message_type": "session_welcome",
//	              "message_timestamp": "2023-07-19T14:56:51.634234626Z"},
//	 "payload": {"session": {"id": "AQoQILE98gtqShGmLD7AM6yJThAB",
//	             "status": "connected", "connected_at": "2023-07-19T14:56:51.616329898Z",
//	             "keepalive_timeout_seconds": 10, "reconnect_url": null,
//	             "recovery_url": null}}}
//
// Notification and revocation metadata add "subscription_type" and
// "subscription_version"; a keepalive's payload is {}.
type Envelope struct {
	Metadata Metadata        `json:"metadata"`
	Payload  json.RawMessage `json:"payload"`
}

// Metadata identifies a message.
type Metadata struct {
	MessageID           string `json:"message_id"`
	MessageType         string `json:"message_type"`
	MessageTimestamp    string `json:"message_timestamp"`
	SubscriptionType    string `json:"subscription_type,omitempty"`
	SubscriptionVersion string `json:"subscription_version,omitempty"`
}

// Session is payload.session of session_welcome and session_reconnect.
// keepalive_timeout_seconds is null and reconnect_url set on reconnect.
type Session struct {
	ID                      string  `json:"id"`
	Status                  string  `json:"status"`
	ConnectedAt             string  `json:"connected_at"`
	KeepaliveTimeoutSeconds *int    `json:"keepalive_timeout_seconds"`
	ReconnectURL            *string `json:"reconnect_url"`
	RecoveryURL             *string `json:"recovery_url"`
}

// SessionPayload is the payload of session_welcome and session_reconnect.
type SessionPayload struct {
	Session Session `json:"session"`
}

// Subscription is an EventSub subscription as Create EventSub Subscription
// returns it and notifications carry it.
type Subscription struct {
	ID        string            `json:"id"`
	Status    string            `json:"status"`
	Type      string            `json:"type"`
	Version   string            `json:"version"`
	Cost      int               `json:"cost"`
	Condition map[string]string `json:"condition"`
	Transport Transport         `json:"transport"`
	CreatedAt string            `json:"created_at"`
}

// Transport of a WebSocket subscription.
type Transport struct {
	Method         string `json:"method"`
	SessionID      string `json:"session_id"`
	ConnectedAt    string `json:"connected_at,omitempty"`
	DisconnectedAt string `json:"disconnected_at,omitempty"`
}

// NotificationPayload is the payload of a notification.
type NotificationPayload struct {
	Subscription Subscription    `json:"subscription"`
	Event        json.RawMessage `json:"event"`
}

// RevocationPayload is the payload of a revocation: the subscription with
// its status set to the reason (authorization_revoked, user_removed,
// version_removed).
type RevocationPayload struct {
	Subscription Subscription `json:"subscription"`
}

// ChatMessageEvent is the channel.chat.message v1 event:
//
//	{"broadcaster_user_id": "1971641", "broadcaster_user_login": "streamer",
//	 "broadcaster_user_name": "streamer", "chatter_user_id": "4145994",
//	 "chatter_user_login": "viewer32", "chatter_user_name": "viewer32",
//	 "message_id": "cc106a89-1814-919d-454c-f4f2f970aae7",
//	 "message": {"text": "Hi chat", "fragments": [{"type": "text", "text": "Hi chat",
//	             "cheermote": null, "emote": null, "mention": null}]},
//	 "color": "#00FF7F",
//	 "badges": [{"set_id": "moderator", "id": "1", "info": ""},
//	            {"set_id": "subscriber", "id": "12", "info": "16"}],
//	 "message_type": "text", "cheer": null, "reply": null,
//	 "channel_points_custom_reward_id": null}
type ChatMessageEvent struct {
	BroadcasterUserID    string     `json:"broadcaster_user_id"`
	BroadcasterUserLogin string     `json:"broadcaster_user_login"`
	BroadcasterUserName  string     `json:"broadcaster_user_name"`
	ChatterUserID        string     `json:"chatter_user_id"`
	ChatterUserLogin     string     `json:"chatter_user_login"`
	ChatterUserName      string     `json:"chatter_user_name"`
	MessageID            string     `json:"message_id"`
	Message              ChatText   `json:"message"`
	Color                string     `json:"color"`
	Badges               []Badge    `json:"badges"`
	MessageType          string     `json:"message_type"`
	Cheer                *struct{}  `json:"cheer"`
	Reply                *ChatReply `json:"reply"`
	RewardID             *string    `json:"channel_points_custom_reward_id"`
	SourceBroadcasterID  *string    `json:"source_broadcaster_user_id"`
	SourceMessageID      *string    `json:"source_message_id"`
	SourceBadges         []Badge    `json:"source_badges"`
}

// ChatText is the message text with its fragments.
type ChatText struct {
	Text      string     `json:"text"`
	Fragments []Fragment `json:"fragments"`
}

// Fragment is one piece of a chat message.
type Fragment struct {
	Type      string    `json:"type"`
	Text      string    `json:"text"`
	Cheermote *struct{} `json:"cheermote"`
	Emote     *struct{} `json:"emote"`
	Mention   *struct{} `json:"mention"`
}

// Badge is one chat badge: set_id names it (broadcaster, moderator, vip,
// subscriber, founder, ...).
type Badge struct {
	SetID string `json:"set_id"`
	ID    string `json:"id"`
	Info  string `json:"info"`
}

// ChatReply is the reply metadata of a threaded message.
type ChatReply struct {
	ParentMessageID string `json:"parent_message_id"`
	ParentUserID    string `json:"parent_user_id"`
}
