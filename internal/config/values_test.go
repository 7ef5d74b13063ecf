package config

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestBlackoutActive(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(loc *time.Location, s string) time.Time {
		t.Helper()
		v, err := time.ParseInLocation("2006-01-02 15:04:05.999999999", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	nightly := Blackout{Start: "0 23 * * *", Duration: 2 * time.Hour, Timezone: "Europe/Berlin"}
	friday := Blackout{Start: "0 22 * * 5", Duration: 4 * time.Hour} // UTC by default
	second := Blackout{Start: "30 0 12 * * *", Duration: time.Second, Timezone: "UTC"}
	hourly := Blackout{Start: "0 * * * *", Duration: 2 * time.Hour, Timezone: "UTC"}
	dst := Blackout{Start: "0 1 * * *", Duration: 3 * time.Hour, Timezone: "Europe/Berlin"}
	tests := []struct {
		name string
		b    Blackout
		t    time.Time
		want bool
	}{
		{"just before opening", nightly, at(berlin, "2026-01-14 22:59:59.999999999"), false},
		{"at opening", nightly, at(berlin, "2026-01-14 23:00:00"), true},
		{"before midnight", nightly, at(berlin, "2026-01-14 23:59:59"), true},
		{"at midnight", nightly, at(berlin, "2026-01-15 00:00:00"), true},
		{"after midnight", nightly, at(berlin, "2026-01-15 00:30:00"), true},
		{"last instant", nightly, at(berlin, "2026-01-15 00:59:59.999999999"), true},
		{"at closing", nightly, at(berlin, "2026-01-15 01:00:00"), false},
		{"midday", nightly, at(berlin, "2026-01-15 12:00:00"), false},
		{"given in UTC, inside", nightly, at(time.UTC, "2026-01-14 22:00:00"), true},      // 23:00 CET
		{"given in UTC, outside", nightly, at(time.UTC, "2026-01-14 21:59:59"), false},    // 22:59 CET
		{"given in UTC, summer", nightly, at(time.UTC, "2026-07-14 21:00:00"), true},      // 23:00 CEST
		{"given in UTC, summer out", nightly, at(time.UTC, "2026-07-14 23:00:00"), false}, // 01:00 CEST
		{"friday night, before", friday, at(time.UTC, "2026-01-16 21:59:59"), false},
		{"friday night, open", friday, at(time.UTC, "2026-01-16 22:00:00"), true},
		{"saturday early", friday, at(time.UTC, "2026-01-17 01:59:59"), true},
		{"saturday closed", friday, at(time.UTC, "2026-01-17 02:00:00"), false},
		{"thursday night", friday, at(time.UTC, "2026-01-15 23:00:00"), false},
		{"UTC default in another zone", friday, at(berlin, "2026-01-16 23:30:00"), true}, // 22:30 UTC
		{"one second, before", second, at(time.UTC, "2026-01-15 12:00:29.999"), false},
		{"one second, open", second, at(time.UTC, "2026-01-15 12:00:30.5"), true},
		{"one second, closed", second, at(time.UTC, "2026-01-15 12:00:31"), false},
		{"overlapping windows", hourly, at(time.UTC, "2026-01-15 07:12:00"), true},
		// Spring forward on 2026-03-29: 01:00 CET + 3h = 05:00 CEST.
		{"across DST change, open", dst, at(berlin, "2026-03-29 04:59:59"), true},
		{"across DST change, closed", dst, at(berlin, "2026-03-29 05:00:00"), false},
		{"zero duration", Blackout{Start: "0 23 * * *"}, at(time.UTC, "2026-01-14 23:00:00"), false},
		{"invalid spec", Blackout{Start: "nope", Duration: time.Hour}, at(time.UTC, "2026-01-14 23:00:00"), false},
		{"@every is never active", Blackout{Start: "@every 1m", Duration: time.Hour}, at(time.UTC, "2026-01-14 23:00:00"), false},
		{"unknown zone", Blackout{Start: "* * * * *", Duration: time.Hour, Timezone: "Nowhere/X"}, at(time.UTC, "2026-01-14 23:00:00"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.Active(tt.t); got != tt.want {
				t.Errorf("%+v.Active(%s) = %v, want %v", tt.b, tt.t, got, tt.want)
			}
		})
	}
}

func TestBlackoutTimezoneDefaultsToUTC(t *testing.T) {
	cfg, err := Parse([]byte("bikeep: {token: t}\nremediation:\n  blackout:\n    - {start: '0 2 * * *', duration: 1h}\n    - {start: '0 3 * * *', duration: 1h, timezone: Asia/Tokyo}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if b := cfg.Remediation.Blackout; b[0].Timezone != "UTC" || b[1].Timezone != "Asia/Tokyo" {
		t.Errorf("timezones = %q, %q", b[0].Timezone, b[1].Timezone)
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		in    string
		want  Rate
		limit rate.Limit
		err   string
	}{
		{in: "30/m", want: Rate{30, time.Minute}, limit: 0.5},
		{in: "1/s", want: Rate{1, time.Second}, limit: 1},
		{in: "100/h", want: Rate{100, time.Hour}, limit: rate.Limit(100.0 / 3600)},
		{in: " 5/s ", want: Rate{5, time.Second}, limit: 5},
		{in: "fast", err: `want N/s, N/m or N/h, got "fast"`},
		{in: "0/m", err: `want N/s, N/m or N/h, got "0/m"`},
		{in: "-1/m", err: `want N/s, N/m or N/h, got "-1/m"`},
		{in: "30/min", err: `want N/s, N/m or N/h, got "30/min"`},
		{in: "30", err: `want N/s, N/m or N/h, got "30"`},
		{in: "1.5/s", err: `want N/s, N/m or N/h, got "1.5/s"`},
		{in: "99999999999999999999/s", err: `want N/s, N/m or N/h, got "99999999999999999999/s"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("ParseRate(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRate(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.Limit() != tt.limit {
				t.Errorf("Limit() = %v, want %v", got.Limit(), tt.limit)
			}
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not round-trip: %+v, %v", got.String(), back, err)
			}
		})
	}
	if s := (Rate{Count: 3, Per: 2 * time.Minute}).String(); s != "3/2m0s" {
		t.Errorf("odd period String() = %q", s)
	}
	if l := (Rate{}).Limit(); l != 0 {
		t.Errorf("zero Rate Limit() = %v", l)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct{ in, field, prefix string }{
		{"alias", MatchAlias, ""},
		{"code", MatchCode, ""},
		{"hardware_id", MatchHardwareID, ""},
		{"tag:copri-", MatchTag, "copri-"},
		{"tag:bike:", MatchTag, "bike:"},
		{"tag:", "", ""},
		{"tag", "", ""},
		{"Alias", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		m := Match{BikeToDevice: tt.in}
		if m.Field() != tt.field || m.TagPrefix() != tt.prefix {
			t.Errorf("Match{%q}: Field() = %q, TagPrefix() = %q; want %q, %q", tt.in, m.Field(), m.TagPrefix(), tt.field, tt.prefix)
		}
	}
}

func TestParseCron(t *testing.T) {
	now := time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
	tests := []struct{ spec, next, err string }{
		{spec: "@every 30s", next: "2026-01-15T10:00:30Z"},
		{spec: "*/15 * * * *", next: "2026-01-15T10:15:00Z"},
		{spec: "10 * * * * *", next: "2026-01-15T10:00:10Z"},
		{spec: "@daily", next: "2026-01-16T00:00:00Z"},
		{spec: "TZ=UTC", err: "time zone prefix without a schedule"},
		{spec: "CRON_TZ=Europe/Berlin", err: "time zone prefix without a schedule"},
		{spec: "every 30s", err: "expected 5 to 6 fields, found 2: [every 30s]"},
	}
	for _, tt := range tests {
		s, err := ParseCron(tt.spec)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseCron(%q) error = %v, want %q", tt.spec, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCron(%q): %v", tt.spec, err)
			continue
		}
		if got := s.Next(now).Format(time.RFC3339); got != tt.next {
			t.Errorf("ParseCron(%q).Next = %s, want %s", tt.spec, got, tt.next)
		}
	}
}

func TestLocationsYAML(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"auto", "auto"},
		{"[a, b]", "a,b"},
		{"[&x a, 7]", "a,7"},
		{"[&x a, {b: *x}]", "error"},
	} {
		cfg, err := Parse([]byte("bikeep: {token: t, locations: "+tt.in+"}\n"), "")
		if tt.want == "error" {
			if want := `bikeep.locations: want "auto" or a list of location ids, got a list holding a mapping (line 1)`; err == nil || err.Error() != want {
				t.Errorf("locations: %s → %v, want %q", tt.in, err, want)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(cfg.Bikeep.Locations.IDs, ",")
		if cfg.Bikeep.Locations.Auto {
			got = "auto"
		}
		if got != tt.want {
			t.Errorf("locations: %s → %q, want %q", tt.in, got, tt.want)
		}
	}
}
