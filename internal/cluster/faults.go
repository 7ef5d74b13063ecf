package cluster

import (
	"context"
	"fmt"
)

// Count is a number of devices and how many of them are faulty.
type Count struct {
	Devices, Faulty int
}

// FleetCounts publishes the counts of the locations this replica walked,
// summed per slot and only for the slots it holds, and returns the sum over
// every slot of the fleet — what the fleet-wide storm brake measures when
// the fleet is split among replicas. A slot held but without an Up location
// in counts publishes zeros: its locations were not measured, and the last
// counts of a slot's previous holder must not linger.
func (m *Membership) FleetCounts(ctx context.Context, counts map[string]Count) (Count, error) {
	m.mu.Lock()
	held := make(map[int]*Count, len(m.held))
	for slot := range m.held {
		if slot != CopriSlot {
			held[slot] = &Count{}
		}
	}
	m.mu.Unlock()
	for loc, c := range counts {
		if s := held[SlotOf(loc, m.cfg.Slots)]; s != nil {
			s.Devices += c.Devices
			s.Faulty += c.Faulty
		}
	}
	slots := make([]int32, 0, len(held))
	devices := make([]int32, 0, len(held))
	faulty := make([]int32, 0, len(held))
	for slot, c := range held {
		slots, devices, faulty = append(slots, int32(slot)), append(devices, int32(c.Devices)), append(faulty, int32(c.Faulty))
	}
	var total Count
	err := m.pool.QueryRow(ctx, `WITH up AS (
			INSERT INTO cluster_slot_faults (slot, devices, faulty, replica, updated_at)
			SELECT unnest($1::int[]), unnest($2::int[]), unnest($3::int[]), $4, now()
			ON CONFLICT (slot) DO UPDATE SET devices = EXCLUDED.devices, faulty = EXCLUDED.faulty,
				replica = EXCLUDED.replica, updated_at = EXCLUDED.updated_at
			RETURNING slot, devices, faulty)
		SELECT coalesce(sum(devices), 0), coalesce(sum(faulty), 0) FROM (
			SELECT slot, devices, faulty FROM up
			UNION ALL
			SELECT slot, devices, faulty FROM cluster_slot_faults
			WHERE slot >= 0 AND slot < $5 AND slot <> ALL($1::int[])) AS s`,
		slots, devices, faulty, m.cfg.ReplicaID, m.cfg.Slots).Scan(&total.Devices, &total.Faulty)
	if err != nil {
		return Count{}, fmt.Errorf("cluster: publish fault counts: %w", err)
	}
	return total, nil
}
