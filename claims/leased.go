package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/microdrop/microdrop"
)

// The Leased placement (scale-out): several replicas share one ledger and
// one bus. Each live drop still has exactly one decider, on the replica
// holding the drop's lease in the ledger; the other replicas forward claims and controls for it over the
// bus and take the lease over when its holder is gone. Deciding in one place
// keeps bucketed and raffle results the same as on a single node; the ledger
// fences every commit with the lease, so a replica that lost its lease (a
// frozen process, a broken connection) cannot write.

// DropLeases is implemented by a ledger that several replicas share
// (claims/postgres). A Service with the Leased placement decides only the
// drops it holds the lease of.
type DropLeases interface {
	// ReplicaID names this replica; leases are held under it.
	ReplicaID() string
	// LeaseTTL is how long a lease lasts without renewal.
	LeaseTTL() time.Duration
	// CreateLeasedDrop records a new drop with this replica as its decider.
	// It refuses (microdrop.ECONFLICT) when the channel already has a live drop on
	// any replica.
	CreateLeasedDrop(ctx context.Context, d *Drop) error
	// DropOwner returns the drop and the replica holding its lease ("" for
	// none). microdrop.ENOTFOUND when the drop is unknown.
	DropOwner(ctx context.Context, dropID string) (owner string, d *Drop, err error)
	// AcquireLease makes this replica the decider of a live drop when
	// nobody holds it, its lease has lapsed or its holder's session is gone.
	// It reports whether this replica now holds it.
	AcquireLease(ctx context.Context, dropID string) (bool, error)
	// RenewLeases extends this replica's leases and returns those it still holds.
	RenewLeases(ctx context.Context, dropIDs []string) ([]string, error)
	// OrphanedDrops lists live drops whose decider is gone.
	OrphanedDrops(ctx context.Context) ([]string, error)
	// ReleaseLeases lets other replicas take these drops at once.
	ReleaseLeases(ctx context.Context, dropIDs []string) error
}

// Forwarder carries a request to one replica by its id and brings back the
// answer (claims/nats implements it on the bus).
type Forwarder interface {
	// ServeReplica answers requests addressed to replica id until stop.
	ServeReplica(id string, handle func(ctx context.Context, req []byte) []byte) (stop func(), err error)
	// ForwardReplica sends req to replica id. ErrReplicaUnreachable when
	// nobody answers to that id.
	ForwardReplica(ctx context.Context, id string, req []byte) ([]byte, error)
}

var (
	// ErrLeaseLost is returned by a ledger's Commit when another replica
	// holds the drop's lease: this replica must stop deciding it.
	ErrLeaseLost = errors.New("ledger: drop is decided by another replica")
	// ErrReplicaUnreachable is returned by a Forwarder when no replica
	// answers to the id.
	ErrReplicaUnreachable = errors.New("replica unreachable")
)

// forwardTimeout bounds one forwarded request beyond the bucket it may wait for.
const forwardTimeout = 5 * time.Second

// leased is the Leased placement: this Service's view of the other replicas.
type leased struct {
	s      *Service
	leases DropLeases
	fwd    Forwarder // nil: claims for drops decided elsewhere are refused
	id     string
	log    *slog.Logger

	mu        sync.Mutex
	owners    map[string]string        // drop -> replica, a cache refreshed on any miss
	waits     map[string]time.Duration // drop -> longest a claim may wait for its bucket
	liveCache map[string]liveEntry

	stopServe func()
	quit      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	started   bool
}

type liveEntry struct {
	d  *Drop
	at time.Time
}

// Leased shares drops among replicas of one ledger: each drop is decided
// by the replica holding its lease in leases (claims/postgres), and claims
// and controls for it travel to that replica through fwd (claims/nats).
// With fwd nil, claims for drops decided by other replicas are refused.
func Leased(leases DropLeases, fwd Forwarder) Placement {
	return &leased{leases: leases, fwd: fwd, id: leases.ReplicaID(),
		owners: map[string]string{}, waits: map[string]time.Duration{}, liveCache: map[string]liveEntry{},
		quit: make(chan struct{}), done: make(chan struct{})}
}

func (rs *leased) bind(s *Service) error {
	if rs.s != nil {
		return errors.New("claims: a placement serves one Service")
	}
	rs.s = s
	rs.log = s.log.With("replica", rs.id)
	return nil
}

func (rs *leased) create(ctx context.Context, d *Drop) error {
	return rs.leases.CreateLeasedDrop(ctx, d)
}

// start answers forwarded requests, takes over orphaned drops and keeps
// the leases of the drops decided here.
func (rs *leased) start(ctx context.Context) error {
	if rs.fwd != nil {
		stop, err := rs.fwd.ServeReplica(rs.id, rs.serve)
		if err != nil {
			return fmt.Errorf("claims: serve forwarded claims: %w", err)
		}
		rs.stopServe = stop
	} else {
		rs.log.Warn("ledger is shared but the bus cannot forward claims: claims for drops decided by other replicas are refused; use --bus nats://...")
	}
	rs.adopt(ctx)
	rs.started = true
	go rs.loop()
	return nil
}

func (rs *leased) loop() {
	defer close(rs.done)
	t := time.NewTicker(rs.leases.LeaseTTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-rs.quit:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), rs.leases.LeaseTTL())
		rs.renew(ctx)
		rs.adopt(ctx)
		cancel()
	}
}

// renew keeps our leases; a drop whose lease went to another replica stops
// deciding here (its commits are refused by the ledger anyway).
func (rs *leased) renew(ctx context.Context) {
	ids := rs.s.deciders.ids()
	if len(ids) == 0 {
		return
	}
	held, err := rs.leases.RenewLeases(ctx, ids)
	if err != nil {
		rs.log.Warn("renew drop leases", "err", err)
		return
	}
	keep := make(map[string]bool, len(held))
	for _, id := range held {
		keep[id] = true
	}
	for _, id := range ids {
		if keep[id] {
			continue
		}
		// Only stop a decider whose lease is really someone else's.
		owner, _, err := rs.leases.DropOwner(ctx, id)
		if err != nil || owner == rs.id || owner == "" {
			continue
		}
		if dc := rs.s.deciders.get(id); dc != nil {
			rs.log.Warn("lost the lease of a drop; another replica decides it now", "drop", id, "owner", owner)
			go dc.stop()
		}
	}
}

// adopt takes over live drops whose decider is gone.
func (rs *leased) adopt(ctx context.Context) {
	ids, err := rs.leases.OrphanedDrops(ctx)
	if err != nil {
		rs.log.Warn("look for orphaned drops", "err", err)
		return
	}
	for _, id := range ids {
		if _, err := rs.takeOver(ctx, id); err != nil {
			rs.log.Warn("take over drop", "drop", id, "err", err)
		}
	}
}

// takeOver acquires the drop's lease and resumes its decider from the
// ledger. It reports whether the drop is now decided here.
func (rs *leased) takeOver(ctx context.Context, id string) (bool, error) {
	if rs.s.deciders.get(id) != nil {
		return true, nil
	}
	ok, err := rs.leases.AcquireLease(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	rs.setOwner(id, rs.id)
	if err := rs.s.resume(ctx, id); err != nil {
		return false, err
	}
	return rs.s.deciders.get(id) != nil, nil
}

func (rs *leased) stop() {
	rs.stopOnce.Do(func() {
		close(rs.quit)
		if rs.started {
			<-rs.done
		}
	})
}

// release hands the drops decided here to the other replicas at once, after
// their deciders have committed what they had.
func (rs *leased) release(ids []string) {
	if rs.stopServe != nil {
		rs.stopServe()
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rs.leases.ReleaseLeases(ctx, ids); err != nil {
		rs.log.Warn("release drop leases", "err", err)
	}
}

func (rs *leased) setOwner(id, owner string) {
	rs.mu.Lock()
	if owner == "" {
		delete(rs.owners, id)
	} else {
		rs.owners[id] = owner
	}
	rs.mu.Unlock()
}

// owner returns who decides a drop: the cache, else the ledger. A final
// drop is remembered as ended so later claims are answered here.
func (rs *leased) owner(ctx context.Context, id string, fresh bool) (string, error) {
	if !fresh {
		rs.mu.Lock()
		o, ok := rs.owners[id]
		rs.mu.Unlock()
		if ok {
			return o, nil
		}
	}
	o, d, err := rs.leases.DropOwner(ctx, id)
	if err != nil {
		return "", err
	}
	if d.State.Final() {
		rs.s.rememberEnded(d)
		rs.setOwner(id, "")
		return "", nil
	}
	rs.mu.Lock()
	if len(rs.waits) > 4096 { // old drops: forget them, the ledger still knows
		clear(rs.waits)
		clear(rs.owners)
	}
	if d.Policy == Bucketed {
		rs.waits[id] = d.BucketWidth
	} else {
		rs.waits[id] = 0
	}
	rs.mu.Unlock()
	rs.setOwner(id, o)
	return o, nil
}

// live is the channel's live drop on any replica, cached briefly: chat
// asks for it on every message.
func (rs *leased) live(channel string) (*Drop, bool) {
	now := rs.s.now()
	rs.mu.Lock()
	e, ok := rs.liveCache[channel]
	rs.mu.Unlock()
	if ok && now.Sub(e.at) < 250*time.Millisecond {
		return e.d, e.d != nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ds, err := rs.s.ledger.Drops(ctx, DropFilter{Channel: channel, Live: true, Limit: 1})
	if err != nil {
		rs.log.Warn("look up live drop", "channel", channel, "err", err)
		return nil, false
	}
	var d *Drop
	if len(ds) > 0 {
		d = ds[0]
	}
	rs.mu.Lock()
	if len(rs.liveCache) > 4096 {
		clear(rs.liveCache)
	}
	rs.liveCache[channel] = liveEntry{d: d, at: now}
	rs.mu.Unlock()
	return d, d != nil
}

// wireRequest is a claim or control sent to a drop's decider.
type wireRequest struct {
	Op     string        `json:"op"` // claim, control
	Ctl    ctlOp         `json:"ctl,omitempty"`
	DropID string        `json:"drop_id"`
	Claim  *ClaimRequest `json:"claim,omitempty"`
	By     string        `json:"by,omitempty"`
	D      time.Duration `json:"d,omitempty"`
}

type wireError struct {
	Code    string `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

type wireReply struct {
	NotHere bool         `json:"not_here,omitempty"`
	Result  *ClaimResult `json:"result,omitempty"`
	Drop    *Drop        `json:"drop,omitempty"`
	Seed    []byte       `json:"seed,omitempty"`
	Err     *wireError   `json:"err,omitempty"`
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	var me *microdrop.Error
	if errors.As(err, &me) && me.Code != "" {
		// Ours, e.g. a claim still being recorded when the forwarded wait
		// ended: its message says what the caller should do.
		return &wireError{Code: me.Code, Reason: me.Reason, Message: microdrop.ErrorMessage(err)}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return &wireError{Code: microdrop.EINTERNAL, Reason: ReasonUnavailable, Message: "the decider did not answer in time; try again"}
	}
	return &wireError{Code: microdrop.ErrorCode(err), Reason: microdrop.ErrorReason(err), Message: microdrop.ErrorMessage(err)}
}

func (w *wireError) err() error {
	if w == nil {
		return nil
	}
	return &microdrop.Error{Code: w.Code, Reason: w.Reason, Message: w.Message}
}

// serve decides a request forwarded by another replica, or says the drop is
// not decided here.
func (rs *leased) serve(ctx context.Context, raw []byte) []byte {
	var req wireRequest
	var rep wireReply
	if err := json.Unmarshal(raw, &req); err != nil {
		rep.Err = toWire(microdrop.Errorf(microdrop.EINVALID, "malformed forwarded request"))
	} else if rs.s.deciders.get(req.DropID) == nil {
		rep.NotHere = true
	} else {
		switch req.Op {
		case "claim":
			if req.Claim == nil {
				rep.Err = toWire(microdrop.Errorf(microdrop.EINVALID, "malformed forwarded request"))
				break
			}
			res, err := rs.s.claimHere(ctx, *req.Claim, errMoving)
			if err == nil {
				rep.Result = &res
			}
			rep.Err = toWire(err)
		case "control":
			d, err := rs.s.controlHere(ctx, req.DropID, req.Ctl, req.D, req.By)
			if d != nil {
				rep.Drop, rep.Seed = d, d.Seed
			}
			rep.Err = toWire(err)
		default:
			rep.Err = toWire(microdrop.Errorf(microdrop.EINVALID, "unknown forwarded op %q", req.Op))
		}
	}
	out, _ := json.Marshal(rep)
	return out
}

// forward sends a request to the drop's decider, taking the drop over when
// its decider is gone. done is false when the drop turned out to be decided
// here (or final): the caller then decides or refuses it locally.
func (rs *leased) forward(ctx context.Context, req wireRequest) (rep wireReply, done bool, err error) {
	if _, ok := rs.s.ended.Peek(req.DropID); ok {
		return rep, false, nil // final: answered here
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return rep, true, err
	}
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 25 * time.Millisecond):
			case <-ctx.Done():
				return rep, true, ctx.Err()
			}
		}
		owner, err := rs.owner(ctx, req.DropID, attempt > 0)
		if err != nil {
			if microdrop.ErrorCode(err) == microdrop.ENOTFOUND {
				return rep, false, nil
			}
			return rep, true, fmt.Errorf("claims: find the drop's decider: %w", err)
		}
		if owner == "" || owner == rs.id {
			// Final, never leased, or ours but not running: take it (a
			// no-op on a final drop) and answer locally.
			if _, err := rs.takeOver(ctx, req.DropID); err != nil {
				rs.log.Warn("take over drop", "drop", req.DropID, "err", err)
			}
			if rs.s.deciders.get(req.DropID) != nil || owner == "" {
				return rep, false, nil
			}
			continue
		}
		if rs.fwd == nil {
			return rep, true, microdrop.Errorf(microdrop.EINTERNAL, "this drop is decided by another replica and no bus connects them")
		}
		fctx, cancel := context.WithTimeout(ctx, forwardTimeout+rs.bucketWidth(req.DropID))
		out, err := rs.fwd.ForwardReplica(fctx, owner, raw)
		cancel()
		if err != nil {
			rs.setOwner(req.DropID, "")
			// Its decider may be gone: take over when the ledger says so.
			if ok, terr := rs.takeOver(ctx, req.DropID); terr == nil && ok {
				rs.log.Info("took over drop from an unreachable replica", "drop", req.DropID, "from", owner)
				return rep, false, nil
			}
			if !errors.Is(err, ErrReplicaUnreachable) {
				// It may have decided: do not ask again on the caller's behalf.
				rs.log.Warn("forwarded request failed", "drop", req.DropID, "owner", owner, "err", err)
				return rep, true, errMoving
			}
			continue
		}
		rep = wireReply{}
		if err := json.Unmarshal(out, &rep); err != nil {
			return rep, true, fmt.Errorf("claims: malformed forwarded reply: %w", err)
		}
		if rep.NotHere {
			rs.setOwner(req.DropID, "")
			continue
		}
		return rep, true, nil
	}
	return rep, true, errMoving
}

func (rs *leased) bucketWidth(id string) time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if w, ok := rs.waits[id]; ok {
		return w
	}
	return 10 * time.Second // the widest bucket a drop may have
}

// errMoving answers a claim for a live drop whose decider could not be
// reached: it is being taken over.
var errMoving = reject(microdrop.EINTERNAL, ReasonUnavailable, "the drop's decider is moving to another replica; try again")

// claim decides a claim for a drop that has no decider here.
func (rs *leased) claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	rep, done, err := rs.forward(ctx, wireRequest{Op: "claim", DropID: req.DropID, Claim: &req})
	switch {
	case !done:
		return rs.s.claimHere(ctx, req, errMoving)
	case err != nil:
		return ClaimResult{}, err
	case rep.Err != nil:
		return ClaimResult{}, rep.Err.err()
	case rep.Result == nil:
		return ClaimResult{}, microdrop.Errorf(microdrop.EINTERNAL, "empty forwarded reply")
	}
	return *rep.Result, nil
}

// control closes, extends or otherwise controls a drop decided by
// another replica (every ctlOp travels as is).
func (rs *leased) control(ctx context.Context, id string, op ctlOp, d time.Duration, by string) (*Drop, error) {
	rep, done, err := rs.forward(ctx, wireRequest{Op: "control", Ctl: op, DropID: id, By: by, D: d})
	switch {
	case !done:
		return rs.s.controlHere(ctx, id, op, d, by)
	case err != nil:
		return nil, err
	case rep.Err != nil:
		return nil, rep.Err.err()
	case rep.Drop == nil:
		return nil, microdrop.Errorf(microdrop.EINTERNAL, "empty forwarded reply")
	}
	rep.Drop.Seed = rep.Seed
	return rep.Drop, nil
}
