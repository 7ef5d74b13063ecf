// Package alerts is the Alertmanager side of fleetd: a webhook receiver
// (POST /api/v1/alerts) that turns firing alerts naming a device and a fault
// into remediation requests.
//
// The receiver knows nothing of the remediation engine. It hands each request
// to a Remediator, which runs it through the same gates as the faults fleetd
// finds on its own walks, so an alert can never do what a walk could not.
//
// A payload is validated as a whole before anything is acted on: a malformed
// notification is rejected (4xx, one-line reason) without a single request
// reaching the Remediator, because half-acting on garbage is worse than not
// acting.
package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MaxBodyBytes bounds a webhook body. Alertmanager's notifications are a few
// KiB per alert; 1 MiB is hundreds of alerts, far beyond one group of fleetd's.
const MaxBodyBytes = 1 << 20

// Labels fleetd's own alerting rules put on device alerts.
const (
	LabelDeviceID   = "device_id"
	LabelLocationID = "location_id"
	LabelFault      = "fault"
	LabelAlertName  = "alertname"
)

// Alert statuses of the webhook payload.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Outcomes and reasons this package sets itself in a Result; the Remediator
// sets its own.
const (
	OutcomeIgnored     = "ignored"
	ReasonResolved     = "resolved"
	ReasonNoDeviceID   = "no_device_id"
	ReasonNoFault      = "no_fault"
	ReasonDuplicate    = "duplicate"
	ReasonNotAttempted = "not_attempted"
)

// Rejection reasons: the first word of a 4xx response body and the `reason`
// label of fleetd_alerts_rejected_total.
const (
	RejectMethod        = "method_not_allowed"
	RejectContentType   = "unsupported_media_type"
	RejectEmpty         = "empty_body"
	RejectTooLarge      = "body_too_large"
	RejectInvalidJSON   = "invalid_json"
	RejectInvalidType   = "invalid_type"
	RejectVersion       = "unsupported_version"
	RejectMissingAlerts = "missing_alerts"
	RejectInvalidStatus = "invalid_status"
)

func rejectReasons() []string {
	return []string{
		RejectMethod, RejectContentType, RejectEmpty, RejectTooLarge, RejectInvalidJSON,
		RejectInvalidType, RejectVersion, RejectMissingAlerts, RejectInvalidStatus,
	}
}

// Request asks the remediation engine to cure one device fault that an alert
// reported.
type Request struct {
	DeviceID, LocationID, Fault, AlertName, Fingerprint string
}

// Result is what became of one alert of a notification.
type Result struct {
	DeviceID string `json:"device_id"`
	Fault    string `json:"fault"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason,omitempty"`
}

// Remediator runs a request through the remediation gates. It must be safe
// for concurrent use (Alertmanager may deliver several groups at once) and
// should return promptly: Alertmanager times the webhook out.
type Remediator interface {
	Remediate(ctx context.Context, r Request) Result
}

// Message is an Alertmanager webhook notification, payload version 4
// (alertmanager notify/webhook.Message embedding template.Data).
type Message struct {
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`

	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	// Alerts is a pointer so that a missing or null "alerts" can be told
	// apart from an empty list.
	Alerts *[]Alert `json:"alerts"`
}

// Alert is one alert of a notification.
type Alert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// Response is the 200 answer to a notification.
type Response struct {
	Received int      `json:"received"`
	Results  []Result `json:"results"`
}

type handler struct {
	rem      Remediator
	log      *slog.Logger
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

// NewHandler returns the webhook receiver. It serves POST only, whatever the
// path it is mounted on.
//
// Choices:
//   - A body over MaxBodyBytes gets 413 (not 400): the payload may be valid,
//     it is just more than fleetd accepts, and 413 says exactly that.
//   - Content-Type must be application/json (parameters such as charset are
//     fine), which is what Alertmanager sends; a missing Content-Type is
//     accepted too, so that an operator can replay a payload with a bare
//     `curl -d @payload.json`, while any other declared type gets 415.
//   - Unknown fields are ignored, so newer Alertmanager versions that add
//     fields keep working; version must still be "4".
//
// Its metrics, fleetd_alerts_received_total{status} and
// fleetd_alerts_rejected_total{reason}, are registered on reg.
func NewHandler(rem Remediator, log *slog.Logger, reg prometheus.Registerer) (http.Handler, error) {
	if rem == nil {
		return nil, errors.New("alerts: nil Remediator")
	}
	if reg == nil {
		return nil, errors.New("alerts: nil Registerer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		rem: rem,
		log: log,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_alerts_received_total",
			Help: "Alerts received through the Alertmanager webhook, by alert status.",
		}, []string{"status"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_alerts_rejected_total",
			Help: "Alertmanager webhook requests rejected without acting on them, by reason.",
		}, []string{"reason"}),
	}
	for _, s := range []string{StatusFiring, StatusResolved} {
		h.received.WithLabelValues(s)
	}
	for _, r := range rejectReasons() {
		h.rejected.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{h.received, h.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("alerts: register metrics: %w", err)
		}
	}
	return h, nil
}

// rejection is a request refused before any alert was acted on.
type rejection struct {
	code   int
	reason string
	detail string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	msg, rej := h.decode(w, r)
	if rej != nil {
		h.rejected.WithLabelValues(rej.reason).Inc()
		h.log.Warn("alert webhook rejected", "reason", rej.reason, "detail", rej.detail, "remote", r.RemoteAddr)
		if rej.code == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(rej.code)
		fmt.Fprintf(w, "%s: %s\n", rej.reason, rej.detail)
		return
	}

	alerts := *msg.Alerts
	resp := Response{Received: len(alerts), Results: make([]Result, 0, len(alerts))}
	seen := make(map[[2]string]bool, len(alerts))
	for _, a := range alerts {
		h.received.WithLabelValues(a.Status).Inc()
		res := h.handleAlert(r.Context(), a, seen)
		resp.Results = append(resp.Results, res)
		h.log.Info("alert",
			"alertname", a.Labels[LabelAlertName],
			"device_id", res.DeviceID,
			"fault", res.Fault,
			"status", a.Status,
			"outcome", res.Outcome,
			"reason", res.Reason,
			"fingerprint", a.Fingerprint,
			"group_key", msg.GroupKey,
		)
	}
	if msg.TruncatedAlerts > 0 {
		// The dropped alerts come again on the next notification of the group.
		h.log.Warn("alert notification truncated by Alertmanager", "truncated_alerts", msg.TruncatedAlerts, "group_key", msg.GroupKey)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *handler) handleAlert(ctx context.Context, a Alert, seen map[[2]string]bool) Result {
	dev, fault := a.Labels[LabelDeviceID], a.Labels[LabelFault]
	res := Result{DeviceID: dev, Fault: fault, Outcome: OutcomeIgnored}
	switch {
	case a.Status == StatusResolved:
		res.Reason = ReasonResolved
	case dev == "":
		res.Reason = ReasonNoDeviceID
	case fault == "":
		res.Reason = ReasonNoFault
	case seen[[2]string{dev, fault}]:
		// Several rules may fire for one device fault; one request is enough.
		res.Reason = ReasonDuplicate
	case ctx.Err() != nil:
		// Alertmanager gave up on us; it will deliver the group again.
		res.Reason = ReasonNotAttempted
	default:
		seen[[2]string{dev, fault}] = true
		res = h.rem.Remediate(ctx, Request{
			DeviceID:    dev,
			LocationID:  a.Labels[LabelLocationID],
			Fault:       fault,
			AlertName:   a.Labels[LabelAlertName],
			Fingerprint: a.Fingerprint,
		})
		// The response speaks of the alert's device and fault, whatever the
		// Remediator filled in.
		res.DeviceID, res.Fault = dev, fault
	}
	return res
}

// decode reads and validates a notification.
func (h *handler) decode(w http.ResponseWriter, r *http.Request) (*Message, *rejection) {
	if r.Method != http.MethodPost {
		return nil, &rejection{http.StatusMethodNotAllowed, RejectMethod, fmt.Sprintf("method %s, want POST", r.Method)}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &rejection{http.StatusUnsupportedMediaType, RejectContentType, "content type must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &rejection{http.StatusRequestEntityTooLarge, RejectTooLarge, fmt.Sprintf("body exceeds %d bytes", MaxBodyBytes)}
		}
		return nil, &rejection{http.StatusBadRequest, RejectInvalidJSON, "reading body: " + oneLine(err.Error())}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &rejection{http.StatusBadRequest, RejectEmpty, "empty body"}
	}
	var msg Message
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&msg); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, &rejection{http.StatusBadRequest, RejectInvalidType, fmt.Sprintf("field %q: cannot use JSON %s as %s", ute.Field, ute.Value, ute.Type)}
		}
		var pe *time.ParseError
		if errors.As(err, &pe) {
			// startsAt/endsAt that are not RFC 3339.
			return nil, &rejection{http.StatusBadRequest, RejectInvalidType, "timestamp: " + oneLine(err.Error())}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &rejection{http.StatusBadRequest, RejectInvalidJSON, "truncated JSON"}
		}
		return nil, &rejection{http.StatusBadRequest, RejectInvalidJSON, oneLine(err.Error())}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &rejection{http.StatusBadRequest, RejectInvalidJSON, "data after the JSON object"}
	}
	if msg.Version != "4" {
		return nil, &rejection{http.StatusBadRequest, RejectVersion, fmt.Sprintf("version %s, want \"4\"", quote(msg.Version))}
	}
	if msg.Alerts == nil {
		return nil, &rejection{http.StatusBadRequest, RejectMissingAlerts, "no \"alerts\" list"}
	}
	if msg.Status != StatusFiring && msg.Status != StatusResolved {
		return nil, &rejection{http.StatusBadRequest, RejectInvalidStatus, fmt.Sprintf("status %s, want \"firing\" or \"resolved\"", quote(msg.Status))}
	}
	for i, a := range *msg.Alerts {
		if a.Status != StatusFiring && a.Status != StatusResolved {
			return nil, &rejection{http.StatusBadRequest, RejectInvalidStatus, fmt.Sprintf("alerts[%d].status %s, want \"firing\" or \"resolved\"", i, quote(a.Status))}
		}
	}
	return &msg, nil
}

// quote quotes an untrusted value for a reason line, bounded so a hostile
// payload cannot flood the log or the response.
func quote(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		return fmt.Sprintf("%q…", s[:maxLen])
	}
	return fmt.Sprintf("%q", s)
}

// oneLine keeps a reason on one short line: decoder errors may quote the
// payload.
func oneLine(s string) string {
	const maxLen = 200
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return string(bytes.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, []byte(s)))
}
