package claims

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microdrop/microdrop"
)

type claimReq struct {
	req   ClaimRequest
	reply chan claimReply
	at    time.Time
	seq   int64
	cap   int
	// cueStep is the step of the code heard, on a listen drop.
	cueStep int64
}

type claimReply struct {
	res ClaimResult
	err error
}

var claimReqPool = sync.Pool{New: func() any { return &claimReq{reply: make(chan claimReply, 1)} }}

func getClaimReq() *claimReq { return claimReqPool.Get().(*claimReq) }

func putClaimReq(c *claimReq) {
	c.req = ClaimRequest{}
	c.cueStep = 0
	claimReqPool.Put(c)
}

type ctlOp int

const (
	ctlClose ctlOp = iota + 1
	ctlExtend
	ctlGrace
)

type ctlReq struct {
	op    ctlOp
	d     time.Duration
	by    string
	reply chan ctlReply
}

type ctlReply struct {
	drop *Drop
	err  error
}

// decider is the single decider of one live drop: claims and controls for
// the drop queue to its goroutine, which decides them in memory in batches;
// its committer writes each round to the ledger in one transaction and only
// then replies and publishes. Only the decider's goroutine touches d, units,
// pending and entries; everyone else reads snap.
type decider struct {
	s       *Service
	id      string
	channel string
	d       *Drop
	snap    atomic.Pointer[Drop]

	// gate orders claim senders against refuseQueued: senders hold it
	// shared from checking closing until their claim is in `in`, so once
	// refuseQueued holds it exclusively nobody is left mid-send.
	gate    sync.RWMutex
	closing bool // guarded by gate: the decider takes no more claims

	in        chan *claimReq
	ctl       chan ctlReq
	quit      chan struct{}
	done      chan struct{}
	commits   chan *commitJob
	resync    chan struct{}
	finalDone chan error // the committer's verdict on a round that made the drop final
	stopped   sync.Once
	finalOK   bool // the ledger holds the drop's final state

	units   map[string]int // units won (raffle: entries) per user
	queued  map[string]int // bucketed: claims waiting for their bucket per user
	seq     int64
	pending []*claimReq   // bucketed, and window drops' buckets after the window: in arrival order
	window  []windowClaim // window: claims inside the window, awaiting its draw
	waiting atomic.Int64  // len(pending)+len(window), for readers outside the decider
	entries []Entry       // raffle: entries awaiting the draw
	cueStep int64         // listen drop: the last step whose code was announced
	codes   stepCodes     // listen drop: codes of recent steps
}

// windowClaim is a claim waiting for its window's draw, ranked when it
// arrived so the draw itself only sorts.
type windowClaim struct {
	k0 uint64 // the key's first 64 bits, to compare fast
	r  rank
	cr *claimReq
}

func newWindowClaim(r rank, cr *claimReq) windowClaim {
	return windowClaim{k0: binary.BigEndian.Uint64(r.key[:8]), r: r, cr: cr}
}

func newDecider(s *Service, d *Drop, entries []Entry) *decider {
	dc := &decider{
		s: s, id: d.ID, channel: d.Channel, d: d.Clone(),
		in:        make(chan *claimReq, 8192),
		ctl:       make(chan ctlReq),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		commits:   make(chan *commitJob, 64),
		resync:    make(chan struct{}, 1),
		finalDone: make(chan error, 1),
		units:     make(map[string]int),
		queued:    make(map[string]int),
	}
	dc.load(entries)
	dc.publishSnap()
	return dc
}

func (dc *decider) load(entries []Entry) {
	clear(dc.units)
	dc.entries = dc.entries[:0]
	for _, e := range entries {
		if e.Seq > dc.seq {
			dc.seq = e.Seq
		}
		switch e.Outcome {
		case OutcomeWon:
			dc.units[e.UserID]++
		case OutcomeLost, OutcomePassed:
			// On a priced drop a loser waits in line and one who let a
			// unit pass has had their chance: neither claims again.
			if dc.d.Priced() {
				dc.units[e.UserID]++
			}
		case OutcomeEntered:
			dc.units[e.UserID]++
			dc.entries = append(dc.entries, e)
		}
	}
}

func (dc *decider) publishSnap() { dc.snap.Store(dc.d.Clone()) }

func (dc *decider) snapshot() *Drop { return dc.snap.Load().Clone() }

func (dc *decider) stop() {
	dc.stopped.Do(func() { close(dc.quit) })
	<-dc.done
}

// claim queues one claim and waits for its decision, which arrives only
// after the ledger has the round it was decided in. When ctx ends first the
// caller is told the decision is still coming; the decider answers into
// the abandoned request, which is then never reused.
func (dc *decider) claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	dc.gate.RLock()
	if dc.closing {
		dc.gate.RUnlock()
		if dc.snap.Load().State == SoldOut {
			return ClaimResult{}, reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
		}
		return ClaimResult{}, reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
	}
	cr := getClaimReq()
	cr.req = req
	select {
	case dc.in <- cr:
		dc.gate.RUnlock()
	case <-ctx.Done():
		// Not queued: nothing was decided.
		dc.gate.RUnlock()
		putClaimReq(cr)
		return ClaimResult{}, ctx.Err()
	}
	select {
	case rep := <-cr.reply:
		putClaimReq(cr)
		return rep.res, rep.err
	case <-ctx.Done():
		return ClaimResult{}, &microdrop.Error{Code: microdrop.EINTERNAL, Reason: ReasonUnavailable,
			Message: "your claim is still being recorded; check your pickups before claiming again", Err: ctx.Err()}
	}
}

// control sends a close, extend or grace change to the decider and waits
// for its answer.
func (dc *decider) control(ctx context.Context, op ctlOp, d time.Duration, by string) (*Drop, error) {
	c := ctlReq{op: op, d: d, by: by, reply: make(chan ctlReply, 1)}
	select {
	case dc.ctl <- c:
	case <-dc.done:
		return nil, &microdrop.Error{Code: microdrop.ECONFLICT, Message: "drop has just ended"}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-c.reply:
		return rep.drop, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run decides claims until the drop is final in the ledger or the service
// stops. A round that made the drop final but failed to commit does not
// end the decider: it rebuilds from the ledger and finishes again, so a
// drop is never left live in the ledger with nobody deciding it.
func (dc *decider) run() {
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		dc.commitLoop()
	}()
	defer func() {
		close(dc.commits)
		<-committed
		if dc.finalOK {
			dc.s.rememberEnded(dc.d)
		}
		dc.s.health.ok(dc.id)
		dc.s.deciders.remove(dc)
		close(dc.done)
		dc.s.wg.Done()
	}()
	const tick = 25 * time.Millisecond
	timer := time.NewTimer(tick)
	defer timer.Stop()
	batch := make([]*claimReq, 0, dc.s.opts.MaxBatch)
	for {
		if dc.advance(dc.s.now()) {
			dc.drain(ReasonClosed)
			if !dc.settle() {
				return
			}
			continue
		}
		dc.stepCue(dc.s.now())
		timer.Reset(dc.wait(dc.s.now(), tick))
		select {
		case <-dc.quit:
			dc.shutdown()
			return
		case c := <-dc.ctl:
			rep := dc.apply(c)
			c.reply <- rep
		case <-dc.resync:
			dc.reload()
		case cr := <-dc.in:
			// A failed commit asks for a reload before it refuses its
			// claims: a viewer retrying after the refusal must be decided
			// on what the ledger holds, not on the refused round.
			select {
			case <-dc.resync:
				dc.reload()
			default:
			}
			batch = append(batch[:0], cr)
		more:
			for len(batch) < cap(batch) {
				select {
				case cr := <-dc.in:
					batch = append(batch, cr)
				default:
					break more
				}
			}
			dc.decide(batch, dc.s.now())
		case <-timer.C:
		}
	}
}

// settle waits for the committer's verdict on the final round. It reports
// true when the decider must go on: the final state did not reach the
// ledger, and the decider has rebuilt itself from the ledger to finish
// again.
func (dc *decider) settle() bool {
	var err error
	select {
	case err = <-dc.finalDone:
	case <-dc.quit:
		return false // the next start resumes whatever the ledger holds
	}
	if err == nil {
		dc.finalOK = true
		return false
	}
	if errors.Is(err, ErrLeaseLost) {
		return false // another replica decides the drop now
	}
	return dc.recover()
}

// recover rebuilds the decider from the ledger after its final round
// failed to commit, waiting with backoff while the ledger stays down. A
// drop closed by someone is closed again; one that ended by time ends again
// from the ledger's own times; one that sold out on wins the ledger never
// got goes on with the stock the ledger still has.
func (dc *decider) recover() bool {
	forced := ""
	if dc.d.State == Closed && dc.d.CloseReason != "ended" {
		forced = dc.d.CloseReason
	}
	wait := dc.s.opts.FinalRetryBackoff
	for {
		t := time.NewTimer(wait)
		select {
		case <-dc.quit:
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, maxFinalRetryBackoff)
		dc.s.metrics.finalRetries.Inc()
		ctx, cancel := context.WithTimeout(context.Background(), dc.s.opts.CommitTimeout)
		d, err := dc.s.ledger.Drop(ctx, dc.id)
		var es []Entry
		if err == nil {
			es, err = dc.s.ledger.Entries(ctx, dc.id)
		}
		cancel()
		if err != nil {
			dc.s.log.Warn("reload drop to retry its final state", "drop", dc.id, "err", err, "next_try", wait)
			continue
		}
		dc.d = d
		dc.pending = nil
		dc.window = nil
		dc.waiting.Store(0)
		clear(dc.queued)
		dc.load(es)
		dc.publishSnap()
		if d.State.Final() { // the final round did land
			dc.finalOK = true
			return false
		}
		dc.gate.Lock()
		dc.closing = false
		dc.gate.Unlock()
		dc.s.log.Warn("retrying the final state of a drop", "drop", dc.id, "state", d.State, "remaining", d.Remaining)
		if forced != "" {
			dc.finish(dc.s.now(), forced)
		}
		return true
	}
}

// wait is how long the decider may sleep before something is due.
func (dc *decider) wait(now time.Time, max time.Duration) time.Duration {
	next := now.Add(max)
	consider := func(t time.Time) {
		if t.After(now) && t.Before(next) {
			next = t
		}
	}
	switch dc.d.StateAt(now) {
	case Scheduled:
		consider(dc.d.OpensAt)
	case Open:
		consider(dc.d.ClosesAt)
	case Grace:
		consider(dc.d.EndsAt())
	}
	if len(dc.window) > 0 {
		consider(dc.d.WindowEndsAt())
	}
	if len(dc.pending) > 0 {
		consider(dc.bucketEnd(dc.bucketOf(dc.pending[0].at)))
	}
	w := next.Sub(now)
	if w < time.Millisecond {
		w = time.Millisecond
	}
	return w
}

func (dc *decider) bucketOf(t time.Time) int64 { return dc.d.bucketOf(t) }

func (dc *decider) bucketEnd(b int64) time.Time { return dc.d.bucketEnd(b) }

func (dc *decider) setWaiting() { dc.waiting.Store(int64(len(dc.pending) + len(dc.window))) }

// advance moves the drop through time: opening, closing the window,
// deciding buckets that have ended, and finishing at close plus grace. It
// reports true when the drop is final.
func (dc *decider) advance(now time.Time) bool {
	if dc.d.State.Final() {
		return true
	}
	if dc.d.State == Scheduled && !now.Before(dc.d.OpensAt) {
		dc.d.State = Open
		dc.publishSnap()
		dc.queue(&commitJob{state: dc.stateOf(), events: []microdrop.Event{dc.event(microdrop.DropOpened, now)}})
	}
	if len(dc.window) > 0 && !now.Before(dc.d.WindowEndsAt()) {
		dc.decideWindow(now)
		if dc.d.State.Final() {
			return true
		}
	}
	if len(dc.pending) > 0 {
		dc.decideBuckets(now, false)
		if dc.d.State.Final() {
			return true
		}
	}
	if dc.d.State == Open && !now.Before(dc.d.ClosesAt) {
		if dc.d.Grace > 0 && now.Before(dc.d.EndsAt()) {
			dc.d.State = Grace
			dc.publishSnap()
			dc.queue(&commitJob{state: dc.stateOf(), events: []microdrop.Event{dc.event(microdrop.DropClosed, now)}})
		}
	}
	if !now.Before(dc.d.EndsAt()) {
		dc.finish(now, "ended")
		return true
	}
	return false
}

func (dc *decider) stateOf() *DropState {
	return &DropState{State: dc.d.State, ClosesAt: dc.d.ClosesAt, Grace: dc.d.Grace, ClosedAt: dc.d.ClosedAt, CloseReason: dc.d.CloseReason}
}

func (dc *decider) event(k microdrop.Kind, at time.Time) microdrop.Event {
	return microdrop.Event{Kind: k, Channel: dc.d.Channel, DropID: dc.d.ID, At: at, Drop: dc.d.View()}
}

// finish makes the drop final: pending buckets are decided, a raffle is
// drawn, the seed is revealed.
func (dc *decider) finish(now time.Time, reason string) {
	if dc.d.State.Final() {
		return
	}
	if len(dc.window) > 0 {
		dc.decideWindow(now)
		if dc.d.State.Final() {
			return
		}
	}
	if len(dc.pending) > 0 {
		dc.decideBuckets(now, true)
		if dc.d.State.Final() {
			return
		}
	}
	job := &commitJob{final: true}
	if dc.d.Policy == Raffle {
		dc.draw(now, job)
	}
	if dc.d.State.Final() { // the draw sold it out
		dc.queue(job)
		return
	}
	dc.d.State = Closed
	dc.d.ClosedAt = now.UTC()
	dc.d.CloseReason = reason
	dc.publishSnap()
	job.state = dc.stateOf()
	job.events = append(job.events, dc.event(microdrop.DropClosed, now))
	dc.queue(job)
}

func (dc *decider) soldOut(now time.Time, job *commitJob) {
	dc.d.State = SoldOut
	dc.d.ClosedAt = now.UTC()
	dc.d.CloseReason = "sold_out"
	job.state = dc.stateOf()
	job.final = true
	job.events = append(job.events, dc.event(microdrop.SoldOut, now))
	// Claims still waiting in a later bucket lose: nothing is left.
	for _, cr := range dc.pending {
		job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")})
	}
	for _, wc := range dc.window {
		job.replies = append(job.replies, pendingReply{cr: wc.cr, entry: -1, err: reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")})
	}
	dc.pending = dc.pending[:0]
	dc.window = nil
	dc.waiting.Store(0)
	clear(dc.queued)
}

// check applies the rules that do not depend on other claims: window,
// code, stage eligibility and the user's cap.
func (dc *decider) check(cr *claimReq) error {
	d := dc.d
	switch d.StateAt(cr.at) {
	case Scheduled:
		return reject(microdrop.ECONFLICT, ReasonNotOpen, "this drop has not opened yet")
	case Closed:
		return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
	case SoldOut:
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	}
	if d.Listening() {
		step, err := dc.heard(cr)
		if err != nil {
			return err
		}
		cr.cueStep = step
	} else if d.ClaimCode != "" && NormalizeCode(cr.req.Code) != d.ClaimCode {
		if cr.req.Code == "" {
			return reject(microdrop.EINVALID, ReasonWrongCode, "this drop needs the code shown on stream: !claim CODE")
		}
		return reject(microdrop.EINVALID, ReasonWrongCode, "that is not this drop's code")
	}
	limit := d.Cap
	if st := d.stageAt(cr.at); st != nil {
		limit = st.Cap
		if !eligible(st.Eligible, cr.req.Viewer, cr.at) {
			msg := "this stage of the drop is for " + stageAudience(st.Eligible)
			if next := d.nextOpenStage(cr.at); !next.IsZero() {
				msg += fmt.Sprintf("; everyone can claim in %s", next.Sub(cr.at).Round(time.Second))
			}
			return reject(microdrop.EFORBIDDEN, ReasonNotEligible, msg)
		}
	}
	cr.cap = limit
	held := dc.units[cr.req.UserID] + dc.queued[cr.req.UserID]
	if held >= limit {
		if held == 1 || d.Policy == Raffle {
			return reject(microdrop.ECONFLICT, ReasonDuplicate, "you already claimed this drop")
		}
		return reject(microdrop.ECONFLICT, ReasonOverCap, fmt.Sprintf("you already have %d, the most allowed right now", held))
	}
	return nil
}

// stageAudience names who a stage admits, naming only what it admits.
func stageAudience(e Eligibility) string {
	switch {
	case e.Subscribers && e.MinAccountAgeDays > 0:
		return fmt.Sprintf("subscribers or accounts older than %d days", e.MinAccountAgeDays)
	case e.MinAccountAgeDays > 0:
		return fmt.Sprintf("accounts older than %d days", e.MinAccountAgeDays)
	case e.Subscribers:
		return "subscribers"
	}
	return "no one yet"
}

func eligible(e Eligibility, v Viewer, at time.Time) bool {
	if e.Everyone {
		return true
	}
	if e.Subscribers && v.Subscriber {
		return true
	}
	if e.MinAccountAgeDays > 0 && !v.AccountCreated.IsZero() &&
		at.Sub(v.AccountCreated) >= time.Duration(e.MinAccountAgeDays)*24*time.Hour {
		return true
	}
	return false
}

// nextOpenStage is when the next stage open to everyone begins, if any.
func (d *Drop) nextOpenStage(at time.Time) time.Time {
	for _, st := range d.Stages {
		t := d.OpensAt.Add(time.Duration(st.Offset))
		if t.After(at) && st.Eligible.Everyone {
			return t
		}
	}
	return time.Time{}
}

// decide takes a batch in arrival order.
func (dc *decider) decide(batch []*claimReq, now time.Time) {
	if len(dc.window) > 0 && !now.Before(dc.d.WindowEndsAt()) {
		// The window's draw comes before any claim that follows it.
		dc.decideWindow(now)
	}
	job := &commitJob{}
	for _, cr := range batch {
		cr.at = now
		if dc.d.State.Final() {
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: dc.finalReject()})
			continue
		}
		if err := dc.check(cr); err != nil {
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: err})
			continue
		}
		dc.seq++
		cr.seq = dc.seq
		switch dc.d.Policy {
		case FCFS:
			if dc.d.Remaining == 0 { // only a priced drop is still open here
				dc.waitlist(cr, now, 0, job)
				continue
			}
			dc.award(cr, now, job)
			if dc.d.Remaining == 0 && !dc.d.Priced() {
				dc.soldOut(now, job)
			}
		case Bucketed:
			dc.pending = append(dc.pending, cr)
			dc.setWaiting()
			dc.queued[cr.req.UserID]++
		case Window:
			switch b := dc.bucketOf(now); {
			case b == 0:
				dc.window = append(dc.window, newWindowClaim(dc.d.rankOf(0, cr.req.UserID, cr.seq), cr))
				dc.setWaiting()
				dc.queued[cr.req.UserID]++
			case dc.d.BucketWidth > 0:
				dc.pending = append(dc.pending, cr)
				dc.setWaiting()
				dc.queued[cr.req.UserID]++
			default:
				dc.award(cr, now, job)
				if dc.d.Remaining == 0 {
					dc.soldOut(now, job)
				}
			}
		case Raffle:
			e := Entry{DropID: dc.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: 1, CueStep: cr.cueStep,
				Outcome: OutcomeEntered, ArrivedAt: now.UTC(), DecidedAt: now.UTC()}
			dc.units[cr.req.UserID]++
			dc.entries = append(dc.entries, e)
			job.insert = append(job.insert, e)
			job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1,
				res: ClaimResult{DropID: dc.d.ID, UserID: cr.req.UserID, Outcome: OutcomeEntered, Remaining: dc.d.Remaining}})
		}
	}
	if job.wins > 0 || job.final {
		dc.publishSnap()
	}
	dc.queue(job)
}

func (dc *decider) finalReject() error {
	if dc.d.State == SoldOut {
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	}
	return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
}

// waitlist records a claim on a priced drop that found no stock: it waits
// in the drop's fair order for a unit somebody does not pay for.
func (dc *decider) waitlist(cr *claimReq, now time.Time, bucket int64, job *commitJob) {
	dc.units[cr.req.UserID]++
	e := Entry{DropID: dc.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: cr.cap, CueStep: cr.cueStep,
		Outcome: OutcomeLost, ArrivedAt: cr.at.UTC(), Bucket: bucket, DecidedAt: now.UTC()}
	job.insert = append(job.insert, e)
	job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1,
		err: reject(microdrop.ESOLDOUT, ReasonWaitlisted, "sold out for now: you are in line for a unit a winner does not pay for")})
}

// holdOf is the hold of a win on a priced drop.
func (dc *decider) holdOf(e *Entry, now time.Time) Hold {
	return Hold{ID: HoldID(dc.d.ID, e.Seq), DropID: dc.d.ID, Seq: e.Seq, UserID: e.UserID, Unit: e.Unit,
		AmountMinor: dc.d.PriceMinor, Currency: dc.d.Currency, State: HoldAwaiting, CreatedAt: now.UTC(),
		Deadline: now.Add(dc.d.PayWindow).UTC()}
}

// award gives cr one unit. The caller has checked stock and cap.
func (dc *decider) award(cr *claimReq, now time.Time, job *commitJob) {
	dc.d.Remaining--
	dc.units[cr.req.UserID]++
	unit := dc.units[cr.req.UserID]
	e := Entry{DropID: dc.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Unit: unit, Cap: cr.cap, CueStep: cr.cueStep,
		Outcome: OutcomeWon, ArrivedAt: cr.at.UTC(), Bucket: dc.bucketOf(cr.at), DecidedAt: now.UTC(),
		Token: dc.s.signer.New(), ExpiresAt: now.Add(dc.s.opts.TokenTTL).UTC()}
	res := ClaimResult{DropID: dc.d.ID, UserID: e.UserID, Outcome: OutcomeWon, Unit: unit, Remaining: dc.d.Remaining}
	if dc.d.Priced() {
		// The receipt, once paid, is the pickup proof: no token to an
		// unpaid hold.
		e.Token, e.ExpiresAt = "", time.Time{}
		h := dc.holdOf(&e, now)
		job.holds = append(job.holds, h)
		res.HoldID, res.PayBy = h.ID, h.Deadline
	} else {
		res.Token, res.ExpiresAt = e.Token, e.ExpiresAt
	}
	job.wins++
	job.insert = append(job.insert, e)
	job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1, res: res})
	job.events = append(job.events, microdrop.Event{ID: WinEventID(dc.d.ID, e.Seq), Kind: microdrop.Claimed, Channel: dc.d.Channel, DropID: dc.d.ID, At: now,
		Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: OutcomeWon, Units: unit, Remaining: dc.d.Remaining}})
}

// decideBuckets decides every pending bucket that has ended (all of them
// when flush is set). Inside a bucket, claims are ordered by shuffleKey.
func (dc *decider) decideBuckets(now time.Time, flush bool) {
	job := &commitJob{}
	for len(dc.pending) > 0 && !dc.d.State.Final() {
		b := dc.bucketOf(dc.pending[0].at)
		if !flush && now.Before(dc.bucketEnd(b)) {
			break
		}
		n := 0
		for n < len(dc.pending) && dc.bucketOf(dc.pending[n].at) == b {
			n++
		}
		group := dc.pending[:n]
		sort.Slice(group, func(i, j int) bool {
			return lessKey(shuffleKey(dc.d.Seed, b, group[i].req.UserID, group[i].seq), shuffleKey(dc.d.Seed, b, group[j].req.UserID, group[j].seq))
		})
		for _, cr := range group {
			dc.queued[cr.req.UserID]--
			if dc.queued[cr.req.UserID] == 0 {
				delete(dc.queued, cr.req.UserID)
			}
			if dc.d.Remaining > 0 {
				dc.award(cr, now, job)
				continue
			}
			if dc.d.Priced() {
				dc.waitlist(cr, now, b, job)
				continue
			}
			e := Entry{DropID: dc.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: cr.cap, CueStep: cr.cueStep,
				Outcome: OutcomeLost, ArrivedAt: cr.at.UTC(), Bucket: b, DecidedAt: now.UTC()}
			job.insert = append(job.insert, e)
			job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1,
				err: reject(microdrop.ESOLDOUT, ReasonLostDraw, "sold out: this moment had more claims than stock and the draw went to others")})
		}
		dc.pending = dc.pending[n:]
		dc.setWaiting()
		if dc.d.Remaining == 0 && !dc.d.Priced() {
			dc.soldOut(now, job)
		}
	}
	if len(dc.pending) == 0 {
		dc.pending = dc.pending[:0:0]
	}
	if len(job.insert) > 0 || job.final {
		dc.publishSnap()
		dc.queue(job)
	}
}

// decideWindow makes the window's draw: every claim that arrived inside it
// in the seeded order (ranked on arrival, so this only sorts), stock to the
// first ones, within their caps (checked on arrival, counting the claims
// still waiting). Entries are written in arrival order, which keeps the
// ledger's inserts append-only.
func (dc *decider) decideWindow(now time.Time) {
	w := dc.window
	dc.window = nil
	wins := make([]bool, len(w))
	for _, i := range lowestRanked(w, dc.d.Remaining) {
		wins[i] = true
	}
	// Only window claims are queued while the window is open (claims
	// after it arrive after this draw).
	clear(dc.queued)
	job := &commitJob{insert: make([]Entry, 0, len(w)), replies: make([]pendingReply, 0, len(w))}
	var lost error
	for i, wc := range w {
		cr := wc.cr
		if wins[i] {
			dc.award(cr, now, job)
			continue
		}
		if lost == nil {
			// One value for every loser: a window can hold 100,000 of them.
			lost = reject(microdrop.ESOLDOUT, ReasonLostDraw, fmt.Sprintf(
				"sold out: everyone who claimed in the first %s s had the same chance, and the draw went to others",
				strconv.FormatFloat(dc.d.Budget.Round(100*time.Millisecond).Seconds(), 'f', -1, 64)))
		}
		job.insert = append(job.insert, Entry{DropID: dc.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: cr.cap, CueStep: cr.cueStep,
			Outcome: OutcomeLost, ArrivedAt: cr.at.UTC(), Bucket: 0, DecidedAt: now.UTC()})
		job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1, err: lost})
	}
	dc.setWaiting()
	if dc.d.Remaining == 0 {
		dc.soldOut(now, job)
	}
	dc.publishSnap()
	dc.queue(job)
}

// lowestRanked returns the indexes of the k first claims of the window in
// its order. Only the winners need finding: a bounded max-heap of k keeps
// them, and with random keys almost every claim is turned away by one
// comparison with the heap's top, so a window of 100,000 for a stock of
// 1,000 costs well under a sort.
func lowestRanked(w []windowClaim, k int) []int32 {
	if k >= len(w) {
		all := make([]int32, len(w))
		for i := range all {
			all[i] = int32(i)
		}
		return all
	}
	if k <= 0 {
		return nil
	}
	less := func(a, b int32) bool {
		if w[a].k0 != w[b].k0 {
			return w[a].k0 < w[b].k0
		}
		return compareRank(w[a].r, w[b].r) < 0
	}
	h := make([]int32, 0, k) // max-heap: h[0] ranks last of the k kept
	down := func(i int) {
		for {
			l, big := 2*i+1, i
			if l < len(h) && less(h[big], h[l]) {
				big = l
			}
			if r := l + 1; r < len(h) && less(h[big], h[r]) {
				big = r
			}
			if big == i {
				return
			}
			h[i], h[big] = h[big], h[i]
			i = big
		}
	}
	for i := range w {
		c := int32(i)
		if len(h) < k {
			h = append(h, c)
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if !less(h[p], h[j]) {
					break
				}
				h[p], h[j] = h[j], h[p]
				j = p
			}
			continue
		}
		if less(c, h[0]) {
			h[0] = c
			down(0)
		}
	}
	return h
}

// draw picks raffle winners: entries ordered by shuffleKey, one unit each.
func (dc *decider) draw(now time.Time, job *commitJob) {
	es := dc.entries
	sort.Slice(es, func(i, j int) bool {
		return lessKey(shuffleKey(dc.d.Seed, 0, es[i].UserID, es[i].Seq), shuffleKey(dc.d.Seed, 0, es[j].UserID, es[j].Seq))
	})
	for i := range es {
		e := es[i]
		e.DecidedAt = now.UTC()
		if dc.d.Remaining > 0 {
			dc.d.Remaining--
			e.Outcome = OutcomeWon
			e.Unit = 1
			if dc.d.Priced() {
				job.holds = append(job.holds, dc.holdOf(&e, now))
			} else {
				e.Token = dc.s.signer.New()
				e.ExpiresAt = now.Add(dc.s.opts.TokenTTL).UTC()
			}
			job.wins++
			job.events = append(job.events, microdrop.Event{ID: WinEventID(dc.d.ID, e.Seq), Kind: microdrop.Claimed, Channel: dc.d.Channel, DropID: dc.d.ID, At: now,
				Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: OutcomeWon, Units: 1, Remaining: dc.d.Remaining}})
		} else {
			e.Outcome = OutcomeLost
		}
		job.update = append(job.update, e)
	}
	dc.entries = nil
	if dc.d.Remaining == 0 {
		dc.d.State = SoldOut
		dc.d.ClosedAt = now.UTC()
		dc.d.CloseReason = "sold_out"
		dc.publishSnap()
		job.state = dc.stateOf()
		job.final = true
		job.events = append(job.events, dc.event(microdrop.SoldOut, now))
	}
}

func (dc *decider) apply(c ctlReq) ctlReply {
	now := dc.s.now()
	if dc.d.State.Final() {
		return ctlReply{err: &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("drop %s is already %s", dc.d.ID, dc.d.State)}}
	}
	switch c.op {
	case ctlClose:
		if dc.d.StateAt(now) == Grace || dc.d.Grace == 0 || dc.d.State == Scheduled {
			dc.finish(now, "closed by "+c.by)
		} else {
			dc.d.ClosesAt = now.UTC()
			dc.d.State = Grace
			dc.publishSnap()
			dc.queue(&commitJob{state: dc.stateOf(), events: []microdrop.Event{dc.event(microdrop.DropClosed, now)}})
		}
		dc.s.log.Info("drop closed", "drop", dc.d.ID, "by", c.by, "state", dc.d.State)
	case ctlGrace:
		// Grace only grows: viewers told they have until close plus grace
		// keep it.
		if c.d <= dc.d.Grace {
			return ctlReply{drop: dc.d.Clone()}
		}
		dc.d.Grace = min(c.d, MaxGrace)
		dc.publishSnap()
		dc.queue(&commitJob{state: dc.stateOf(), events: []microdrop.Event{dc.event(microdrop.DropExtended, now)}})
		dc.s.log.Info("drop grace set from the measured cue-to-air delay", "drop", dc.d.ID, "grace", dc.d.Grace, "by", c.by)
	case ctlExtend:
		base := dc.d.ClosesAt
		if base.Before(now) {
			base = now
		}
		closes := base.Add(c.d)
		if closes.Sub(dc.d.OpensAt) > MaxDuration {
			return ctlReply{err: microdrop.Errorf(microdrop.EINVALID, "a drop lasts at most %s", MaxDuration)}
		}
		dc.d.ClosesAt = closes.UTC()
		if dc.d.State == Grace {
			dc.d.State = Open
		}
		dc.publishSnap()
		dc.queue(&commitJob{state: dc.stateOf(), events: []microdrop.Event{dc.event(microdrop.DropExtended, now)}})
		dc.s.log.Info("drop extended", "drop", dc.d.ID, "by", c.by, "closes_at", dc.d.ClosesAt)
	}
	return ctlReply{drop: dc.d.Clone()}
}
