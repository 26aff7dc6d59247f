package twitch

import (
	"context"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nicklaw5/helix/v2"
)

// userCache answers "when was this account created" for progressive caps.
// Lookups are cached and batched: the first claims of a drop come in a
// flood, and Get Users takes 100 ids per call.
type userCache struct {
	c     *Client
	cache *lru.Cache[string, time.Time]
	reqs  chan userReq
}

type userReq struct {
	id    string
	reply chan time.Time
}

func newUserCache(c *Client, size int) *userCache {
	cache, _ := lru.New[string, time.Time](size)
	return &userCache{c: c, cache: cache, reqs: make(chan userReq, 1024)}
}

// created returns the account's creation time, or zero when unknown or
// when Twitch does not answer within half a second (the claim then goes
// ahead without it rather than waiting).
func (u *userCache) created(ctx context.Context, id string) time.Time {
	if t, ok := u.cache.Get(id); ok {
		return t
	}
	r := userReq{id: id, reply: make(chan time.Time, 1)}
	timeout := time.NewTimer(500 * time.Millisecond)
	defer timeout.Stop()
	select {
	case u.reqs <- r:
	case <-timeout.C:
		return time.Time{}
	case <-ctx.Done():
		return time.Time{}
	}
	select {
	case t := <-r.reply:
		return t
	case <-timeout.C:
		return time.Time{}
	case <-ctx.Done():
		return time.Time{}
	}
}

// run batches lookups: it waits up to 20 ms for up to 100 ids per call.
func (u *userCache) run(ctx context.Context) {
	for {
		var batch []userReq
		select {
		case <-ctx.Done():
			return
		case r := <-u.reqs:
			batch = append(batch, r)
		}
		window := time.NewTimer(20 * time.Millisecond)
	collect:
		for len(batch) < 100 {
			select {
			case r := <-u.reqs:
				batch = append(batch, r)
			case <-window.C:
				break collect
			case <-ctx.Done():
				window.Stop()
				return
			}
		}
		window.Stop()
		u.lookup(batch)
	}
}

func (u *userCache) lookup(batch []userReq) {
	ids := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.id] {
			seen[r.id] = true
			ids = append(ids, r.id)
		}
	}
	found := make(map[string]time.Time, len(ids))
	var resp *helix.UsersResponse
	err := u.c.call(func(api *helix.Client) (err error) {
		resp, err = api.GetUsers(&helix.UsersParams{IDs: ids})
		return err
	})
	switch {
	case err != nil:
		u.c.log.Warn("get users", "err", err)
	case resp.StatusCode != http.StatusOK:
		u.c.log.Warn("get users", "status", resp.StatusCode, "err", resp.ErrorMessage)
	default:
		for _, usr := range resp.Data.Users {
			found[usr.ID] = usr.CreatedAt.Time
			u.cache.Add(usr.ID, usr.CreatedAt.Time)
		}
	}
	for _, r := range batch {
		r.reply <- found[r.id]
	}
}
