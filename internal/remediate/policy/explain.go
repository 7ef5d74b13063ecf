package policy

import "slices"

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
