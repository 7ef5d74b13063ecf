package remediate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/health"
)

func TestAPIHandler(t *testing.T) {
	v := newEnv(t, nil)
	f := newFleet(map[string]int{"L1": 10})
	f.fault("L1", 0, health.Unhealthy, t0.Add(-time.Hour), 5)
	v.e.Observe(context.Background(), f.snap(t0))
	v.quiet()
	srv := httptest.NewServer(v.e.APIHandler())
	defer srv.Close()

	do := func(method, path, ctype, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		mustNil(t, err)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		mustNil(t, err)
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}

	code, st := do("GET", RouteStatus, "", "")
	if code != 200 {
		t.Fatalf("GET: %d", code)
	}
	for _, k := range []string{"enabled", "dry_run", "trigger", "paused", "storms", "in_flight", "exhausted", "decisions"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status JSON lacks %q: %v", k, st)
		}
	}
	decs := st["decisions"].([]any)
	d0 := decs[0].(map[string]any)
	if d0["device_id"] != "L1-d0" || d0["outcome"] != "sent" || d0["source"] != "walk" || d0["attempt"] != 1.0 || d0["command_id"] != "cmd-1" {
		t.Errorf("decision JSON %v", d0)
	}
	if inf := st["in_flight"].([]any); len(inf) != 1 || inf[0].(map[string]any)["command_id"] != "cmd-1" {
		t.Errorf("in_flight JSON %v", st["in_flight"])
	}

	for _, tc := range []struct {
		name, method, path, ctype, body string
		code                            int
		paused                          bool
	}{
		{"pause without reason", "POST", RoutePause, "application/json", `{}`, 400, false},
		{"pause blank reason", "POST", RoutePause, "application/x-www-form-urlencoded", "reason=+", 400, false},
		{"pause bad json", "POST", RoutePause, "application/json", `{"reason":`, 400, false},
		{"pause wrong method", "GET", RoutePause, "", "", 405, false},
		{"status wrong method", "POST", RouteStatus, "", "", 405, false},
		{"pause json", "POST", RoutePause, "application/json", `{"reason":"vendor outage"}`, 200, true},
		{"resume without reason", "POST", RouteResume, "", "", 400, true},
		{"resume form", "POST", RouteResume, "application/x-www-form-urlencoded", url.Values{"reason": {"over"}}.Encode(), 200, false},
		{"resume wrong method", "PUT", RouteResume, "", "", 405, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.path, tc.ctype, tc.body)
			if code != tc.code {
				t.Fatalf("%s %s: %d %v, want %d", tc.method, tc.path, code, body, tc.code)
			}
			if code == 400 && body["error"] == nil {
				t.Errorf("400 without an error message")
			}
			if got := v.e.Status().Paused; got != tc.paused {
				t.Fatalf("paused = %v, want %v", got, tc.paused)
			}
		})
	}
	if st := v.e.Status(); st.Paused || st.PausedSince != nil {
		t.Fatalf("status after resume: %+v", st)
	}
}
