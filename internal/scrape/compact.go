package scrape

import (
	"slices"
	"strings"
	"sync"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// compactor trims decoded devices to what fleetd reads before they enter a
// snapshot. A 100,000-device snapshot of full vendor records is ~220 MB, and
// during a walk the previous snapshot is alive beside the new one; most of it
// is each device's commands map of full URLs, which fleetd never follows (it
// posts to /devices/{id}/commands). Deprecated fields are never used for a
// decision (NOTES.md), and settings and user (with the user's access_key) are
// not fleetd's business, so they are dropped too.
//
// Devices offering the same commands share one map, and repeated enum values
// share one string. Snapshots are immutable, so sharing is safe. Workers
// compact right after decoding, so a walk never holds the full records of
// every location at once.
type compactor struct {
	mu          sync.Mutex
	commandSets map[string]map[string]string
	strs        map[string]string
}

func newCompactor() *compactor {
	return &compactor{commandSets: map[string]map[string]string{}, strs: map[string]string{}}
}

func (c *compactor) intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := c.strs[s]; ok {
		return v
	}
	if len(c.strs) > 4096 { // a hostile API must not grow this without bound
		return s
	}
	c.strs[s] = s
	return s
}

// commands returns a shared map with d's command names and empty values.
func (c *compactor) commands(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	key := strings.Join(names, "\x00")
	if shared, ok := c.commandSets[key]; ok {
		return shared
	}
	shared := make(map[string]string, len(names))
	for _, n := range names {
		shared[c.intern(n)] = ""
	}
	if len(c.commandSets) < 4096 {
		c.commandSets[key] = shared
	}
	return shared
}

// devices returns compact copies of devs in a new slice.
func (c *compactor) devices(devs []bikeep.Device) []bikeep.Device {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]bikeep.Device, len(devs))
	for i := range devs {
		d := &devs[i]
		o := &out[i]
		o.ID, o.Alias, o.Code, o.HardwareID, o.Comment = d.ID, d.Alias, d.Code, d.HardwareID, d.Comment
		o.Type = bikeep.DeviceType(c.intern(string(d.Type)))
		o.SleepState = bikeep.SleepState(c.intern(string(d.SleepState)))
		o.LockState = bikeep.LockState(c.intern(string(d.LockState)))
		o.HardwareState = bikeep.HardwareState(c.intern(string(d.HardwareState)))
		o.PowerSaveStrategy = bikeep.PowerSaveStrategy(c.intern(string(d.PowerSaveStrategy)))
		o.HasOTPSupport, o.HasAccessLists, o.HasSubscription = d.HasOTPSupport, d.HasAccessLists, d.HasSubscription
		o.HasAllowlist, o.HasCamera = d.HasAllowlist, d.HasCamera
		o.Commands = c.commands(d.Commands)
		o.Tags = d.Tags
		if d.State != nil {
			st := *d.State
			st.Value = bikeep.StateValue(c.intern(string(st.Value)))
			o.State = &st
		}
		if d.HeartbeatV2 != nil {
			o.HeartbeatV2 = &bikeep.HeartbeatV2{
				Health:    bikeep.Health(c.intern(string(d.HeartbeatV2.Health))),
				DeadSince: d.HeartbeatV2.DeadSince,
			}
		}
		if d.Location != nil {
			o.Location = &bikeep.Ref{ID: c.intern(d.Location.ID)}
		}
	}
	return out
}
