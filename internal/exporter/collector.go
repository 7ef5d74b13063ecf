// Package exporter turns fleetd's state into Prometheus metrics: a Collector
// that emits the fleet and source metrics of the catalog as const metrics from
// the latest immutable scrape.Snapshot, and the instrumentation of the vendor
// API clients.
package exporter

import (
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/scrape"
)

// SnapshotSource yields the latest snapshot; scrape.Scraper implements it.
type SnapshotSource interface {
	Snapshot() *scrape.Snapshot
}

const cached = " Cached: the value is from the last walk, not fetched at scrape time."

// Label value used where the vendor sent nothing (heartbeat_v2 null, empty state).
const none = "none"

var (
	descDevices = prometheus.NewDesc("fleet_devices",
		"Devices by location, type, heartbeat_v2 health and hardware state (present combinations only)."+cached,
		[]string{"location_id", "device_type", "health", "hardware_state"}, nil)
	descFaults = prometheus.NewDesc("fleet_device_faults",
		"Devices with an active fault of that kind, per location; every fault kind is present, zeros included."+cached,
		[]string{"location_id", "fault"}, nil)
	descFaultSince = prometheus.NewDesc("fleet_device_fault_since_timestamp_seconds",
		"One series per active device fault: Unix time the fault started."+cached,
		[]string{"device_id", "alias", "location_id", "device_type", "fault", "recoverable"}, nil)
	descLocationUp = prometheus.NewDesc("fleet_location_up",
		"1 if the last walk of this location succeeded, 0 otherwise."+cached,
		[]string{"location_id"}, nil)
	descLocationPartial = prometheus.NewDesc("fleet_location_partial",
		"1 if the last walk of this location read its device list only in part: some entries could not be decoded, "+
			"and devices missing from the list keep their last known state and faults."+cached,
		[]string{"location_id"}, nil)
	descLocationUndecodable = prometheus.NewDesc("fleetd_location_undecodable_devices_total",
		"Device list entries of this location that could not be decoded, summed over its walks since fleetd started.",
		[]string{"location_id"}, nil)
	descLocationLastSuccess = prometheus.NewDesc("fleet_location_last_success_timestamp_seconds",
		"Unix time of the last successful walk of this location."+cached,
		[]string{"location_id"}, nil)
	descLocationInfo = prometheus.NewDesc("fleet_location_info",
		"Discovered location: name and type as labels, value 1."+cached,
		[]string{"location_id", "name", "location_type"}, nil)
	descDeviceInfo = prometheus.NewDesc("fleet_device_info",
		"Device identity, value 1 (only with metrics.per_device)."+cached,
		[]string{"device_id", "alias", "code", "location_id", "device_type", "power_save_strategy"}, nil)
	descDeviceHealth = prometheus.NewDesc("fleet_device_health",
		"Device heartbeat_v2 health as a state set, 1 for the current value (only with metrics.per_device)."+cached,
		[]string{"device_id", "health"}, nil)
	descRentals = prometheus.NewDesc("copri_rentals",
		"Open COPRI rentals by state and lock state."+cached,
		[]string{"operator", "state", "lock_state"}, nil)
	descRentalFaultSince = prometheus.NewDesc("copri_rental_fault_since_timestamp_seconds",
		"One series per faulty COPRI rental or bike: Unix time the fault started."+cached,
		[]string{"operator", "bike", "station", "fault"}, nil)
	descBikes = prometheus.NewDesc("copri_bikes",
		"COPRI bikes from bikes_all by station, state and lock state."+cached,
		[]string{"operator", "station", "state", "lock_state"}, nil)
	descSourceUp = prometheus.NewDesc("fleetd_source_up",
		"1 if the last walk of the source succeeded.",
		[]string{"source"}, nil)
	descSourceLastSuccess = prometheus.NewDesc("fleetd_source_last_success_timestamp_seconds",
		"Unix time of the last successful walk of the source.",
		[]string{"source"}, nil)
	descSourceDuration = prometheus.NewDesc("fleetd_source_walk_duration_seconds",
		"Wall time of the last walk of the source.",
		[]string{"source"}, nil)
	descSourceWalks = prometheus.NewDesc("fleetd_source_walks_total",
		"Walks of the source since fleetd started.",
		[]string{"source"}, nil)
	descSourceFailures = prometheus.NewDesc("fleetd_source_walk_failures_total",
		"Failed walks of the source since fleetd started.",
		[]string{"source"}, nil)
)

// Collector emits the fleet metrics from the latest snapshot. It builds them
// on every Collect; the daemon's Handler gathers it once per snapshot.
type Collector struct {
	src       SnapshotSource
	perDevice bool
}

// NewCollector returns a Collector over src. perDevice adds fleet_device_info
// and fleet_device_health for every device (one series or more per device).
func NewCollector(src SnapshotSource, perDevice bool) *Collector {
	return &Collector{src: src, perDevice: perDevice}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDevices, descFaults, descFaultSince, descLocationUp,
		descLocationPartial, descLocationUndecodable, descLocationLastSuccess, descLocationInfo, descDeviceInfo, descDeviceHealth, descRentals,
		descRentalFaultSince, descBikes, descSourceUp, descSourceLastSuccess, descSourceDuration,
		descSourceWalks, descSourceFailures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range build(c.src.Snapshot(), c.perDevice) {
		ch <- m
	}
}

func labelOr(v string) string {
	if v == "" {
		return none
	}
	return v
}

type deviceCombo struct {
	typ    bikeep.DeviceType
	health bikeep.Health
	hw     bikeep.HardwareState
}

// build returns the metrics of one snapshot.
func build(snap *scrape.Snapshot, perDevice bool) []prometheus.Metric {
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...))
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...))
	}

	for _, src := range snap.Sources {
		counter(descSourceWalks, float64(src.Walks), src.Name)
		counter(descSourceFailures, float64(src.Failures), src.Name)
		if !src.Walked {
			continue
		}
		gauge(descSourceUp, b2f(src.Up), src.Name)
		gauge(descSourceDuration, src.LastDuration.Seconds(), src.Name)
		if !src.LastSuccess.IsZero() {
			gauge(descSourceLastSuccess, unix(src.LastSuccess), src.Name)
		}
	}

	kinds := health.DeviceFaultKinds()
	faultCounts := map[string]map[health.FaultKind]int{}
	for _, f := range snap.Faults {
		m := faultCounts[f.LocationID]
		if m == nil {
			m = map[health.FaultKind]int{}
			faultCounts[f.LocationID] = m
		}
		m[f.Kind]++
		gauge(descFaultSince, unix(f.Since), f.DeviceID, f.Alias, f.LocationID, string(f.DeviceType),
			string(f.Kind), strconv.FormatBool(f.Recoverable))
	}

	combos := map[deviceCombo]int{}
	for i := range snap.Locations {
		l := &snap.Locations[i]
		if l.LastError != "" || !l.LastSuccess.IsZero() {
			gauge(descLocationUp, b2f(l.Up), l.ID)
			gauge(descLocationPartial, b2f(l.Up && l.Undecodable > 0), l.ID)
			counter(descLocationUndecodable, float64(l.UndecodableTotal), l.ID)
		}
		if !l.LastSuccess.IsZero() {
			gauge(descLocationLastSuccess, unix(l.LastSuccess), l.ID)
		}
		if l.Name != "" || l.Type != "" {
			gauge(descLocationInfo, 1, l.ID, l.Name, string(l.Type))
		}
		if l.Devices == nil {
			continue
		}
		for _, k := range kinds {
			gauge(descFaults, float64(faultCounts[l.ID][k]), l.ID, string(k))
		}
		clear(combos)
		// Carried devices are reported with their last known record: a
		// partial list must not make devices vanish from the counts.
		for _, devs := range [][]record.Device{l.Devices, l.Carried} {
			for j := range devs {
				d := &devs[j]
				combos[deviceCombo{bikeep.DeviceType(d.TypeName()), bikeep.Health(d.HealthName()), bikeep.HardwareState(d.HardwareStateName())}]++
				if perDevice {
					gauge(descDeviceInfo, 1, d.ID, d.Alias, d.Code, l.ID, d.TypeName(), d.PowerSaveName())
					out = appendHealthSet(out, d)
				}
			}
		}
		for _, cb := range sortedCombos(combos) {
			gauge(descDevices, float64(combos[cb]), l.ID, labelOr(string(cb.typ)), labelOr(string(cb.health)), labelOr(string(cb.hw)))
		}
	}

	for _, op := range snap.Operators {
		type rk struct{ state, lock string }
		rentals := map[rk]int{}
		for _, r := range op.Rentals {
			rentals[rk{string(r.State), string(r.LockState)}]++
		}
		for k, n := range rentals {
			gauge(descRentals, float64(n), op.Name, labelOr(k.state), labelOr(k.lock))
		}
		type bk struct{ station, state, lock string }
		bikes := map[bk]int{}
		for _, b := range op.Bikes {
			bikes[bk{b.Station, string(b.State), string(b.LockState)}]++
		}
		for k, n := range bikes {
			gauge(descBikes, float64(n), op.Name, labelOr(k.station), labelOr(k.state), labelOr(k.lock))
		}
	}
	for _, f := range snap.RentalFaults {
		gauge(descRentalFaultSince, unix(f.Since), f.Operator, f.Bike, f.Station, string(f.Kind))
	}
	return out
}

// appendHealthSet emits the state set of a device's health: every documented
// value (0/1) plus the device's own value when it is undocumented.
func appendHealthSet(out []prometheus.Metric, d *record.Device) []prometheus.Metric {
	h := bikeep.Health(d.HealthName())
	for _, v := range []bikeep.Health{bikeep.HealthHealthy, bikeep.HealthUnhealthy, bikeep.HealthDead, bikeep.HealthLongDead} {
		out = append(out, prometheus.MustNewConstMetric(descDeviceHealth, prometheus.GaugeValue, b2f(h == v), d.ID, string(v)))
	}
	if h != "" && !h.Known() {
		out = append(out, prometheus.MustNewConstMetric(descDeviceHealth, prometheus.GaugeValue, 1, d.ID, string(h)))
	}
	return out
}

func sortedCombos(m map[deviceCombo]int) []deviceCombo {
	keys := make([]deviceCombo, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.typ != b.typ {
			return a.typ < b.typ
		}
		if a.health != b.health {
			return a.health < b.health
		}
		return a.hw < b.hw
	})
	return keys
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
