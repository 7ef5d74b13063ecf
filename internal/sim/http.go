package sim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Route templates, used as Stats.Requests keys.
const (
	routeToken        = "POST /oauth2/token"
	routeLocations    = "GET /location/v1/locations"
	routeLocDevices   = "GET /device/v1/locations/{id}/devices"
	routeDevice       = "GET /device/v1/devices/{id}"
	routeSendCommand  = "POST /device/v1/devices/{id}/commands"
	routeCommand      = "GET /device/v1/commands/{id}"
	routeCopriPrefix  = "/APIjsonserver?request="
	copriOtherRequest = "other"
)

func copriRequests() []string {
	return []string{"authorization", "authout", "user_bikes_occupied", "bikes_all", copriOtherRequest}
}

// routeNames lists every counted route.
func routeNames() []string {
	r := []string{routeToken, routeLocations, routeLocDevices, routeDevice, routeSendCommand, routeCommand}
	for _, c := range copriRequests() {
		r = append(r, routeCopriPrefix+c)
	}
	return r
}

// Transport fault kinds injected by ErrorRate.
const (
	errKind500       = "500"
	errKind502       = "502_html"
	errKind503       = "503"
	errKind429       = "429"
	errKindMalformed = "malformed_json"
	errKindHang      = "hang"
)

func errorKinds() []string {
	return []string{errKind500, errKind502, errKind503, errKind429, errKindMalformed, errKindHang}
}

// Handler serves every route: the Bikeep APIs, the OAuth2 token endpoint,
// COPRI's /APIjsonserver and the /sim/v1/ test hooks. Used without Start,
// commands and faults advance only when the caller runs Step.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(routeToken, s.vendor(routeToken, false, s.handleToken))
	mux.Handle(routeLocations, s.vendor(routeLocations, true, s.handleLocations))
	mux.Handle(routeLocDevices, s.vendor(routeLocDevices, true, s.handleLocationDevices))
	mux.Handle(routeDevice, s.vendor(routeDevice, true, s.handleDevice))
	mux.Handle(routeSendCommand, s.vendor(routeSendCommand, true, s.handleSendCommand))
	mux.Handle(routeCommand, s.vendor(routeCommand, true, s.handleCommand))
	mux.HandleFunc("/APIjsonserver", s.handleCopri)
	mux.HandleFunc("GET /sim/v1/stats", s.handleStats)
	mux.HandleFunc("POST /sim/v1/devices/{id}/faults", s.handleSetFault)
	mux.HandleFunc("POST /sim/v1/devices/{id}/stubborn", s.handleSetStubborn)
	mux.HandleFunc("POST /sim/v1/locations/{id}/error", s.handleSetLocationError)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "ERRORS.NOT_FOUND", "Resource not found")
	})
	return mux
}

// vendor wraps a Bikeep handler: count, delay, maybe inject a transport
// fault, check the bearer token.
func (s *Sim) vendor(route string, auth bool, h http.HandlerFunc) http.Handler {
	counter := s.requests[route]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counter.Add(1)
		if !s.delay(r) {
			return
		}
		// A POST of a command is processed before some faults strike, so
		// that a client sees the ambiguous failures of a real network.
		kind := s.pickError()
		ambiguous := kind == errKind500 || kind == errKindHang || kind == errKindMalformed
		if kind != "" && !(ambiguous && route == routeSendCommand) {
			s.injectError(w, r, kind)
			return
		}
		if auth && !s.authorized(w, r) {
			return
		}
		if kind == "" {
			h(w, r)
			return
		}
		h(discard{http.Header{}}, r)
		s.injectError(w, r, kind)
	})
}

// discard is a ResponseWriter that drops the response (ambiguous faults).
type discard struct{ h http.Header }

func (d discard) Header() http.Header         { return d.h }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

// delay applies Options.Latency with a timer; false if the request ended.
func (s *Sim) delay(r *http.Request) bool {
	if s.opts.Latency <= 0 {
		return true
	}
	t := time.NewTimer(s.opts.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// pickError decides whether this request gets a transport fault, and which.
// The decision is a hash of the seed and a request counter, so a serial
// client sees the same faults on every run.
func (s *Sim) pickError() string {
	if s.opts.ErrorRate <= 0 {
		return ""
	}
	h := splitmix(uint64(s.opts.Seed)*0x9e37 ^ s.reqSeq.Add(1))
	u := float64(h>>11) / (1 << 53)
	if u >= s.opts.ErrorRate {
		return ""
	}
	kinds := errorKinds()
	return kinds[min(int(u/s.opts.ErrorRate*float64(len(kinds))), len(kinds)-1)]
}

func (s *Sim) injectError(w http.ResponseWriter, r *http.Request, kind string) {
	s.injected[kind].Add(1)
	s.log.Debug("sim: injecting transport fault", "kind", kind, "path", r.URL.Path)
	switch kind {
	case errKind500:
		writeError(w, http.StatusInternalServerError, "ERRORS.INTERNAL_SERVER_ERROR", "Internal server error")
	case errKind502:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>\n")
	case errKind503:
		writeError(w, http.StatusServiceUnavailable, "ERRORS.SERVICE_UNAVAILABLE", "Service temporarily unavailable")
	case errKind429:
		writeError(w, http.StatusTooManyRequests, "ERRORS.TOO_MANY_REQUESTS", "Too many requests")
	case errKindMalformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"data":[{"id":"`)
	case errKindHang:
		t := time.NewTimer(s.opts.HangDuration)
		defer t.Stop()
		select {
		case <-t.C:
			writeError(w, http.StatusGatewayTimeout, "ERRORS.GATEWAY_TIMEOUT", "Upstream timed out")
		case <-r.Context().Done():
		}
	}
}

// writeError writes the documented error envelope with a fresh correlation id.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := marshal(wireError{
		ErrorMessage:  msg,
		StatusCode:    status,
		CorrelationID: newUUID(),
		ErrorCode:     code,
	})
	writeJSON(w, status, body)
}

// errorCodeFor maps a status to an error_code for SetLocationError.
func errorCodeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "ERRORS.BAD_REQUEST"
	case http.StatusUnauthorized:
		return "ERRORS.UNAUTHORIZED"
	case http.StatusForbidden:
		return "ERRORS.FORBIDDEN"
	case http.StatusNotFound:
		return "ERRORS.NOT_FOUND"
	case http.StatusTooManyRequests:
		return "ERRORS.TOO_MANY_REQUESTS"
	case http.StatusServiceUnavailable:
		return "ERRORS.SERVICE_UNAVAILABLE"
	}
	if status >= 500 {
		return "ERRORS.INTERNAL_SERVER_ERROR"
	}
	return "ERRORS.UNKNOWN"
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// newUUID is a random version-4 UUID for correlation ids, which must be
// fresh on every error, not reproducible.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// randomHex is n random bytes as hex, for tokens and authcookies.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// baseURL is the prefix of every URI in a response to r.
func (s *Sim) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimRight(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
