package httpx

import (
	"context"
	"net/http"
	"time"
)

// Instrumenter observes a client's traffic; fleetd backs it with Prometheus
// metrics. Implementations must be safe for concurrent use.
type Instrumenter interface {
	// ObserveRequest is called once per HTTP attempt. route is the template
	// (e.g. "/device/v1/devices/{id}" or "request=bikes_all"); code is the
	// HTTP status or 0 when no response arrived; d runs until the response
	// headers arrived.
	ObserveRequest(route, method string, code int, d time.Duration)
	// ObserveRetry is called before each retry of a request.
	ObserveRetry(route, method string)
	// ObserveBackoff reports the client-wide pause set after throttling, or
	// 0 when it is lifted.
	ObserveBackoff(d time.Duration)
	// ObserveTruncated counts one vendor value shortened to its cap; field
	// names the member (e.g. "alias"), never the value.
	ObserveTruncated(field string)
}

// Nop is an Instrumenter that records nothing.
type Nop struct{}

func (Nop) ObserveRequest(string, string, int, time.Duration) {}
func (Nop) ObserveRetry(string, string)                       {}
func (Nop) ObserveBackoff(time.Duration)                      {}
func (Nop) ObserveTruncated(string)                           {}

type routeKey struct{}

// WithRoute tags ctx with the route template of the request made under it.
func WithRoute(ctx context.Context, route string) context.Context {
	return context.WithValue(ctx, routeKey{}, route)
}

// RouteOf returns the route template set by WithRoute, or "".
func RouteOf(ctx context.Context) string {
	r, _ := ctx.Value(routeKey{}).(string)
	return r
}

// instrumentedTransport reports every attempt that carries a route; the
// others (a token request through the same transport, say) are not API
// traffic. It has no CloseIdleConnections on purpose: go-retryablehttp calls
// it after every request that ends in an error (a reset, a deadline during
// the backoff, a refusal while the client pauses), which would drop the
// pooled connections of every other request of the client for one
// request's failure.
type instrumentedTransport struct {
	base http.RoundTripper
	inst Instrumenter
}

func (t *instrumentedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	route := RouteOf(req.Context())
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if route != "" {
		code := 0
		if err == nil {
			code = resp.StatusCode
		}
		t.inst.ObserveRequest(route, req.Method, code, time.Since(start))
	}
	return resp, err
}
