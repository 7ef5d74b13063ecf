package policy

import "time"

// Evidence is what one walk proves about a device and one of its faults.
type Evidence int

const (
	// EvidenceNone: nothing — the location is down, its list partial, or
	// the device was missing from a list that may be incomplete.
	EvidenceNone Evidence = iota
	// EvidenceFaulty: the fault is active on an up location.
	EvidenceFaulty
	// EvidenceHealthy: the device is in its location's list without the
	// fault.
	EvidenceHealthy
	// EvidenceAbsent: the device is missing from a complete list of its
	// location, or the location is gone from a successful walk.
	EvidenceAbsent
)

// Episode is what evidence moves in a fault episode, as a value: an episode
// ends only on evidence (DESIGN.md, "Fault episodes end only on
// evidence"), never because a list glitched, fleetd restarted or the
// config was reloaded.
type Episode struct {
	// AbsentSince is when the device was first missing from a complete
	// list since it was last seen with the fault; zero while seen.
	AbsentSince time.Time
}

// EpisodeEvent is the transition a Step made.
type EpisodeEvent int

const (
	EpisodeUnchanged EpisodeEvent = iota
	// EpisodeMoved: AbsentSince was set or cleared; persist it, so that
	// neither a restart nor a glitch restarts the forget_after clock.
	EpisodeMoved
	// EpisodeCured: the device was observed without the fault.
	EpisodeCured
	// EpisodeForgotten: the device was absent from complete lists for
	// forget_after.
	EpisodeForgotten
)

// Step advances the episode by one walk's evidence at now.
func (ep Episode) Step(ev Evidence, now time.Time, forgetAfter time.Duration) (Episode, EpisodeEvent) {
	switch ev {
	case EvidenceFaulty:
		if !ep.AbsentSince.IsZero() {
			return Episode{}, EpisodeMoved
		}
	case EvidenceHealthy:
		return Episode{}, EpisodeCured
	case EvidenceAbsent:
		switch {
		case ep.AbsentSince.IsZero():
			return Episode{AbsentSince: now}, EpisodeMoved
		case now.Sub(ep.AbsentSince) >= forgetAfter:
			return Episode{}, EpisodeForgotten
		}
	}
	return ep, EpisodeUnchanged
}
