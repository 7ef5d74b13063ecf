package policy

import (
	"slices"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

// Explanation says what would happen to a fault, and why: the verdict and
// every gate that refuses it, not only the first, so a caller that asks a
// narrower question ("would anything but the state of the engine stop
// this?") reads the answer from the same table the engine decides by.
type Explanation struct {
	Verdict
	// Refusals are the reasons of every gate that refuses, in gate order.
	Refusals []string
}

// Explain evaluates every gate for in.
func (t Table) Explain(in *Input) Explanation {
	x := Explanation{Verdict: t.Decide(in)}
	for i := range t {
		if c := t[i].Check; c != nil && c(in) {
			x.Refusals = append(x.Refusals, t[i].Reason)
		}
	}
	return x
}

// Refuses reports whether the gate of reason refuses.
func (x Explanation) Refuses(reason string) bool { return slices.Contains(x.Refusals, reason) }

// Explain says what the rules alone make of fault f on dev (nil when the
// device is not in the snapshot) at now, as an engine with no history
// would decide it on a walk: not paused, no storm, nothing in flight or
// remembered, a full token bucket. `fleetd once` asks it why a fault needs
// a human; the engine decides by the same table with its state filled in.
func Explain(r *Rules, f *health.Fault, dev *record.Device, now time.Time) Explanation {
	in := Input{Rules: r, Now: now, Source: SourceWalk, Kind: f.Kind, LocationID: f.LocationID,
		Fault: f, Device: dev, Blackout: r.BlackoutAt(now), Tokens: 1}
	return NewTable().Explain(&in)
}
