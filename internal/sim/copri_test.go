package sim

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/simtest"
)

var cookieRE = regexp.MustCompile(`^6103_[0-9a-f]{32}_12345678$`)

// envelopeKeys are the shareejson fields NOTES.md lists.
func envelopeKeys() []string {
	return []string{"response", "response_state", "response_text", "authcookie", "user_id",
		"user_group", "copri_version", "uri_primary", "clearing_cache", "debuglevel", "lang"}
}

func checkEnvelope(t *testing.T, m map[string]any, request string) map[string]any {
	t.Helper()
	env, ok := m["shareejson"].(map[string]any)
	if !ok {
		t.Fatalf("no shareejson in %v", m)
	}
	for _, k := range envelopeKeys() {
		if _, ok := env[k]; !ok {
			t.Errorf("shareejson lacks %q", k)
		}
	}
	if env["response"] != request {
		t.Errorf("response %v, want %s", env["response"], request)
	}
	return env
}

// allScalarsStrings walks a COPRI document: every scalar must be a string.
func allScalarsStrings(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			allScalarsStrings(t, path+"."+k, sub)
		}
	case []any:
		for _, sub := range x {
			allScalarsStrings(t, path+"[]", sub)
		}
	case string:
	default:
		t.Errorf("%s is %T (%v), want a string", path, v, v)
	}
}

func TestCopriLogin(t *testing.T) {
	good := url.Values{"request": {"authorization"}, "merchant_id": {DefaultCopriMerchant},
		"user_id": {DefaultCopriUser}, "user_pw": {DefaultCopriPassword}, "hw_id": {"fleetd-test-000001"}}
	with := func(k, v string) url.Values {
		c := url.Values{}
		for kk, vv := range good {
			c[kk] = vv
		}
		c.Set(k, v)
		return c
	}
	tests := []struct {
		name      string
		params    url.Values
		failOn    bool
		wantState string
	}{
		{"ok", good, false, "OK"},
		{"wrong password", with("user_pw", "nope"), false, "Failure 1001: authentication failed"},
		{"wrong merchant", with("merchant_id", "1"), false, "Failure 1001: authentication failed"},
		{"short hw_id", with("hw_id", "short"), false, "Failure 1002"},
		{"login failure switch", good, true, "Failure 1001: authentication failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testOptions())
			h.sim.SetCopriLoginFailure(tc.failOn)
			m := h.Copri(tc.params)
			env := checkEnvelope(t, m, "authorization")
			allScalarsStrings(t, "", m)
			state := env["response_state"].(string)
			if !strings.HasPrefix(state, tc.wantState) {
				t.Fatalf("response_state %q, want %q", state, tc.wantState)
			}
			cookie := env["authcookie"].(string)
			if tc.wantState == "OK" {
				if len(cookie) < 30 || !cookieRE.MatchString(cookie) || env["user_id"] != DefaultCopriUser {
					t.Errorf("authcookie %q user_id %v", cookie, env["user_id"])
				}
				if !strings.HasPrefix(state, "OK: ") {
					t.Errorf("response_state %q", state)
				}
			} else if cookie != "" {
				t.Errorf("failure with authcookie %q", cookie)
			}
		})
	}

	t.Run("failure switch ends sessions", func(t *testing.T) {
		h := newHarness(t, testOptions())
		cookie := h.CopriLogin()
		h.sim.SetCopriLoginFailure(true)
		m := h.Copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {cookie}})
		if env := checkEnvelope(t, m, "user_bikes_occupied"); !strings.HasPrefix(env["response_state"].(string), "Failure") || env["authcookie"] != "" {
			t.Errorf("session survived: %v", env)
		}
		h.sim.SetCopriLoginFailure(false)
		h.CopriLogin()
	})

	t.Run("POST form", func(t *testing.T) {
		h := newHarness(t, testOptions())
		resp, body := h.Do(http.MethodPost, "/APIjsonserver", "", good.Encode(), "application/x-www-form-urlencoded")
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"response_state":"OK`) {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestCopriSessions(t *testing.T) {
	h := newHarness(t, testOptions())
	cookie := h.CopriLogin()
	for _, req := range []string{"user_bikes_occupied", "bikes_all"} {
		m := h.Copri(url.Values{"request": {req}, "authcookie": {cookie}})
		env := checkEnvelope(t, m, req)
		if !strings.HasPrefix(env["response_state"].(string), "OK") || env["authcookie"] != cookie {
			t.Errorf("%s: state %v cookie echoed %v", req, env["response_state"], env["authcookie"] == cookie)
		}
	}
	stale := []string{"", "6103_00000000000000000000000000000000_12345678"}
	for _, c := range stale {
		m := h.Copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {c}})
		env := checkEnvelope(t, m, "user_bikes_occupied")
		if !strings.HasPrefix(env["response_state"].(string), "Failure") || env["authcookie"] != "" {
			t.Errorf("cookie %q: %v", c, env)
		}
		if len(m["bikes_occupied"].(map[string]any)) != 0 {
			t.Error("rentals leaked without a session")
		}
	}
	m := h.Copri(url.Values{"request": {"authout"}, "authcookie": {cookie}})
	if env := checkEnvelope(t, m, "authout"); !strings.HasPrefix(env["response_state"].(string), "OK") || env["authcookie"] != "" {
		t.Errorf("authout %v", env)
	}
	m = h.Copri(url.Values{"request": {"bikes_all"}, "authcookie": {cookie}})
	if env := checkEnvelope(t, m, "bikes_all"); !strings.HasPrefix(env["response_state"].(string), "Failure") {
		t.Errorf("cookie still valid after authout: %v", env["response_state"])
	}
	m = h.Copri(url.Values{"request": {"teleport"}})
	if env := checkEnvelope(t, m, "teleport"); !strings.HasPrefix(env["response_state"].(string), "Failure") {
		t.Errorf("unknown request: %v", env["response_state"])
	}
}

func TestCopriRentals(t *testing.T) {
	o := testOptions()
	o.Locations = 40
	h := newHarness(t, o)
	cookie := h.CopriLogin()
	m := h.Copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {cookie}})
	allScalarsStrings(t, "", m)
	occ := m["bikes_occupied"].(map[string]any)
	if len(occ) < 3 {
		t.Fatalf("%d rentals, want at least 3", len(occ))
	}
	ref, err := os.ReadFile("testdata/reference-rental.json")
	if err != nil {
		t.Fatal(err)
	}
	var refRental map[string]any
	simtest.MustUnmarshal(t, ref, &refRental)

	longRE := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+0[12]$`)
	shortRE := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`)
	aliases := map[string]bool{}
	for _, l := range h.sim.Locations() {
		for _, d := range h.sim.Devices(l.ID) {
			if d.Type == string(typeBikeRent) {
				aliases[d.Alias] = true
			}
		}
	}
	var withKA, tariff, rentalDescr int
	for id, v := range occ {
		r := v.(map[string]any)
		if !regexp.MustCompile(`^\d+$`).MatchString(id) {
			t.Errorf("booking id %q", id)
		}
		for k := range refRental {
			if _, ok := r[k]; !ok && k != "tariff_description" {
				t.Errorf("rental %s lacks %q", id, k)
			}
		}
		if _, ok := r["K_a"]; ok {
			withKA++
		}
		switch {
		case r["tariff_description"] != nil:
			tariff++
		case r["rental_description"] != nil:
			rentalDescr++
		default:
			t.Errorf("rental %s has no tariff", id)
		}
		for _, k := range []string{"start_time", "request_time"} {
			if !longRE.MatchString(r[k].(string)) {
				t.Errorf("%s %q: want the long shape", k, r[k])
			}
		}
		if !shortRE.MatchString(r["end_time"].(string)) {
			t.Errorf("end_time %q: want the short shape", r["end_time"])
		}
		if !aliases[r["bike"].(string)] {
			t.Errorf("bike %v is no BIKE_RENT device's alias", r["bike"])
		}
		if r["state"] != "occupied" {
			t.Errorf("state %v", r["state"])
		}
		// Berlin summer time on the fake clock's date.
		start, err := time.Parse(copriLongTime, r["start_time"].(string))
		if err != nil || start.After(t0) || t0.Sub(start) > 6*time.Hour {
			t.Errorf("start_time %v (%v)", r["start_time"], err)
		}
	}
	t.Logf("%d rentals: %d with K_a, %d tariff_description, %d rental_description", len(occ), withKA, tariff, rentalDescr)

	// Rentals opened by faults show up and carry K_a on some.
	for _, l := range h.sim.Locations() {
		for _, d := range h.sim.Devices(l.ID) {
			if d.Type == string(typeBikeRent) {
				_ = h.sim.SetFault(d.ID, FaultOverdueRental)
			}
		}
	}
	m = h.Copri(url.Values{"request": {"user_bikes_occupied"}, "authcookie": {cookie}})
	occ = m["bikes_occupied"].(map[string]any)
	withKA, tariff, rentalDescr = 0, 0, 0
	for _, v := range occ {
		r := v.(map[string]any)
		if _, ok := r["K_a"]; ok {
			withKA++
		}
		if r["rental_description"] != nil {
			rentalDescr++
		}
	}
	if withKA == 0 || rentalDescr == 0 || withKA == len(occ) {
		t.Errorf("%d rentals: %d with K_a, %d rental_description: want a mix", len(occ), withKA, rentalDescr)
	}
}

func TestCopriBikesAll(t *testing.T) {
	o := testOptions()
	o.Locations = 40
	h := newHarness(t, o)
	cookie := h.CopriLogin()
	m := h.Copri(url.Values{"request": {"bikes_all"}, "authcookie": {cookie}})
	allScalarsStrings(t, "", m)
	bikes := m["bikes"].(map[string]any)
	names := map[string]bool{}
	for _, l := range h.sim.Locations() {
		names[l.Name] = true
	}
	rentals := h.sim.Rentals()
	occupied := map[string]bool{}
	for _, r := range rentals {
		occupied[r.Bike] = true
	}
	var n int
	for id, v := range bikes {
		b := v.(map[string]any)
		n++
		for _, k := range []string{"bike", "station", "state", "lock_state", "service_state", "system", "gps", "bike_group", "uri_operator", "description"} {
			if _, ok := b[k]; !ok {
				t.Errorf("bike %s lacks %q", id, k)
			}
		}
		if b["bike"] != id || !names[b["station"].(string)] {
			t.Errorf("bike %s: %v at %v", id, b["bike"], b["station"])
		}
		wantState := "available"
		if occupied[id] {
			wantState = "occupied"
		}
		if b["state"] != wantState && b["state"] != "defect" {
			t.Errorf("bike %s state %v, want %s", id, b["state"], wantState)
		}
		if !regexp.MustCompile(`^[0-3]$`).MatchString(b["service_state"].(string)) {
			t.Errorf("service_state %v", b["service_state"])
		}
	}
	if n == 0 {
		t.Fatal("no bikes")
	}
	// Filters.
	one := rentals[0]
	m = h.Copri(url.Values{"request": {"bikes_all"}, "authcookie": {cookie}, "bike": {one.Bike}})
	if got := m["bikes"].(map[string]any); len(got) != 1 {
		t.Errorf("bike filter: %d bikes", len(got))
	}
	m = h.Copri(url.Values{"request": {"bikes_all"}, "authcookie": {cookie}, "station": {one.Station}})
	for _, v := range m["bikes"].(map[string]any) {
		if v.(map[string]any)["station"] != one.Station {
			t.Errorf("station filter leaked %v", v)
		}
	}
}
