package claims

// Waiting is how many claims of a live bucketed drop wait for their
// bucket's draw (0 for other drops). Tests use it to know a bucket has
// filled before moving the clock past its end.
func (s *Service) Waiting(dropID string) int {
	if dc := s.deciders.get(dropID); dc != nil {
		return int(dc.waiting.Load())
	}
	return 0
}

// QueueClaim hands a claim straight to the drop's decider, so a test can
// have 100,000 claims waiting for a window without 100,000 goroutines. It
// skips only the rate limiter.
func (s *Service) QueueClaim(req ClaimRequest) QueuedClaim {
	dc := s.deciders.get(req.DropID)
	if dc == nil {
		panic("QueueClaim: no decider here for drop " + req.DropID)
	}
	cr := &claimReq{req: req, reply: make(chan claimReply, 1)}
	dc.in <- cr
	return QueuedClaim{cr.reply}
}

// QueuedClaim is where a queued claim's decision arrives.
type QueuedClaim struct{ c chan claimReply }

// Wait blocks until the decision is there.
func (q QueuedClaim) Wait() (ClaimResult, error) {
	r := <-q.c
	q.c <- r
	return r.res, r.err
}

// Decided reports whether the decision is there, without waiting.
func (q QueuedClaim) Decided() bool {
	select {
	case r := <-q.c:
		q.c <- r
		return true
	default:
		return false
	}
}
