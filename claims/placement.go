package claims

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Placement is where a Service's drops are decided. Every live drop has
// exactly one decider; the placement says which process runs it and what
// happens to a claim or control for a drop that has no decider here. Local
// decides every drop in this process; Leased shares drops among replicas of
// one ledger by lease and forwards to the holder. cmd/microdrop picks one in
// its wiring; New uses Local when Deps names none.
//
// A Placement serves one Service. Its methods are unexported: the deciders
// it runs are the Service's own.
type Placement interface {
	// bind attaches the placement to the Service it serves.
	bind(s *Service) error
	// start resumes the drops decided here, as Service.Start.
	start(ctx context.Context) error
	// create records a new drop, decided here.
	create(ctx context.Context, d *Drop) error
	// live is the channel's live drop when it is decided elsewhere.
	live(channel string) (*Drop, bool)
	// claim answers a claim for a drop with no decider here.
	claim(ctx context.Context, req ClaimRequest) (ClaimResult, error)
	// control answers a control for a drop with no decider here.
	control(ctx context.Context, id string, op ctlOp, d time.Duration, by string) (*Drop, error)
	// stop ends the placement's own work before the deciders stop;
	// release hands their drops on once they have committed.
	stop()
	release(ids []string)
}

// Local decides every drop in this process: one machine, one ledger.
func Local() Placement { return &local{} }

type local struct{ s *Service }

func (p *local) bind(s *Service) error {
	if p.s != nil {
		return errors.New("claims: a placement serves one Service")
	}
	p.s = s
	return nil
}

func (p *local) start(ctx context.Context) error {
	drops, err := p.s.ledger.Drops(ctx, DropFilter{Live: true})
	if err != nil {
		return fmt.Errorf("claims: load live drops: %w", err)
	}
	for _, d := range drops {
		if err := p.s.resumeDrop(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (p *local) create(ctx context.Context, d *Drop) error { return p.s.ledger.CreateDrop(ctx, d) }

func (p *local) live(string) (*Drop, bool) { return nil, false }

func (p *local) claim(ctx context.Context, req ClaimRequest) (ClaimResult, error) {
	return ClaimResult{}, p.s.absent(ctx, req.DropID, nil)
}

func (p *local) control(ctx context.Context, id string, _ ctlOp, _ time.Duration, _ string) (*Drop, error) {
	return nil, p.s.controlAbsent(ctx, id)
}

func (p *local) stop()            {}
func (p *local) release([]string) {}
