package claims

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
}

type claimReply struct {
	res ClaimResult
	err error
}

var claimReqPool = sync.Pool{New: func() any { return &claimReq{reply: make(chan claimReply, 1)} }}

func getClaimReq() *claimReq { return claimReqPool.Get().(*claimReq) }

func putClaimReq(c *claimReq) {
	c.req = ClaimRequest{}
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

// commitJob is one round of decisions: what to write, and who to tell once
// it is written.
type commitJob struct {
	wins    int
	insert  []Entry
	update  []Entry
	state   *DropState
	replies []pendingReply
	events  []microdrop.Event
	final   bool
}

type pendingReply struct {
	cr    *claimReq
	entry int // index into insert (or update for raffle draws), -1 for none
	res   ClaimResult
	err   error
}

// runner is the single decider of one live drop. Only its goroutine touches
// d, units, pending and entries; everyone else reads snap.
type runner struct {
	s       *Service
	id      string
	channel string
	d       *Drop
	snap    atomic.Pointer[Drop]

	in       chan *claimReq
	closing  atomic.Bool  // set once the decider stops taking claims
	inflight atomic.Int64 // senders between checking closing and sending
	ctl      chan ctlReq
	quit     chan struct{}
	done     chan struct{}
	commits  chan *commitJob
	resync   chan struct{}
	stopped  sync.Once

	units   map[string]int // units won (raffle: entries) per user
	queued  map[string]int // bucketed: claims waiting for their bucket per user
	seq     int64
	pending []*claimReq  // bucketed: in arrival order
	waiting atomic.Int64 // len(pending), for readers outside the decider
	entries []Entry      // raffle: entries awaiting the draw
}

func newRunner(s *Service, d *Drop, entries []Entry) *runner {
	r := &runner{
		s: s, id: d.ID, channel: d.Channel, d: d.Clone(),
		in:      make(chan *claimReq, 8192),
		ctl:     make(chan ctlReq),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		commits: make(chan *commitJob, 64),
		resync:  make(chan struct{}, 1),
		units:   make(map[string]int),
		queued:  make(map[string]int),
	}
	r.load(entries)
	r.publishSnap()
	return r
}

func (r *runner) load(entries []Entry) {
	clear(r.units)
	r.entries = r.entries[:0]
	for _, e := range entries {
		if e.Seq > r.seq {
			r.seq = e.Seq
		}
		switch e.Outcome {
		case OutcomeWon:
			r.units[e.UserID]++
		case OutcomeEntered:
			r.units[e.UserID]++
			r.entries = append(r.entries, e)
		}
	}
}

func (r *runner) publishSnap() { r.snap.Store(r.d.Clone()) }

func (r *runner) snapshot() *Drop { return r.snap.Load().Clone() }

func (r *runner) stop() {
	r.stopped.Do(func() { close(r.quit) })
	<-r.done
}

// run decides claims until the drop is final or the service stops.
func (r *runner) run() {
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		r.commitLoop()
	}()
	defer func() {
		close(r.commits)
		<-committed
		if r.d.State.Final() {
			r.s.rememberEnded(r.d)
		}
		r.s.forget(r)
		close(r.done)
		r.s.wg.Done()
	}()
	const tick = 25 * time.Millisecond
	timer := time.NewTimer(tick)
	defer timer.Stop()
	batch := make([]*claimReq, 0, r.s.opts.MaxBatch)
	for {
		if r.advance(r.s.now()) {
			r.drain(ReasonClosed)
			return
		}
		timer.Reset(r.wait(r.s.now(), tick))
		select {
		case <-r.quit:
			r.shutdown()
			return
		case c := <-r.ctl:
			rep := r.control(c)
			c.reply <- rep
		case <-r.resync:
			r.reload()
		case cr := <-r.in:
			batch = append(batch[:0], cr)
		more:
			for len(batch) < cap(batch) {
				select {
				case cr := <-r.in:
					batch = append(batch, cr)
				default:
					break more
				}
			}
			r.decide(batch, r.s.now())
		case <-timer.C:
		}
	}
}

// wait is how long the decider may sleep before something is due.
func (r *runner) wait(now time.Time, max time.Duration) time.Duration {
	next := now.Add(max)
	consider := func(t time.Time) {
		if t.After(now) && t.Before(next) {
			next = t
		}
	}
	switch r.d.StateAt(now) {
	case Scheduled:
		consider(r.d.OpensAt)
	case Open:
		consider(r.d.ClosesAt)
	case Grace:
		consider(r.d.EndsAt())
	}
	if len(r.pending) > 0 {
		consider(r.bucketEnd(r.bucketOf(r.pending[0].at)))
	}
	w := next.Sub(now)
	if w < time.Millisecond {
		w = time.Millisecond
	}
	return w
}

func (r *runner) bucketOf(t time.Time) int64 {
	if r.d.Policy != Bucketed {
		return 0
	}
	return int64(t.Sub(r.d.OpensAt) / r.d.BucketWidth)
}

func (r *runner) bucketEnd(b int64) time.Time {
	return r.d.OpensAt.Add(time.Duration(b+1) * r.d.BucketWidth)
}

// advance moves the drop through time: opening, closing the window,
// deciding buckets that have ended, and finishing at close plus grace. It
// reports true when the drop is final.
func (r *runner) advance(now time.Time) bool {
	if r.d.State.Final() {
		return true
	}
	if r.d.State == Scheduled && !now.Before(r.d.OpensAt) {
		r.d.State = Open
		r.publishSnap()
		r.queue(&commitJob{state: r.stateOf(), events: []microdrop.Event{r.event(microdrop.DropOpened, now)}})
	}
	if len(r.pending) > 0 {
		r.decideBuckets(now, false)
		if r.d.State.Final() {
			return true
		}
	}
	if r.d.State == Open && !now.Before(r.d.ClosesAt) {
		if r.d.Grace > 0 && now.Before(r.d.EndsAt()) {
			r.d.State = Grace
			r.publishSnap()
			r.queue(&commitJob{state: r.stateOf(), events: []microdrop.Event{r.event(microdrop.DropClosed, now)}})
		}
	}
	if !now.Before(r.d.EndsAt()) {
		r.finish(now, "ended")
		return true
	}
	return false
}

func (r *runner) stateOf() *DropState {
	return &DropState{State: r.d.State, ClosesAt: r.d.ClosesAt, Grace: r.d.Grace, ClosedAt: r.d.ClosedAt, CloseReason: r.d.CloseReason}
}

func (r *runner) event(k microdrop.Kind, at time.Time) microdrop.Event {
	return microdrop.Event{Kind: k, Channel: r.d.Channel, DropID: r.d.ID, At: at, Drop: r.d.View()}
}

// finish makes the drop final: pending buckets are decided, a raffle is
// drawn, the seed is revealed.
func (r *runner) finish(now time.Time, reason string) {
	if r.d.State.Final() {
		return
	}
	if len(r.pending) > 0 {
		r.decideBuckets(now, true)
		if r.d.State.Final() {
			return
		}
	}
	job := &commitJob{final: true}
	if r.d.Policy == Raffle {
		r.draw(now, job)
	}
	if r.d.State.Final() { // the draw sold it out
		r.queue(job)
		return
	}
	r.d.State = Closed
	r.d.ClosedAt = now.UTC()
	r.d.CloseReason = reason
	r.publishSnap()
	job.state = r.stateOf()
	job.events = append(job.events, r.event(microdrop.DropClosed, now))
	r.queue(job)
}

func (r *runner) soldOut(now time.Time, job *commitJob) {
	r.d.State = SoldOut
	r.d.ClosedAt = now.UTC()
	r.d.CloseReason = "sold_out"
	job.state = r.stateOf()
	job.final = true
	job.events = append(job.events, r.event(microdrop.SoldOut, now))
	// Claims still waiting in a later bucket lose: nothing is left.
	for _, cr := range r.pending {
		job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")})
	}
	r.pending = r.pending[:0]
	r.waiting.Store(0)
	clear(r.queued)
}

// check applies the rules that do not depend on other claims: window,
// code, stage eligibility and the user's cap.
func (r *runner) check(cr *claimReq) error {
	d := r.d
	switch d.StateAt(cr.at) {
	case Scheduled:
		return reject(microdrop.ECONFLICT, ReasonNotOpen, "this drop has not opened yet")
	case Closed:
		return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
	case SoldOut:
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	}
	if d.ClaimCode != "" && NormalizeCode(cr.req.Code) != d.ClaimCode {
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
	held := r.units[cr.req.UserID] + r.queued[cr.req.UserID]
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
func (r *runner) decide(batch []*claimReq, now time.Time) {
	job := &commitJob{}
	for _, cr := range batch {
		cr.at = now
		if r.d.State.Final() {
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: r.finalReject()})
			continue
		}
		if err := r.check(cr); err != nil {
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: err})
			continue
		}
		r.seq++
		cr.seq = r.seq
		switch r.d.Policy {
		case FCFS:
			r.award(cr, now, job)
			if r.d.Remaining == 0 {
				r.soldOut(now, job)
			}
		case Bucketed:
			r.pending = append(r.pending, cr)
			r.waiting.Store(int64(len(r.pending)))
			r.queued[cr.req.UserID]++
		case Raffle:
			e := Entry{DropID: r.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: 1,
				Outcome: OutcomeEntered, ArrivedAt: now.UTC(), DecidedAt: now.UTC()}
			r.units[cr.req.UserID]++
			r.entries = append(r.entries, e)
			job.insert = append(job.insert, e)
			job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1,
				res: ClaimResult{DropID: r.d.ID, UserID: cr.req.UserID, Outcome: OutcomeEntered, Remaining: r.d.Remaining}})
		}
	}
	if job.wins > 0 || job.final {
		r.publishSnap()
	}
	r.queue(job)
}

func (r *runner) finalReject() error {
	if r.d.State == SoldOut {
		return reject(microdrop.ESOLDOUT, ReasonSoldOut, "sold out")
	}
	return reject(microdrop.ECONFLICT, ReasonClosed, "this drop has closed")
}

// award gives cr one unit. The caller has checked stock and cap.
func (r *runner) award(cr *claimReq, now time.Time, job *commitJob) {
	r.d.Remaining--
	r.units[cr.req.UserID]++
	unit := r.units[cr.req.UserID]
	e := Entry{DropID: r.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Unit: unit, Cap: cr.cap,
		Outcome: OutcomeWon, ArrivedAt: cr.at.UTC(), Bucket: r.bucketOf(cr.at), DecidedAt: now.UTC(),
		Token: r.s.signer.New(), ExpiresAt: now.Add(r.s.opts.TokenTTL).UTC()}
	job.wins++
	job.insert = append(job.insert, e)
	job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1, res: ClaimResult{
		DropID: r.d.ID, UserID: e.UserID, Outcome: OutcomeWon, Unit: unit, Token: e.Token, ExpiresAt: e.ExpiresAt, Remaining: r.d.Remaining}})
	job.events = append(job.events, microdrop.Event{Kind: microdrop.Claimed, Channel: r.d.Channel, DropID: r.d.ID, At: now,
		Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: OutcomeWon, Units: unit, Remaining: r.d.Remaining}})
}

// decideBuckets decides every pending bucket that has ended (all of them
// when flush is set). Inside a bucket, claims are ordered by shuffleKey.
func (r *runner) decideBuckets(now time.Time, flush bool) {
	job := &commitJob{}
	for len(r.pending) > 0 && !r.d.State.Final() {
		b := r.bucketOf(r.pending[0].at)
		if !flush && now.Before(r.bucketEnd(b)) {
			break
		}
		n := 0
		for n < len(r.pending) && r.bucketOf(r.pending[n].at) == b {
			n++
		}
		group := r.pending[:n]
		sort.Slice(group, func(i, j int) bool {
			return lessKey(shuffleKey(r.d.Seed, b, group[i].req.UserID, group[i].seq), shuffleKey(r.d.Seed, b, group[j].req.UserID, group[j].seq))
		})
		for _, cr := range group {
			r.queued[cr.req.UserID]--
			if r.queued[cr.req.UserID] == 0 {
				delete(r.queued, cr.req.UserID)
			}
			if r.d.Remaining > 0 {
				r.award(cr, now, job)
				continue
			}
			e := Entry{DropID: r.d.ID, Seq: cr.seq, UserID: cr.req.UserID, Login: cr.req.Login, Cap: cr.cap,
				Outcome: OutcomeLost, ArrivedAt: cr.at.UTC(), Bucket: b, DecidedAt: now.UTC()}
			job.insert = append(job.insert, e)
			job.replies = append(job.replies, pendingReply{cr: cr, entry: len(job.insert) - 1,
				err: reject(microdrop.ESOLDOUT, ReasonLostDraw, "sold out: this moment had more claims than stock and the draw went to others")})
		}
		r.pending = r.pending[n:]
		r.waiting.Store(int64(len(r.pending)))
		if r.d.Remaining == 0 {
			r.soldOut(now, job)
		}
	}
	if len(r.pending) == 0 {
		r.pending = r.pending[:0:0]
	}
	if len(job.insert) > 0 || job.final {
		r.publishSnap()
		r.queue(job)
	}
}

// draw picks raffle winners: entries ordered by shuffleKey, one unit each.
func (r *runner) draw(now time.Time, job *commitJob) {
	es := r.entries
	sort.Slice(es, func(i, j int) bool {
		return lessKey(shuffleKey(r.d.Seed, 0, es[i].UserID, es[i].Seq), shuffleKey(r.d.Seed, 0, es[j].UserID, es[j].Seq))
	})
	for i := range es {
		e := es[i]
		e.DecidedAt = now.UTC()
		if r.d.Remaining > 0 {
			r.d.Remaining--
			e.Outcome = OutcomeWon
			e.Unit = 1
			e.Token = r.s.signer.New()
			e.ExpiresAt = now.Add(r.s.opts.TokenTTL).UTC()
			job.wins++
			job.events = append(job.events, microdrop.Event{Kind: microdrop.Claimed, Channel: r.d.Channel, DropID: r.d.ID, At: now,
				Claim: &microdrop.ClaimView{UserID: e.UserID, Login: e.Login, Outcome: OutcomeWon, Units: 1, Remaining: r.d.Remaining}})
		} else {
			e.Outcome = OutcomeLost
		}
		job.update = append(job.update, e)
	}
	r.entries = nil
	if r.d.Remaining == 0 {
		r.d.State = SoldOut
		r.d.ClosedAt = now.UTC()
		r.d.CloseReason = "sold_out"
		r.publishSnap()
		job.state = r.stateOf()
		job.final = true
		job.events = append(job.events, r.event(microdrop.SoldOut, now))
	}
}

func (r *runner) control(c ctlReq) ctlReply {
	now := r.s.now()
	if r.d.State.Final() {
		return ctlReply{err: &microdrop.Error{Code: microdrop.ECONFLICT, Message: fmt.Sprintf("drop %s is already %s", r.d.ID, r.d.State)}}
	}
	switch c.op {
	case ctlClose:
		if r.d.StateAt(now) == Grace || r.d.Grace == 0 || r.d.State == Scheduled {
			r.finish(now, "closed by "+c.by)
		} else {
			r.d.ClosesAt = now.UTC()
			r.d.State = Grace
			r.publishSnap()
			r.queue(&commitJob{state: r.stateOf(), events: []microdrop.Event{r.event(microdrop.DropClosed, now)}})
		}
		r.s.log.Info("drop closed", "drop", r.d.ID, "by", c.by, "state", r.d.State)
	case ctlGrace:
		// Grace only grows: viewers told they have until close plus grace
		// keep it.
		if c.d <= r.d.Grace {
			return ctlReply{drop: r.d.Clone()}
		}
		r.d.Grace = min(c.d, MaxGrace)
		r.publishSnap()
		r.queue(&commitJob{state: r.stateOf(), events: []microdrop.Event{r.event(microdrop.DropExtended, now)}})
		r.s.log.Info("drop grace set from the measured cue-to-air delay", "drop", r.d.ID, "grace", r.d.Grace, "by", c.by)
	case ctlExtend:
		base := r.d.ClosesAt
		if base.Before(now) {
			base = now
		}
		closes := base.Add(c.d)
		if closes.Sub(r.d.OpensAt) > MaxDuration {
			return ctlReply{err: microdrop.Errorf(microdrop.EINVALID, "a drop lasts at most %s", MaxDuration)}
		}
		r.d.ClosesAt = closes.UTC()
		if r.d.State == Grace {
			r.d.State = Open
		}
		r.publishSnap()
		r.queue(&commitJob{state: r.stateOf(), events: []microdrop.Event{r.event(microdrop.DropExtended, now)}})
		r.s.log.Info("drop extended", "drop", r.d.ID, "by", c.by, "closes_at", r.d.ClosesAt)
	}
	return ctlReply{drop: r.d.Clone()}
}

// drain answers whatever is still queued once the drop is final.
func (r *runner) drain(reason string) {
	r.queue(r.refuseQueued(func() error { return r.finalReject() }))
	r.s.log.Debug("decider finished", "drop", r.id, "reason", reason)
}

// refuseQueued stops taking claims and answers every claim already queued
// or being queued, so no sender is left waiting.
func (r *runner) refuseQueued(why func() error) *commitJob {
	r.closing.Store(true)
	job := &commitJob{}
	for {
		select {
		case cr := <-r.in:
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: why()})
		default:
			if r.inflight.Load() == 0 && len(r.in) == 0 {
				return job
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// shutdown answers queued and bucket-pending claims with an error (they
// were never acknowledged) and lets the committer finish what it has.
func (r *runner) shutdown() {
	job := &commitJob{}
	busy := reject(microdrop.EINTERNAL, ReasonUnavailable, "the service is restarting; try again")
	for _, cr := range r.pending {
		job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: busy})
	}
	r.pending = nil
	rest := r.refuseQueued(func() error { return busy })
	job.replies = append(job.replies, rest.replies...)
	r.queue(job)
}

func (r *runner) queue(job *commitJob) {
	if len(job.replies) == 0 && len(job.insert) == 0 && len(job.update) == 0 && job.state == nil && len(job.events) == 0 {
		return
	}
	r.commits <- job
}

// reload rebuilds the decider's memory from the ledger after a failed commit.
func (r *runner) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := r.s.ledger.Drop(ctx, r.id)
	if err != nil {
		r.s.log.Error("reload drop after failed commit", "drop", r.id, "err", err)
		return
	}
	es, err := r.s.ledger.Entries(ctx, r.id)
	if err != nil {
		r.s.log.Error("reload entries after failed commit", "drop", r.id, "err", err)
		return
	}
	r.d.Remaining = d.Remaining
	r.load(es)
	r.publishSnap()
	r.s.log.Warn("decider reloaded from ledger", "drop", r.id, "remaining", d.Remaining)
}

// commitLoop writes jobs in order, merging whatever has queued into one
// batch, and only then replies and publishes.
func (r *runner) commitLoop() {
	var jobs []*commitJob
	for job := range r.commits {
		jobs = append(jobs[:0], job)
	more:
		for len(jobs) < 256 {
			select {
			case j, ok := <-r.commits:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		r.commit(jobs)
	}
}

func (r *runner) commit(jobs []*commitJob) {
	b := Batch{DropID: r.id}
	for _, j := range jobs {
		b.Wins += j.wins
		b.Insert = append(b.Insert, j.insert...)
		b.Update = append(b.Update, j.update...)
		if j.state != nil {
			b.State = j.state
		}
	}
	var err error
	if len(b.Insert) > 0 || len(b.Update) > 0 || b.State != nil {
		start := time.Now()
		for attempt := 0; ; attempt++ {
			err = r.s.ledger.Commit(context.Background(), b)
			if !errors.Is(err, ErrTokenCollision) || attempt == 3 {
				break
			}
			// Tokens are not yet known to anyone: draw new ones.
			r.retoken(jobs, &b)
		}
		r.s.metrics.observeCommit(len(b.Insert)+len(b.Update), time.Since(start), err)
	}
	if err != nil {
		r.s.log.Error("ledger commit failed; claims in it are refused", "drop", r.id, "entries", len(b.Insert), "err", err)
		select {
		case r.resync <- struct{}{}:
		default:
		}
	}
	for _, j := range jobs {
		for _, p := range j.replies {
			rep := claimReply{res: p.res, err: p.err}
			if err != nil && p.entry >= 0 {
				rep = claimReply{err: reject(microdrop.EINTERNAL, ReasonUnavailable, "your claim could not be recorded; try again")}
			}
			p.cr.reply <- rep
		}
		if err == nil {
			for _, e := range j.events {
				r.s.publish(e)
			}
		}
	}
}

func (r *runner) retoken(jobs []*commitJob, b *Batch) {
	b.Insert = b.Insert[:0]
	b.Update = b.Update[:0]
	for _, j := range jobs {
		for i := range j.insert {
			if j.insert[i].Token != "" {
				j.insert[i].Token = r.s.signer.New()
			}
		}
		for i := range j.update {
			if j.update[i].Token != "" {
				j.update[i].Token = r.s.signer.New()
			}
		}
		for k, p := range j.replies {
			if p.entry >= 0 && p.entry < len(j.insert) && p.res.Token != "" {
				j.replies[k].res.Token = j.insert[p.entry].Token
			}
		}
		b.Insert = append(b.Insert, j.insert...)
		b.Update = append(b.Update, j.update...)
	}
}
