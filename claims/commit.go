package claims

import (
	"context"
	"errors"
	"time"

	"github.com/microdrop/microdrop"
)

// commitJob is one round of decisions: what to write, and who to tell once
// it is written.
type commitJob struct {
	wins    int
	insert  []Entry
	update  []Entry
	holds   []Hold
	state   *DropState
	replies []pendingReply
	events  []microdrop.Event
	final   bool
	queued  time.Time // wall time: the round's commit deadline runs from here
}

type pendingReply struct {
	cr    *claimReq
	entry int // index into insert (or update for raffle draws), -1 for none
	res   ClaimResult
	err   error
}

// maxFinalRetryBackoff caps the wait between tries to record a drop's
// final state while the ledger is down.
const maxFinalRetryBackoff = 10 * time.Second

// drain answers whatever is still queued once the drop is final.
func (dc *decider) drain(reason string) {
	dc.queue(dc.refuseQueued(func() error { return dc.finalReject() }))
	dc.s.log.Debug("decider finished", "drop", dc.id, "reason", reason)
}

// refuseQueued stops taking claims and answers every claim already queued
// or being queued, so no sender is left waiting. Senders blocked on a full
// queue hold the gate shared; draining the queue lets them finish, after
// which the gate is ours and no new sender gets past closing.
func (dc *decider) refuseQueued(why func() error) *commitJob {
	job := &commitJob{}
	shut := make(chan struct{})
	go func() {
		dc.gate.Lock()
		dc.closing = true
		dc.gate.Unlock()
		close(shut)
	}()
	for {
		select {
		case cr := <-dc.in:
			job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: why()})
		case <-shut:
			for {
				select {
				case cr := <-dc.in:
					job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: why()})
				default:
					return job
				}
			}
		}
	}
}

// shutdown answers queued and bucket-pending claims with an error (they
// were never acknowledged) and lets the committer finish what it has.
func (dc *decider) shutdown() {
	job := &commitJob{}
	busy := reject(microdrop.EINTERNAL, ReasonUnavailable, "the service is restarting; try again")
	for _, cr := range dc.pending {
		job.replies = append(job.replies, pendingReply{cr: cr, entry: -1, err: busy})
	}
	for _, wc := range dc.window {
		job.replies = append(job.replies, pendingReply{cr: wc.cr, entry: -1, err: busy})
	}
	dc.pending = nil
	dc.window = nil
	rest := dc.refuseQueued(func() error { return busy })
	job.replies = append(job.replies, rest.replies...)
	dc.queue(job)
}

func (dc *decider) queue(job *commitJob) {
	if len(job.replies) == 0 && len(job.insert) == 0 && len(job.update) == 0 && job.state == nil && len(job.events) == 0 && !job.final {
		return
	}
	job.queued = time.Now()
	dc.commits <- job
}

// reload rebuilds the decider's memory from the ledger after a failed commit.
func (dc *decider) reload() {
	ctx, cancel := context.WithTimeout(context.Background(), dc.s.opts.CommitTimeout)
	defer cancel()
	d, err := dc.s.ledger.Drop(ctx, dc.id)
	if err != nil {
		dc.s.log.Error("reload drop after failed commit", "drop", dc.id, "err", err)
		return
	}
	es, err := dc.s.ledger.Entries(ctx, dc.id)
	if err != nil {
		dc.s.log.Error("reload entries after failed commit", "drop", dc.id, "err", err)
		return
	}
	dc.d.Remaining = d.Remaining
	dc.load(es)
	dc.publishSnap()
	dc.s.log.Warn("decider reloaded from ledger", "drop", dc.id, "remaining", d.Remaining)
}

// commitLoop writes jobs in order, merging whatever has queued into one
// batch, and only then replies and publishes. With an AsyncLedger the next
// batch is queued while the one before it is still syncing; a second
// goroutine waits for each in order and answers its claims, so replies and
// events keep the order of the rounds.
func (dc *decider) commitLoop() {
	async, _ := dc.s.ledger.(AsyncLedger)
	var inflight chan *inflightBatch
	answered := make(chan struct{})
	if async != nil {
		// Unbuffered: one batch is queued to the ledger while the one
		// before it syncs; rounds decided meanwhile merge into the next, so
		// batches grow with the load rather than splitting.
		inflight = make(chan *inflightBatch)
		go func() {
			defer close(answered)
			for f := range inflight {
				dc.answer(f)
			}
		}()
	} else {
		close(answered)
	}
	defer func() {
		if inflight != nil {
			close(inflight)
		}
		<-answered
	}()
	var jobs []*commitJob
	for job := range dc.commits {
		jobs = append(jobs[:0:0], job)
	more:
		for len(jobs) < 256 {
			select {
			case j, ok := <-dc.commits:
				if !ok {
					break more
				}
				jobs = append(jobs, j)
			default:
				break more
			}
		}
		f := dc.start(jobs, async)
		if async == nil {
			dc.answer(f)
			continue
		}
		inflight <- f
		if f.barrier != nil {
			// A round that changes the drop's state (or makes it final) is
			// waited for before the next: a retry after a token collision
			// must not land after a later round.
			<-f.barrier
		}
	}
}

// inflightBatch is one merged batch queued to the ledger.
type inflightBatch struct {
	jobs    []*commitJob
	b       Batch
	final   bool
	write   bool // the batch writes to the ledger
	ctx     context.Context
	cancel  context.CancelFunc
	start   time.Time
	wait    func() error
	barrier chan struct{} // closed once answered, for state changes
}

// start merges jobs into one batch and queues it to the ledger.
func (dc *decider) start(jobs []*commitJob, async AsyncLedger) *inflightBatch {
	f := &inflightBatch{jobs: jobs, b: Batch{DropID: dc.id}}
	b := &f.b
	oldest := jobs[0].queued
	for _, j := range jobs {
		b.Wins += j.wins
		b.Insert = append(b.Insert, j.insert...)
		b.Update = append(b.Update, j.update...)
		b.Holds = append(b.Holds, j.holds...)
		if j.state != nil {
			b.State = j.state
		}
		f.final = f.final || j.final
		if j.queued.Before(oldest) {
			oldest = j.queued
		}
	}
	f.write = len(b.Insert) > 0 || len(b.Update) > 0 || b.State != nil
	if b.State != nil || f.final {
		f.barrier = make(chan struct{})
	}
	if !f.write {
		return f
	}
	f.ctx, f.cancel = context.WithDeadline(context.Background(), oldest.Add(dc.s.opts.CommitTimeout))
	f.start = time.Now()
	if async != nil {
		f.wait = async.CommitAsync(f.ctx, *b)
	} else {
		f.wait = func() error { return dc.s.ledger.Commit(f.ctx, f.b) }
	}
	return f
}

// answer waits for one batch's commit within the commit timeout, counted
// from when its oldest round was decided, so a stalled ledger fails every
// claim within the bound instead of pinning its caller; then it replies and
// publishes.
func (dc *decider) answer(f *inflightBatch) {
	if f.barrier != nil {
		defer close(f.barrier)
	}
	jobs, b, final := f.jobs, &f.b, f.final
	var err error
	if f.write {
		err = f.wait()
		for attempt := 0; errors.Is(err, ErrTokenCollision) && attempt < 3; attempt++ {
			// Tokens are not yet known to anyone: draw new ones.
			dc.retoken(jobs, b)
			err = dc.s.ledger.Commit(f.ctx, *b)
		}
		f.cancel()
		timedOut := errors.Is(err, context.DeadlineExceeded)
		dc.s.metrics.observeCommit(len(b.Insert)+len(b.Update), time.Since(f.start), err, timedOut)
		if err != nil {
			dc.s.health.fail(dc.id, timedOut)
		} else {
			dc.s.health.ok(dc.id)
		}
	}
	if err != nil {
		dc.s.log.Error("ledger commit failed; claims in it are refused", "drop", dc.id, "entries", len(b.Insert), "final", final, "err", err)
		select {
		case dc.resync <- struct{}{}:
		default:
		}
	}
	if err == nil && len(b.Holds) > 0 {
		dc.s.holds.track(b.Holds...)
	}
	failed := reject(microdrop.EINTERNAL, ReasonUnavailable, "your claim could not be recorded; try again")
	if errors.Is(err, context.DeadlineExceeded) {
		failed = reject(microdrop.EINTERNAL, ReasonUnavailable, "the ledger did not answer in time; your claim was not recorded, try again")
	}
	for _, j := range jobs {
		for _, p := range j.replies {
			rep := claimReply{res: p.res, err: p.err}
			if err != nil && p.entry >= 0 {
				rep = claimReply{err: failed}
			}
			p.cr.reply <- rep
		}
		if err == nil {
			for _, e := range j.events {
				dc.s.publish(e)
			}
		}
	}
	if final {
		select {
		case dc.finalDone <- err:
		default:
		}
	}
}

func (dc *decider) retoken(jobs []*commitJob, b *Batch) {
	b.Insert = b.Insert[:0]
	b.Update = b.Update[:0]
	for _, j := range jobs {
		for i := range j.insert {
			if j.insert[i].Token != "" {
				j.insert[i].Token = dc.s.signer.New()
			}
		}
		for i := range j.update {
			if j.update[i].Token != "" {
				j.update[i].Token = dc.s.signer.New()
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
