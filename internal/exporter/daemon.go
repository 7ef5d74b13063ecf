package exporter

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterBuildInfo registers fleetd_build_info{version,revision,goversion} = 1.
func RegisterBuildInfo(reg prometheus.Registerer, version, revision string) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "fleetd_build_info",
		Help:        "fleetd build information, value 1.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return reg.Register(g)
}

// ConfigReload tracks the outcome of the last configuration (re)load.
type ConfigReload struct {
	ok   prometheus.Gauge
	when prometheus.Gauge
	info *prometheus.GaugeVec
}

// NewConfigReload registers fleetd_config_last_reload_successful, the time
// of the last successful load and fleetd_config_info{hash} with reg.
func NewConfigReload(reg prometheus.Registerer) (*ConfigReload, error) {
	c := &ConfigReload{
		ok: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetd_config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded.",
		}),
		when: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetd_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load or reload.",
		}),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_config_info",
			Help: "The configuration in force, value 1; hash identifies it (the first 12 hex digits of the SHA-256 of what fleetd check-config prints after its header, secrets masked).",
		}, []string{"hash"}),
	}
	for _, m := range []prometheus.Collector{c.ok, c.when, c.info} {
		if err := reg.Register(m); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Record records a load or reload outcome at t.
func (c *ConfigReload) Record(ok bool, t time.Time) {
	c.ok.Set(b2f(ok))
	if ok {
		c.when.Set(unix(t))
	}
}

// Applied records a successful load or reload at t that put the config
// with hash in force: one fleetd_config_info series, the new hash.
func (c *ConfigReload) Applied(hash string, t time.Time) {
	c.info.Reset()
	c.info.WithLabelValues(hash).Set(1)
	c.Record(true, t)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
