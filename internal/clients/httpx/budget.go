package httpx

import (
	"sync"
	"time"
)

// Retry budget defaults: over any BudgetWindow, retries may add at most
// BudgetRatio of the requests, or BudgetFloor retries when that is more (so
// that a quiet client can still ride out one flaky answer).
const (
	BudgetRatio  = 0.1
	BudgetFloor  = 3
	BudgetWindow = 10 * time.Second
	budgetSlots  = 10
)

// Budget bounds retries as a share of requests over a sliding window, so a
// failing vendor sees at most (1+ratio)× the normal request rate instead of
// attempts× per request. Safe for concurrent use.
type Budget struct {
	ratio float64
	floor int
	slot  time.Duration
	now   func() time.Time

	mu    sync.Mutex
	slots [budgetSlots]budgetSlot
}

type budgetSlot struct {
	epoch             int64 // which slot-length interval this counts
	requests, retries int
}

// NewBudget returns a budget of ratio × requests (at least floor retries)
// over window; now may be nil for the wall clock.
func NewBudget(ratio float64, floor int, window time.Duration, now func() time.Time) *Budget {
	if now == nil {
		now = time.Now
	}
	return &Budget{ratio: ratio, floor: floor, slot: max(window/budgetSlots, time.Millisecond), now: now}
}

// current returns the slot of now, reset if it last counted an older interval.
func (b *Budget) current() (*budgetSlot, int64) {
	epoch := b.now().UnixNano() / int64(b.slot)
	s := &b.slots[epoch%budgetSlots]
	if s.epoch != epoch {
		*s = budgetSlot{epoch: epoch}
	}
	return s, epoch
}

// Request counts one request (its first attempt).
func (b *Budget) Request() {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, _ := b.current()
	s.requests++
}

// Retry reports whether one more retry fits the budget, and if so spends it.
func (b *Budget) Retry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, epoch := b.current()
	var requests, retries int
	for i := range b.slots {
		if o := &b.slots[i]; epoch-o.epoch < budgetSlots {
			requests += o.requests
			retries += o.retries
		}
	}
	allowed := max(b.floor, int(b.ratio*float64(requests)))
	if retries >= allowed {
		return false
	}
	s.retries++
	return true
}
