package exporter

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// APIMetrics counts the vendor API requests of the clients: requests by route
// template and status, their durations, retries, the client-wide backoff
// after throttling, and vendor values shortened to their caps.
type APIMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	backoff   *prometheus.GaugeVec
	truncated *prometheus.CounterVec
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
		backoff: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_api_backoff_seconds",
			Help: "Client-wide pause the API's client last set after the vendor throttled (429), 0 once an answer is not throttled.",
		}, []string{"api"}),
		truncated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_api_values_truncated_total",
			Help: "Vendor string values shortened to their length cap before reaching a label, a log line or the page, by API and field.",
		}, []string{"api", "field"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries, m.backoff, m.truncated} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// For returns the instrumentation hook for one API ("bikeep", "copri/<name>").
// Its methods match the clients' Instrumenter interface. The API's backoff
// gauge exists from then on, at 0.
func (m *APIMetrics) For(api string) *APIObserver {
	m.backoff.WithLabelValues(api)
	return &APIObserver{m: m, api: api}
}

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

// ObserveBackoff records the client-wide pause; 0 when lifted.
func (o *APIObserver) ObserveBackoff(d time.Duration) {
	o.m.backoff.WithLabelValues(o.api).Set(d.Seconds())
}

// ObserveTruncated counts one shortened vendor value of field.
func (o *APIObserver) ObserveTruncated(field string) {
	o.m.truncated.WithLabelValues(o.api, field).Inc()
}
