package remediate

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
)

// A fault episode is identified by (device, fault) alone: a restart, a
// list glitch or a reload gives the fault a new first-seen time, and none
// of them may hand the device a fresh set of attempts. It ends only on
// evidence (DESIGN.md, "Fault episodes end only on evidence"): the device
// observed without the fault, or absent from complete lists for
// remediation.forget_after.

// defaultForgetAfter applies when the policy leaves forget_after zero (a
// policy built in code; config validation requires it positive).
const defaultForgetAfter = 24 * time.Hour

func (e *Engine) forgetAfter() time.Duration {
	if e.policy.ForgetAfter > 0 {
		return e.policy.ForgetAfter
	}
	return defaultForgetAfter
}

// evidenceLocked says what the latest walk proves about a device and one
// of its faults.
func (e *Engine) evidenceLocked(snap *scrape.Snapshot, k faultKey, locationID string) policy.Evidence {
	if e.active[k] != nil {
		return policy.EvidenceFaulty
	}
	loc := findLocation(snap, locationID)
	switch {
	case loc == nil && e.owns != nil:
		// With replicas a location is missing from the snapshot when this
		// replica did not own it at the walk (it may have just gained it):
		// that says nothing about the location.
		return policy.EvidenceNone
	case loc == nil:
		if src, ok := snap.Source(scrape.SourceBikeep); ok && src.Up {
			return policy.EvidenceAbsent
		}
		return policy.EvidenceNone
	case !loc.Complete():
		// Down, or a partial list: DESIGN.md lets only a complete list end
		// an episode, whether the device shows in it or not.
		return policy.EvidenceNone
	case findDevice(loc, k.DeviceID) != nil:
		return policy.EvidenceHealthy
	}
	return policy.EvidenceAbsent
}

// endEpisodesLocked ends the episodes the latest walk proves over and keeps
// each episode's absent-since time (persisted, so that neither a restart nor
// a glitch restarts the forget_after clock).
func (e *Engine) endEpisodesLocked(ctx context.Context, now time.Time, snap *scrape.Snapshot, ops []store.Op) []store.Op {
	for k, ep := range e.episodes {
		next, ev := policy.Episode{AbsentSince: ep.AbsentSince}.Step(e.evidenceLocked(snap, k, ep.LocationID), now, e.forgetAfter())
		switch ev {
		case policy.EpisodeMoved:
			ep.AbsentSince = next.AbsentSince
			ops = append(ops, store.PutEpisode(*ep))
		case policy.EpisodeCured:
			ops = e.endEpisodeLocked(ctx, k, ep, "observed without the fault", ops)
		case policy.EpisodeForgotten:
			ops = e.endEpisodeLocked(ctx, k, ep, "absent from complete lists for forget_after", ops)
		}
	}
	return ops
}

func (e *Engine) endEpisodeLocked(ctx context.Context, k faultKey, ep *episodeRecord, why string, ops []store.Op) []store.Op {
	delete(e.episodes, k)
	e.log.LogAttrs(ctx, slog.LevelInfo, "remediation fault episode ended",
		slog.String("device_id", ep.DeviceID), slog.String("alias", ep.Alias),
		slog.String("location_id", ep.LocationID), slog.String("fault", string(ep.Fault)),
		slog.Int("attempts", ep.Attempts), slog.String("why", why))
	return append(ops, store.DeleteEpisode(ep.Key()))
}

// dropUnverifiableLocked gives up verifying a finished command whose device
// has been missing from complete lists since forget_after after the command
// ended; until then it waits for the device to be seen.
func (e *Engine) dropUnverifiableLocked(ctx context.Context, key string, c *command, loc *scrape.LocationStatus, ops []store.Op) []store.Op {
	if !loc.Complete() || e.now().Sub(c.rec.EndedAt) < e.forgetAfter() {
		return ops
	}
	delete(e.commands, key)
	e.log.LogAttrs(ctx, slog.LevelInfo, "remediation command not verified: device absent from its location's lists", commandAttrs(&c.rec)...)
	return append(ops, store.DeleteCommand(key))
}

// indexEpisodes keys the ledger's episodes by (device, fault). A ledger
// written while episodes were also keyed by first-seen time may hold several
// for one pair; they are one episode, so their attempts add up (never fewer
// than were sent) under the earliest record, and the ops delete the others.
func indexEpisodes(recs []episodeRecord) (map[faultKey]*episodeRecord, []store.Op) {
	slices.SortStableFunc(recs, func(a, b episodeRecord) int { return a.FirstSeen.Compare(b.FirstSeen) })
	out := make(map[faultKey]*episodeRecord, len(recs))
	var ops []store.Op
	for i := range recs {
		r := &recs[i]
		k := faultKey{r.DeviceID, r.Fault}
		base := out[k]
		if base == nil {
			out[k] = r
			continue
		}
		base.Attempts += r.Attempts
		if r.LastAttempt.After(base.LastAttempt) {
			base.LastAttempt, base.Alias, base.LocationID = r.LastAttempt, r.Alias, r.LocationID
		}
		switch {
		case r.AbsentSince.IsZero() || base.AbsentSince.IsZero():
			base.AbsentSince = time.Time{} // seen with the fault: not absent
		case r.AbsentSince.After(base.AbsentSince):
			base.AbsentSince = r.AbsentSince // the shorter absence: forgotten later
		}
		ops = append(ops, store.DeleteEpisode(r.Key()), store.PutEpisode(*base))
	}
	return out, ops
}
