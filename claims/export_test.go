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
