// Package claims decides drops: it owns drops and their windows, stock,
// per-user and progressive caps, the fairness policies (window, the
// default, with its latency budget; fcfs, bucketed, raffle) with their
// commit-reveal seed and the one fair order they define (FairOrder), pickup
// tokens and their redemption, the Ledger interface that records all of it,
// and the JSON API under /api/.
//
// How a drop is decided:
//
//   - Every live drop has exactly one decider (decider.go), a goroutine that
//     owns the drop's state. Claims and controls queue to it; it decides them
//     in memory in batches, its committer writes each round to the ledger in
//     one transaction (commit.go), and only then are callers answered and
//     events published: decide, group commit, reply, publish, in that order.
//   - The Service is the registry of the deciders running in this process,
//     by drop and by channel (registry.go). Where each drop is decided is a
//     Placement (placement.go): Local decides every drop here; Leased
//     (leased.go) shares drops among replicas of one Postgres ledger by lease
//     and forwards claims to the holder over NATS. cmd/microdrop chooses.
//   - A commit has a deadline (Options.CommitTimeout): a stalled ledger fails
//     the round's claims with a retryable error instead of pinning callers,
//     Health reports the service degraded, and a drop whose final state did
//     not reach the ledger is rebuilt from the ledger and finished again.
//
// A listen drop (listen.go) is claimed with a code heard in the audio cue
// rather than typed: each step of its window has its own code, derived
// from the drop's secret as ingest/cue/SPEC.md section 10 says, announced
// to the overlay and the relay by a cue.step event and accepted for its
// step plus the drop's grace. The secret never leaves the service.
//
// Paid drops (drops with a price and pay methods): a win is a Hold with a
// deadline, recorded in the same commit as the win (holds.go). The hold
// timer on the injected clock expires unpaid holds and passes each unit to
// the next entry in the drop's fair order (fairOrder and line in
// fairness.go, keyed on the policy); the ledger guards every pass and every
// payment, so a payment racing an expiry leaves one outcome. Money is the
// double-entry Books (money.go) in the same ledger; receipts are signed
// with Ed25519 (receipt.go). Card payments come through claims/stripe.
//
// Settlement: a paid hold credits its creator at once, less the creator's
// fee (fee.go). A refund (RefundHold) reverses creator credit and fee in
// proportion; the ledger checks inside the refund's own transaction that
// a hold's refunds never pass its payment (Books.PostRefund), and a card
// refund goes back through the provider (CardRefunder) and is booked paid
// back only once the provider accepted it. Payouts (payout.go) move a
// creator's balance to in transit and then paid out, each step in the
// ledger transaction of its movement, through Stripe Connect or a payout
// file, resumable with the payout id as idempotency key; statements
// (statement.go) and AuditMoneyAndPayouts read them back. Every change of
// a hold, and every finished payout, writes an event to the ledger's
// outbox in the same transaction (outbox.go); claims/webhook delivers it
// after commit, at least once. A free drop's claims write none. In
// scale-out the Relay (relay.go) publishes to the bus, after commit, the
// hold events past the outbox's relayed position and the wins past each
// recent drop's relayed entry seq, with the ids the service's own
// publishes carry (BusEventID, WinEventID), so a replica killed between
// commit and publish loses none and a bus that dedupes delivers each once.
//
// Adapters live in subpackages named after their dependency: claims/sqlite
// (the embedded default), claims/postgres (shared by replicas, with leases),
// claims/nats (the bus between replicas), claims/stripe (card payments);
// all ledgers pass the contract suite in claims/ledgertest, books included.
//
// It must never import chat, overlay or ingest (the core knows no edge),
// never acknowledge a claim or publish its event before the ledger has
// committed it, never oversell or award one unit twice, never let two
// deciders run for one drop, and never let internal error text reach a
// caller: errors carry a microdrop code, a message and, for rejections, a
// reason. The unauthenticated API never shows a drop's claim code.
package claims
