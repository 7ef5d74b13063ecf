package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeRemediator records requests and answers "sent".
type fakeRemediator struct {
	mu   sync.Mutex
	reqs []Request
	got  chan Request // optional: each request is also sent here
}

func (f *fakeRemediator) Remediate(_ context.Context, r Request) Result {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	if f.got != nil {
		select {
		case f.got <- r:
		default:
		}
	}
	return Result{Outcome: "sent", Reason: "attempt 1"}
}

func (f *fakeRemediator) requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.reqs...)
}

func newTestHandler(t testing.TB, rem Remediator) (http.Handler, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	var logs bytes.Buffer
	h, err := NewHandler(rem, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return h, reg, &logs
}

func post(h http.Handler, ct, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/api/v1/alerts", strings.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRejections(t *testing.T) {
	const okAlert = `{"status":"firing","labels":{"device_id":"d1","fault":"unhealthy"}}`
	for _, tc := range []struct {
		name   string
		method string
		ct     string
		body   string
		code   int
		reason string // the whole one-line body
	}{
		{"get", http.MethodGet, "", "", 405, "method_not_allowed: method GET, want POST"},
		{"put", http.MethodPut, "application/json", `{}`, 405, "method_not_allowed: method PUT, want POST"},
		{"text content type", "", "text/plain", `{"version":"4","status":"firing","alerts":[]}`, 415, "unsupported_media_type: content type must be application/json"},
		{"form content type", "", "application/x-www-form-urlencoded", `a=b`, 415, "unsupported_media_type: content type must be application/json"},
		{"garbage content type", "", ";;;", `{}`, 415, "unsupported_media_type: content type must be application/json"},
		{"empty", "", "application/json", ``, 400, "empty_body: empty body"},
		{"whitespace only", "", "application/json", " \n\t", 400, "empty_body: empty body"},
		{"not json", "", "application/json", `hello`, 400, "invalid_json: invalid character 'h' looking for beginning of value"},
		{"truncated", "", "application/json", `{"version":"4","alerts":[{"status":"fir`, 400, "invalid_json: truncated JSON"},
		{"trailing data", "", "application/json", `{"version":"4","status":"firing","alerts":[]} {}`, 400, "invalid_json: data after the JSON object"},
		{"array top level", "", "application/json", `[]`, 400, `invalid_type: field "": cannot use JSON array as alerts.Message`},
		{"version number", "", "application/json", `{"version":4,"alerts":[]}`, 400, `invalid_type: field "version": cannot use JSON number as string`},
		{"alerts object", "", "application/json", `{"version":"4","status":"firing","alerts":{}}`, 400, `invalid_type: field "alerts": cannot use JSON object as []alerts.Alert`},
		{"label number", "", "application/json", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":7}}]}`, 400, `invalid_type: field "alerts.labels": cannot use JSON number as string`},
		{"truncatedAlerts negative", "", "application/json", `{"version":"4","status":"firing","truncatedAlerts":-1,"alerts":[]}`, 400, `invalid_type: field "truncatedAlerts": cannot use JSON number -1 as uint64`},
		{"version 3", "", "application/json", `{"version":"3","status":"firing","alerts":[]}`, 400, `unsupported_version: version "3", want "4"`},
		{"version missing", "", "application/json", `{"status":"firing","alerts":[]}`, 400, `unsupported_version: version "", want "4"`},
		{"alerts missing", "", "application/json", `{"version":"4","status":"firing"}`, 400, `missing_alerts: no "alerts" list`},
		{"alerts null", "", "application/json", `{"version":"4","status":"firing","alerts":null}`, 400, `missing_alerts: no "alerts" list`},
		{"group status bad", "", "application/json", `{"version":"4","status":"pending","alerts":[]}`, 400, `invalid_status: status "pending", want "firing" or "resolved"`},
		{"alert status bad", "", "application/json", `{"version":"4","status":"firing","alerts":[` + okAlert + `,{"status":"suppressed"}]}`, 400, `invalid_status: alerts[1].status "suppressed", want "firing" or "resolved"`},
		{"alert status missing", "", "application/json", `{"version":"4","status":"firing","alerts":[{"labels":{}}]}`, 400, `invalid_status: alerts[0].status "", want "firing" or "resolved"`},
		{"long status bounded", "", "application/json", `{"version":"4","status":"` + strings.Repeat("x", 100) + `","alerts":[]}`, 400, `invalid_status: status "` + strings.Repeat("x", 40) + `"…, want "firing" or "resolved"`},
		{"bad time", "", "application/json", `{"version":"4","status":"firing","alerts":[{"status":"firing","startsAt":"yesterday"}]}`, 400, `invalid_type: timestamp: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`},
		{"too large", "", "application/json", `{"version":"4","pad":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, "body_too_large: body exceeds 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rem := &fakeRemediator{}
			h, reg, _ := newTestHandler(t, rem)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/api/v1/alerts", strings.NewReader(tc.body))
			if tc.ct != "" {
				req.Header.Set("Content-Type", tc.ct)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Errorf("code = %d, want %d", rec.Code, tc.code)
			}
			if got := strings.TrimSuffix(rec.Body.String(), "\n"); got != tc.reason {
				t.Errorf("body = %q\nwant   %q", got, tc.reason)
			}
			if strings.Count(rec.Body.String(), "\n") != 1 {
				t.Errorf("reason is not one line: %q", rec.Body.String())
			}
			if n := len(rem.requests()); n != 0 {
				t.Errorf("remediator called %d times for a rejected payload", n)
			}
			reason, _, _ := strings.Cut(tc.reason, ":")
			if got := counterValue(t, reg, "fleetd_alerts_rejected_total", reason); got != 1 {
				t.Errorf("fleetd_alerts_rejected_total{reason=%q} = %v, want 1", reason, got)
			}
			if tc.code == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
		})
	}
}

// counterValue reads one series of a single-label counter family.
func counterValue(t *testing.T, reg *prometheus.Registry, name, labelValue string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() == labelValue {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{…=%q}", name, labelValue)
	return 0
}

func TestFixtureFiringAndResolved(t *testing.T) {
	body, err := os.ReadFile("testdata/firing_resolved.json")
	if err != nil {
		t.Fatal(err)
	}
	rem := &fakeRemediator{}
	h, reg, logs := newTestHandler(t, rem)
	rec := post(h, "application/json", string(body))
	if rec.Code != http.StatusOK {
		t.Fatalf("code = %d, body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var resp Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	want := Response{Received: 4, Results: []Result{
		{DeviceID: "dev-0001-03", Fault: "hardware_error", Outcome: "sent", Reason: "attempt 1"},
		{DeviceID: "dev-0002-07", Fault: "lock_mismatch", Outcome: "ignored", Reason: "resolved"},
		{DeviceID: "", Fault: "", Outcome: "ignored", Reason: "no_device_id"},
		{DeviceID: "dev-0003-01", Fault: "", Outcome: "ignored", Reason: "no_fault"},
	}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("response\n got %+v\nwant %+v", resp, want)
	}
	wantReqs := []Request{{
		DeviceID: "dev-0001-03", LocationID: "loc-0001", Fault: "hardware_error",
		AlertName: "FleetDeviceRecoverableFaultPersisting", Fingerprint: "3c7f0e2a9b1d4e55",
	}}
	if got := rem.requests(); !reflect.DeepEqual(got, wantReqs) {
		t.Errorf("requests\n got %+v\nwant %+v", got, wantReqs)
	}
	if got := strings.Count(logs.String(), "level=INFO msg=alert "); got != 4 {
		t.Errorf("%d INFO alert lines, want 4:\n%s", got, logs)
	}
	for _, s := range []string{"alertname=FleetDeviceRecoverableFaultPersisting", "device_id=dev-0001-03", "fault=hardware_error", "outcome=sent"} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %q:\n%s", s, logs)
		}
	}
	const wantMetrics = `
# HELP fleetd_alerts_received_total Alerts received through the Alertmanager webhook, by alert status.
# TYPE fleetd_alerts_received_total counter
fleetd_alerts_received_total{status="firing"} 3
fleetd_alerts_received_total{status="resolved"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics), "fleetd_alerts_received_total"); err != nil {
		t.Error(err)
	}
}

func TestAcceptedPayloads(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ct      string
		body    string
		results []Result
		reqs    int
	}{
		{"empty alerts", "application/json", `{"version":"4","status":"resolved","alerts":[]}`, []Result{}, 0},
		{"no content type", "", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"d1","fault":"unhealthy"}}]}`,
			[]Result{{DeviceID: "d1", Fault: "unhealthy", Outcome: "sent", Reason: "attempt 1"}}, 1},
		{"charset param", "application/json; charset=utf-8", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"d1","fault":"unhealthy"}}]}`,
			[]Result{{DeviceID: "d1", Fault: "unhealthy", Outcome: "sent", Reason: "attempt 1"}}, 1},
		{"unknown fields ignored", "application/json", `{"version":"4","status":"firing","futureField":{"x":1},"alerts":[{"status":"firing","labels":{"device_id":"d1","fault":"dead"},"silencedBy":[]}]}`,
			[]Result{{DeviceID: "d1", Fault: "dead", Outcome: "sent", Reason: "attempt 1"}}, 1},
		{"duplicate device fault", "application/json", `{"version":"4","status":"firing","alerts":[
			{"status":"firing","labels":{"alertname":"A","device_id":"d1","fault":"unhealthy"}},
			{"status":"firing","labels":{"alertname":"B","device_id":"d1","fault":"unhealthy"}},
			{"status":"firing","labels":{"alertname":"B","device_id":"d1","fault":"hardware_error"}}]}`,
			[]Result{
				{DeviceID: "d1", Fault: "unhealthy", Outcome: "sent", Reason: "attempt 1"},
				{DeviceID: "d1", Fault: "unhealthy", Outcome: "ignored", Reason: "duplicate"},
				{DeviceID: "d1", Fault: "hardware_error", Outcome: "sent", Reason: "attempt 1"},
			}, 2},
		{"empty label values", "application/json", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"","fault":"x"}},{"status":"firing","labels":{"device_id":"d","fault":""}}]}`,
			[]Result{{Fault: "x", Outcome: "ignored", Reason: "no_device_id"}, {DeviceID: "d", Outcome: "ignored", Reason: "no_fault"}}, 0},
		{"no labels at all", "application/json", `{"version":"4","status":"firing","alerts":[{"status":"firing"}]}`,
			[]Result{{Outcome: "ignored", Reason: "no_device_id"}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rem := &fakeRemediator{}
			h, _, _ := newTestHandler(t, rem)
			rec := post(h, tc.ct, tc.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("code = %d, body %s", rec.Code, rec.Body)
			}
			var resp Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if resp.Received != len(tc.results) || !reflect.DeepEqual(resp.Results, tc.results) {
				t.Errorf("got %+v, want %d results %+v", resp, len(tc.results), tc.results)
			}
			if got := len(rem.requests()); got != tc.reqs {
				t.Errorf("%d remediation requests, want %d", got, tc.reqs)
			}
		})
	}
}

// overwritingRemediator claims to speak of another device: the response must
// still describe the alert's own device.
type overwritingRemediator struct{}

func (overwritingRemediator) Remediate(context.Context, Request) Result {
	return Result{DeviceID: "other", Fault: "other", Outcome: "skipped", Reason: "cooldown"}
}

func TestResultKeepsAlertIdentity(t *testing.T) {
	h, _, _ := newTestHandler(t, overwritingRemediator{})
	rec := post(h, "application/json", `{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"d1","fault":"unhealthy"}}]}`)
	want := `{"received":1,"results":[{"device_id":"d1","fault":"unhealthy","outcome":"skipped","reason":"cooldown"}]}` + "\n"
	if rec.Body.String() != want {
		t.Errorf("body %s, want %s", rec.Body, want)
	}
}

func TestCanceledRequestSendsNothing(t *testing.T) {
	rem := &fakeRemediator{}
	h, _, _ := newTestHandler(t, rem)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader(
		`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"d1","fault":"unhealthy"}}]}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if n := len(rem.requests()); n != 0 {
		t.Errorf("remediator called %d times after the caller gave up", n)
	}
	if !strings.Contains(rec.Body.String(), `"reason":"not_attempted"`) {
		t.Errorf("body %s", rec.Body)
	}
}

func TestRejectedMetricsPreinitialised(t *testing.T) {
	_, reg, _ := newTestHandler(t, &fakeRemediator{})
	var b strings.Builder
	b.WriteString("# HELP fleetd_alerts_rejected_total Alertmanager webhook requests rejected without acting on them, by reason.\n# TYPE fleetd_alerts_rejected_total counter\n")
	reasons := rejectReasons()
	// Exposition is sorted by label value.
	slices.Sort(reasons)
	for _, r := range reasons {
		b.WriteString(`fleetd_alerts_rejected_total{reason="` + r + `"} 0` + "\n")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(b.String()), "fleetd_alerts_rejected_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "fleetd_alerts_received_total"); err != nil || n != 2 {
		t.Errorf("received series = %d, %v; want 2", n, err)
	}
}

func TestNewHandlerErrors(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := NewHandler(nil, nil, reg); err == nil {
		t.Error("nil Remediator accepted")
	}
	if _, err := NewHandler(&fakeRemediator{}, nil, nil); err == nil {
		t.Error("nil Registerer accepted")
	}
	if _, err := NewHandler(&fakeRemediator{}, nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHandler(&fakeRemediator{}, nil, reg); err == nil {
		t.Error("second registration on the same registry accepted")
	}
}

func FuzzHandler(f *testing.F) {
	if b, err := os.ReadFile("testdata/firing_resolved.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"device_id":"d","fault":"f"}}]}`))
	f.Add([]byte(`{"version":"4","alerts":null}`))
	f.Add([]byte(`{"version":4}`))
	f.Add([]byte(``))
	f.Add([]byte(`[`))
	rem := &fakeRemediator{}
	reg := prometheus.NewPedanticRegistry()
	h, err := NewHandler(rem, nil, reg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(h, "application/json", string(body))
		switch rec.Code {
		case http.StatusOK:
			var resp Response
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("200 with undecodable body %q: %v", rec.Body, err)
			}
			if resp.Received != len(resp.Results) {
				t.Fatalf("received %d, %d results", resp.Received, len(resp.Results))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if strings.Count(rec.Body.String(), "\n") != 1 {
				t.Fatalf("reason not one line: %q", rec.Body)
			}
		default:
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
	})
}
