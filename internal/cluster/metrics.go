package cluster

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	slots         prometheus.Gauge
	held          prometheus.Gauge
	replicas      prometheus.Gauge
	epoch         *prometheus.GaugeVec
	renewFailures prometheus.Counter
	degraded      prometheus.Gauge
}

func newMetrics(slots int) *metrics {
	m := &metrics{
		slots: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetd_cluster_slots",
			Help: "Location slots configured (cluster.slots); every replica reports the same value."}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetd_cluster_slots_held",
			Help: "Location slots this replica holds a lease on (the COPRI slot not counted)."}),
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetd_cluster_replicas",
			Help: "Live replicas seen in the database at the last renewal."}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetd_cluster_epoch",
			Help: "Fencing epoch of each slot this replica holds (slot -1 is the COPRI slot)."}, []string{"slot"}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetd_cluster_lease_renew_failures_total",
			Help: "Lease renewals that failed; remediation stops until the next one succeeds."}),
		degraded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetd_cluster_degraded",
			Help: "1 while the last lease renewal failed: monitoring of held slots goes on, remediation is stopped."}),
	}
	m.slots.Set(float64(slots))
	m.degraded.Set(1) // until the first renewal succeeds
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.slots, m.held, m.replicas, m.epoch, m.renewFailures, m.degraded} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}

func (m *metrics) set(held map[int]Lease, replicas int) {
	m.epoch.Reset()
	n := 0
	for slot, l := range held {
		if slot != CopriSlot {
			n++
		}
		m.epoch.WithLabelValues(strconv.Itoa(slot)).Set(float64(l.Epoch))
	}
	m.held.Set(float64(n))
	m.replicas.Set(float64(replicas))
	m.degraded.Set(0)
}
