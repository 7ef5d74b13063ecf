package remediate

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/health"
)

// metrics are the engine's counters plus a Collector over its state.
type metrics struct {
	e          *Engine
	skippedVec *prometheus.CounterVec
	skipped    map[string]prometheus.Counter // pre-fetched: a pass skips thousands
	commands   *prometheus.CounterVec
	verified   *prometheus.CounterVec

	stormDesc, exhaustedDesc, inFlightDesc, pausedDesc *prometheus.Desc
}

func newMetrics(e *Engine) *metrics {
	m := &metrics{
		e: e,
		skippedVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_remediation_skipped_total",
			Help: "Remediation decisions that sent nothing, by the first gate that refused (dry_run: would have sent).",
		}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_remediation_commands_total",
			Help: "sync-device commands sent by remediation, by fault and final result (send_failed: refused or outcome unknown; unknown: an undocumented command state until the timeout).",
		}, []string{"fault", "result"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_remediation_verified_total",
			Help: "Finished remediation commands checked on a later walk, by fault and whether the fault had cleared.",
		}, []string{"fault", "result"}),
		stormDesc: prometheus.NewDesc("fleetd_remediation_storm_active",
			"1 while a fault storm holds back remediation in this scope (fleet, or a location_id; a location series exists only while its storm lasts, including the hold-below period).",
			[]string{"scope"}, nil),
		exhaustedDesc: prometheus.NewDesc("fleetd_remediation_exhausted",
			"1 for a fault episode that used all remediation attempts and is still active: a human must look.",
			[]string{"device_id", "alias", "location_id", "fault"}, nil),
		inFlightDesc: prometheus.NewDesc("fleetd_remediation_in_flight",
			"Remediation commands in flight, including sends whose outcome is unknown.", nil, nil),
		pausedDesc: prometheus.NewDesc("fleetd_remediation_paused",
			"1 while remediation is paused by an operator.", nil, nil),
	}
	m.skipped = make(map[string]prometheus.Counter)
	for _, r := range SkipReasons() {
		m.skipped[r] = m.skippedVec.WithLabelValues(r)
	}
	for _, k := range health.DeviceFaultKinds() {
		if !k.RecoverableKind() {
			continue
		}
		for _, r := range []string{ResultSuccess, ResultError, ResultTimeout, ResultUnknown, ResultSendFailed} {
			m.commands.WithLabelValues(string(k), r)
		}
		for _, r := range []string{ResultFixed, ResultNotFixed} {
			m.verified.WithLabelValues(string(k), r)
		}
	}
	return m
}

func (m *metrics) skip(reason string) {
	if c, ok := m.skipped[reason]; ok {
		c.Inc()
		return
	}
	m.skippedVec.WithLabelValues(reason).Inc()
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.skippedVec, m.commands, m.verified, (*stateCollector)(m)} {
		if err := r.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remediate: register metrics: %w", err)
	}
	return nil
}

// stateCollector emits gauges over the engine's state as const metrics, so
// a storm or an exhausted episode that ends drops its series by itself.
type stateCollector metrics

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.stormDesc
	ch <- c.exhaustedDesc
	ch <- c.inFlightDesc
	ch <- c.pausedDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.stormDesc, prometheus.GaugeValue, float64(btoi(e.fleetStorm != nil)), fleetScope)
	for id := range e.storms {
		ch <- prometheus.MustNewConstMetric(c.stormDesc, prometheus.GaugeValue, 1, id)
	}
	for _, ep := range e.exhaustedLocked() {
		ch <- prometheus.MustNewConstMetric(c.exhaustedDesc, prometheus.GaugeValue, 1,
			ep.DeviceID, ep.Alias, ep.LocationID, string(ep.Fault))
	}
	ch <- prometheus.MustNewConstMetric(c.inFlightDesc, prometheus.GaugeValue, float64(len(e.inflight)))
	ch <- prometheus.MustNewConstMetric(c.pausedDesc, prometheus.GaugeValue, float64(btoi(e.pause.Paused)))
}

// exhaustedLocked returns the episodes that used every attempt and whose
// last attempt is neither in flight nor awaiting verification. An episode
// ends only on evidence, so its fault is active or its device unseen. It
// runs on every scrape under the mutex, so the commands are indexed by
// episode once per call (only when some episode is exhausted): linear in
// episodes plus commands, with no index kept in step by hand.
func (e *Engine) exhaustedLocked() []*episodeRecord {
	var out []*episodeRecord
	var pending map[faultKey]bool
	for k, ep := range e.episodes {
		if ep.Attempts < e.policy.MaxAttempts {
			continue
		}
		if pending == nil {
			pending = make(map[faultKey]bool, len(e.commands))
			for _, c := range e.commands {
				pending[faultKey{c.rec.DeviceID, c.rec.Fault}] = true
			}
		}
		if !pending[k] {
			out = append(out, ep)
		}
	}
	return out
}
