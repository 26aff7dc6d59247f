package claims

import (
	"hash/maphash"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// userLimiter is a token bucket per (channel, user), kept in sharded LRUs so
// a flood of new accounts costs bounded memory and little lock contention.
type userLimiter struct {
	seed   maphash.Seed
	shards [16]limiterShard
	rate   rate.Limit
	burst  int
}

type limiterShard struct {
	mu    sync.Mutex
	cache *lru.Cache[string, *rate.Limiter]
}

func newUserLimiter(perSecond float64, burst, size int) *userLimiter {
	l := &userLimiter{seed: maphash.MakeSeed(), rate: rate.Limit(perSecond), burst: burst}
	for i := range l.shards {
		c, err := lru.New[string, *rate.Limiter](size / len(l.shards))
		if err != nil {
			panic(err) // only for a non-positive size
		}
		l.shards[i].cache = c
	}
	return l
}

// allow takes one attempt from the user's bucket at now (the Service's
// injected clock, so tests decide when buckets refill).
func (l *userLimiter) allow(channel, user string, now time.Time) bool {
	key := channel + "\x00" + user
	sh := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	sh.mu.Lock()
	lim, ok := sh.cache.Get(key)
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		sh.cache.Add(key, lim)
	}
	sh.mu.Unlock()
	return lim.AllowN(now, 1)
}
