package status

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/scrape"
)

// ResolvedFor is how long a fault that left the snapshot stays on the page,
// with how it ended: a fault cured within one walk would otherwise vanish
// before anyone sees it.
const ResolvedFor = time.Hour

// Command results as the engine reports them on its decisions.
const (
	resultSuccess    = "success"
	resultError      = "error"
	resultTimeout    = "timeout"
	resultSendFailed = "send_failed"
)

// Verdicts of a finished command, judged as the engine judges them: by the
// first walk after the command ended.
const (
	verdictFixed    = "fixed"
	verdictNotFixed = "not fixed"
)

type faultKey struct {
	device string
	kind   health.FaultKind
}

// command is one sync-device of a fault episode as the page shows it.
type command struct {
	Attempt    int
	PowerCycle bool
	Sent       time.Time
	ID         string
	// Result is the engine's command result ("" while in flight).
	Result string
	// Verdict is "fixed" or "not fixed" once a walk after the result has
	// judged it; "" before that, and for a send that created no command.
	Verdict string
	// resultSeen is when the page first saw Result (at or after the
	// command ended).
	resultSeen time.Time
}

func (c *command) ended() bool {
	return c.Result == resultSuccess || c.Result == resultError || c.Result == resultTimeout
}

// tracked is what the page remembers of one active fault episode.
type tracked struct {
	fault        health.Fault
	locationName string
	commands     []command
	// last is the engine's newest decision for this fault; haveLast is
	// false before the first.
	last     Decision
	haveLast bool
}

// resolved is a fault episode that left the snapshot, kept for ResolvedFor.
type resolved struct {
	Fault        health.Fault
	LocationName string
	Ended        time.Time
	// How says how it ended, in words.
	How string
	// Cleared is true when a fresh, complete walk saw the device without
	// the fault; false when fleetd lost sight of it (absence is not health).
	Cleared  bool
	Commands []command
}

// memory is the status page's recollection across snapshots: the commands
// and last decision of every active fault, and the faults that ended within
// the last hour. The engine keeps only its last 100 changed decisions and
// forgets an episode when it ends; the page needs both a little longer.
// Bounded: active entries follow the snapshot's faults, resolved ones are
// dropped after ResolvedFor and capped at MaxRows.
type memory struct {
	mu       sync.Mutex
	lastSnap *scrape.Snapshot
	active   map[faultKey]*tracked
	resolved []resolved // newest first
	// lastSend is the last command sent to each device (any fault), for
	// "cooldown until".
	lastSend map[string]time.Time
}

func newMemory() *memory {
	return &memory{active: map[faultKey]*tracked{}, lastSend: map[string]time.Time{}}
}

// sync brings the memory up to date with snap and rem: a snapshot not seen
// before is observed as a new walk; the decisions are merged every time, so
// command results show as soon as the engine has them.
func (m *memory) sync(snap *scrape.Snapshot, rem *Remediation, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if snap != nil && snap != m.lastSnap {
		m.observeLocked(snap, rem, now)
		return
	}
	m.mergeLocked(rem, now)
}

func (m *memory) observeLocked(snap *scrape.Snapshot, rem *Remediation, now time.Time) {
	m.lastSnap = snap
	names := make(map[string]string, len(snap.Locations))
	for i := range snap.Locations {
		names[snap.Locations[i].ID] = snap.Locations[i].Name
	}
	seen := make(map[faultKey]bool, len(snap.Faults))
	for _, f := range snap.Faults {
		k := faultKey{f.DeviceID, f.Kind}
		seen[k] = true
		t := m.active[k]
		if t != nil && !t.fault.FirstSeen.Equal(f.FirstSeen) {
			// A new episode of the same kind: the old one ended between
			// two walks.
			m.endLocked(t, snap.Taken, "cleared, then came back as a new episode", true)
			t = nil
		}
		if t == nil {
			t = &tracked{}
			m.active[k] = t
		}
		t.fault, t.locationName = f, names[f.LocationID]
	}
	m.mergeLocked(rem, now)

	for k, t := range m.active {
		loc := findLocation(snap, t.fault.LocationID)
		if !seen[k] {
			how, cleared := ending(snap, loc, t)
			m.endLocked(t, snap.Taken, how, cleared)
			delete(m.active, k)
			continue
		}
		if loc == nil || !loc.Up {
			continue // last good data, not a new observation: judges nothing
		}
		for i := range t.commands {
			c := &t.commands[i]
			switch {
			case c.Verdict != "" || !c.ended():
			case i < len(t.commands)-1:
				// The engine sent again: the fault outlived this command.
				c.Verdict = verdictNotFixed
			case !c.resultSeen.IsZero() && walkStart(snap, loc).After(c.resultSeen):
				// Still faulty on a walk that started after the command
				// ended: the engine's own rule.
				c.Verdict = verdictNotFixed
			}
		}
	}

	cutoff := now.Add(-ResolvedFor)
	m.resolved = slices.DeleteFunc(m.resolved, func(r resolved) bool { return r.Ended.Before(cutoff) })
	if len(m.resolved) > MaxRows {
		m.resolved = m.resolved[:MaxRows]
	}
	keep := ResolvedFor
	if rem != nil {
		keep = max(keep, rem.Cooldown)
	}
	for id, t := range m.lastSend {
		if now.Sub(t) > keep {
			delete(m.lastSend, id)
		}
	}
}

// ending says how a fault that left the snapshot ended, and whether that is
// a cure seen by a complete walk or only a loss of sight.
func ending(snap *scrape.Snapshot, loc *scrape.LocationStatus, t *tracked) (string, bool) {
	switch {
	case loc == nil:
		return "lost sight: the location is no longer listed", false
	case loc.Stale:
		return "lost sight: the location stopped answering (data stale)", false
	case !loc.Up:
		return "lost sight: the location is down", false
	}
	if _, ok := snap.Device(loc.ID, t.fault.DeviceID); !ok {
		return "lost sight: the device is no longer in its location's list", false
	}
	if n := len(t.commands); n > 0 {
		c := &t.commands[n-1]
		switch {
		case c.ended():
			c.Verdict = verdictFixed
			return "cleared after command #" + strconv.Itoa(c.Attempt) + " — fixed", true
		case c.Result == "":
			return "cleared while command #" + strconv.Itoa(c.Attempt) + " was running", true
		}
	}
	return "cleared by itself", true
}

func (m *memory) endLocked(t *tracked, at time.Time, how string, cleared bool) {
	r := resolved{Fault: t.fault, LocationName: t.locationName, Ended: at, How: how, Cleared: cleared,
		Commands: slices.Clone(t.commands)}
	m.resolved = slices.Insert(m.resolved, 0, r)
}

// mergeLocked folds the engine's recent decisions into the active faults:
// the newest decision per fault, and every command sent with its result.
func (m *memory) mergeLocked(rem *Remediation, now time.Time) {
	if rem == nil {
		return
	}
	// Decisions come newest first; oldest first makes "last" the newest.
	for i := len(rem.Decisions) - 1; i >= 0; i-- {
		d := rem.Decisions[i]
		if d.Outcome == "sent" {
			if d.Time.After(m.lastSend[d.DeviceID]) {
				m.lastSend[d.DeviceID] = d.Time
			}
		}
		t := m.active[faultKey{d.DeviceID, health.FaultKind(d.Fault)}]
		if t == nil || d.Time.Before(t.fault.FirstSeen) {
			continue // not about the current episode
		}
		// A refused Alertmanager request (trigger internal, or about a
		// device seen elsewhere) says nothing about the fault's state.
		aboutRequest := d.Reason == "trigger" || d.Reason == "not_active"
		if !aboutRequest && (!t.haveLast || !d.Time.Before(t.last.Time)) {
			t.last, t.haveLast = d, true
		}
		if d.Outcome != "sent" {
			continue
		}
		j := slices.IndexFunc(t.commands, func(c command) bool { return c.Attempt == d.Attempt })
		if j < 0 {
			t.commands = append(t.commands, command{Attempt: d.Attempt, PowerCycle: d.PowerCycle, Sent: d.Time})
			slices.SortFunc(t.commands, func(a, b command) int { return cmp.Compare(a.Attempt, b.Attempt) })
			j = slices.IndexFunc(t.commands, func(c command) bool { return c.Attempt == d.Attempt })
		}
		c := &t.commands[j]
		if d.CommandID != "" {
			c.ID = d.CommandID
		}
		switch d.Result {
		case "":
		case "fixed", "not_fixed":
			// A verification result, should the engine report one on the
			// decision: it is the verdict itself.
			c.Verdict = strings.ReplaceAll(d.Result, "_", " ")
			if c.Result == "" {
				c.Result = resultSuccess
			}
		default:
			if c.Result == "" {
				c.Result, c.resultSeen = d.Result, now
			}
		}
	}
}

// read calls fn with the memory held still: the page reads what it needs
// under the lock instead of copying every tracked fault per render. fn must
// not keep the maps or the tracked values' slices.
func (m *memory) read(fn func(active map[faultKey]*tracked, resolved []resolved, lastSend map[string]time.Time)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m.active, m.resolved, m.lastSend)
}

// walkStart is when the walk that last succeeded for loc started: the
// locations of one walk are fetched together, so it is the location's last
// success minus the device walk's duration.
func walkStart(snap *scrape.Snapshot, loc *scrape.LocationStatus) time.Time {
	if src, ok := snap.Source(scrape.SourceBikeep); ok {
		return loc.LastSuccess.Add(-src.LastDuration)
	}
	return loc.LastSuccess
}

func findLocation(snap *scrape.Snapshot, id string) *scrape.LocationStatus {
	i, ok := slices.BinarySearchFunc(snap.Locations, id, func(l scrape.LocationStatus, id string) int {
		return cmp.Compare(l.ID, id)
	})
	if !ok {
		return nil
	}
	return &snap.Locations[i]
}
