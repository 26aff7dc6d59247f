// Package webhook delivers the ledger's outbox (claims.Outbox) to
// fulfilment webhooks: endpoints per channel (URL, secret, event kinds, a
// fulfilment flag), signed as the Standard Webhooks spec says (webhook-id,
// webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>") with the spec's own Go library.
//
// The Worker tails the outbox by sequence after commit and copies each
// event an endpoint subscribes to into that endpoint's delivery queue (in
// one transaction with the endpoint's cursor, so a crash re-reads rather
// than skips). It delivers at least once: the webhook-id is the event's
// id, the same on every retry and after a restart, so receivers dedupe by
// it. Only a 2xx answer is success; a failure is retried with exponential
// backoff and jitter for up to RetryFor (72 h) from the first attempt,
// then the endpoint is disabled (its queue kept) until an admin enables it
// again. Deliveries of one drop to one endpoint go in outbox order: a later
// event waits while an earlier one is pending. Time is the injected clock,
// so tests drive the 72-hour schedule.
//
// Endpoints, queues and the delivery log live in the Store: SQLite in the
// data dir for a single node, or, with the shared Postgres ledger, tables
// in its database (webhook_*), which every replica sees. There one
// replica at a time delivers: the holder of the delivery lease, a row
// renewed every LeaseTTL/3 and taken over only once it has lapsed (or was
// given up at shutdown). Every write the worker makes (queueing, recording
// an attempt) checks the lease in its transaction, holding the row FOR
// SHARE, so a replica that lost the lease records nothing; an attempt it
// had already sent is sent again by the new holder with the same
// webhook-id (at least once, duplicates only across a failover). The
// admin API (Handler) manages endpoints — the secret is shown once, at
// creation — and shows the log with a redeliver action; it works on any
// replica.
//
// It must never deliver an event to an endpoint of another channel, never
// send a user id, name or email (events carry the receipts' pseudonymous
// holder id only), never mark a delivery done on anything but a 2xx, and
// never let a receiver's answer or error text reach an API caller beyond
// the recorded status and a short error.
package webhook
