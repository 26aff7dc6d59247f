package claims

import (
	"net/http"
	"strconv"

	"github.com/microdrop/microdrop"
)

// Admin listings are paged so one answer stays small however big the drop.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 5000
)

// pageOf reads ?offset= and ?limit= (defaults 0 and DefaultPageSize).
func pageOf(r *http.Request) (offset, limit int, err error) {
	q := r.URL.Query()
	limit = DefaultPageSize
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > MaxPageSize {
			return 0, 0, microdrop.Errorf(microdrop.EINVALID, "limit must be a whole number from 1 to %d", MaxPageSize)
		}
	}
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			return 0, 0, microdrop.Errorf(microdrop.EINVALID, "offset must be a whole number, 0 or more")
		}
	}
	return offset, limit, nil
}

// window cuts [offset, offset+limit) out of n items and says where the next
// page starts (-1 when this is the last).
func window(n, offset, limit int) (lo, hi, next int) {
	lo, hi, next = min(offset, n), min(offset+limit, n), -1
	if hi < n {
		next = hi
	}
	return lo, hi, next
}
