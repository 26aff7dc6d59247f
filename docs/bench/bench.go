// Package bench holds the scripts BENCHMARKS.md's durable-claims rows are
// measured with, so `microdrop loadgen durable` runs exactly the committed
// files: claim.lua, the Redis reference claim (SISMEMBER, GET, DECR, SADD),
// and wrk-claim.lua, wrk's request script for claims over HTTP (a unique
// user per request, as the admin bridge).
package bench

import _ "embed"

// RedisClaim is claim.lua.
//
//go:embed claim.lua
var RedisClaim string

// WrkClaim is wrk-claim.lua.
//
//go:embed wrk-claim.lua
var WrkClaim string
