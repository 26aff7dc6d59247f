package claims

import (
	"errors"

	"github.com/microdrop/microdrop"
)

// Rejection reasons: why a claim was turned down. Each is counted.
const (
	ReasonSoldOut     = "sold_out"
	ReasonLostDraw    = "lost_draw"
	ReasonWaitlisted  = "waitlisted" // priced drops: next in line if a winner does not pay
	ReasonDuplicate   = "duplicate"
	ReasonOverCap     = "over_cap"
	ReasonNotEligible = "not_eligible"
	ReasonRateLimited = "rate_limited"
	ReasonNotOpen     = "not_open"
	ReasonClosed      = "closed"
	ReasonWrongCode   = "wrong_code"
	ReasonInvalid     = "invalid"
	ReasonUnavailable = microdrop.ReasonUnavailable
)

// Sentinel errors, wrapped in *microdrop.Error so errors.Is works end to end.
var (
	ErrTokenMalformed = errors.New("pickup token malformed")
	ErrTokenForged    = errors.New("pickup token signature invalid")
	ErrTokenExpired   = errors.New("pickup token expired")
	ErrTokenUsed      = errors.New("pickup token already redeemed")
	ErrTokenUnknown   = errors.New("pickup token unknown")
	ErrDropNotFound   = errors.New("drop not found")
	ErrLedgerClosed   = errors.New("ledger closed")
)

// reject is a claim rejection with its counted reason.
func reject(code, reason, msg string) *microdrop.Error {
	return &microdrop.Error{Code: code, Reason: reason, Message: msg}
}
