package exporter

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// APIMetrics counts the vendor API requests of the clients: requests by route
// template and status, their durations, and retries.
type APIMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

// NewAPIMetrics registers the fleetd_api_* metrics with reg.
func NewAPIMetrics(reg prometheus.Registerer) (*APIMetrics, error) {
	m := &APIMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_api_requests_total",
			Help: "Vendor API requests (every attempt) by API, route template and HTTP status (\"error\" when no response arrived).",
		}, []string{"api", "endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleetd_api_request_duration_seconds",
			Help:    "Duration of vendor API request attempts by API and route template.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api", "endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_api_retries_total",
			Help: "Vendor API requests retried after a 429, a 5xx or a transport error.",
		}, []string{"api", "endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// For returns the instrumentation hook for one API ("bikeep", "copri/<name>").
// Its methods match the clients' Instrumenter interfaces.
func (m *APIMetrics) For(api string) *APIObserver { return &APIObserver{m: m, api: api} }

// APIObserver records one API's requests.
type APIObserver struct {
	m   *APIMetrics
	api string
}

// ObserveRequest records one request attempt; code 0 means no response.
func (o *APIObserver) ObserveRequest(route, _ string, code int, d time.Duration) {
	c := "error"
	if code > 0 {
		c = strconv.Itoa(code)
	}
	o.m.requests.WithLabelValues(o.api, route, c).Inc()
	o.m.duration.WithLabelValues(o.api, route).Observe(d.Seconds())
}

// ObserveRetry records one retry.
func (o *APIObserver) ObserveRetry(route, _ string) {
	o.m.retries.WithLabelValues(o.api, route).Inc()
}
