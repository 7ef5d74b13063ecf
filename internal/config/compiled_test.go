package config

import (
	"testing"
	"time"
)

// A compiled Window answers as its Blackout does, at every minute of a
// week and for every kind of window, invalid ones included.
func TestWindowAgreesWithBlackout(t *testing.T) {
	for _, b := range []Blackout{
		{Start: "0 23 * * *", Duration: 2 * time.Hour, Timezone: "Europe/Berlin"},
		{Start: "0 22 * * 5", Duration: 4 * time.Hour, Timezone: "UTC"},
		{Start: "0 1 * * *", Duration: 3 * time.Hour, Timezone: "Europe/Berlin"},
		{Start: "30 0 12 * * *", Duration: time.Second},
		{Start: "0 23 * * *"},
	} {
		t.Run(b.Start, func(t *testing.T) {
			w, err := b.Window()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC) // spans the DST change
			for at := start; at.Before(start.Add(7 * 24 * time.Hour)); at = at.Add(time.Minute) {
				if w.Active(at) != b.Active(at) {
					t.Fatalf("at %s: window %v, blackout %v", at, w.Active(at), b.Active(at))
				}
			}
		})
	}
	for _, bad := range []Blackout{
		{Start: "nope", Duration: time.Hour},
		{Start: "@every 1m", Duration: time.Hour},
		{Start: "TZ=UTC 0 1 * * *", Duration: time.Hour},
		{Start: "* * * * *", Duration: time.Hour, Timezone: "Nowhere/X"},
	} {
		if _, err := bad.Window(); err == nil {
			t.Errorf("Window of %+v compiled", bad)
		}
	}
	if (Window{}).Active(time.Now()) {
		t.Error("the zero Window is active")
	}
}

// The hash follows every setting and no secret.
func TestHash(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Bikeep.ClientID, c.Bikeep.ClientSecret = "id", "first-secret"
		return c
	}
	h := base().Hash()
	if len(h) != 12 || h != base().Hash() {
		t.Fatalf("hash %q is not 12 stable hex digits", h)
	}
	rotated := base()
	rotated.Bikeep.ClientSecret = "second-secret"
	if rotated.Hash() != h {
		t.Error("a rotated secret changed the hash")
	}
	for name, change := range map[string]func(*Config){
		"schedule":   func(c *Config) { c.Schedule.Devices = "@every 1m" },
		"locations":  func(c *Config) { c.Bikeep.Locations = Locations{IDs: []string{"a"}} },
		"exclusions": func(c *Config) { c.Remediation.Exclude.Tags = nil },
		"per device": func(c *Config) { c.Metrics.PerDevice = true },
	} {
		c := base()
		change(c)
		if c.Hash() == h {
			t.Errorf("changing the %s kept the hash", name)
		}
	}
}

// Compiling a blackout once is what keeps the gate cheap: Blackout.Active
// parses the spec and loads the zone on every call, Window.Active does not.
func BenchmarkBlackoutCheck(b *testing.B) {
	bl := Blackout{Start: "0 23 * * *", Duration: 2 * time.Hour, Timezone: "Europe/Berlin"}
	at := time.Date(2026, 1, 14, 22, 30, 0, 0, time.UTC)
	b.Run("Blackout.Active", func(b *testing.B) {
		for b.Loop() {
			bl.Active(at)
		}
	})
	w, err := bl.Window()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Window.Active", func(b *testing.B) {
		for b.Loop() {
			w.Active(at)
		}
	})
}
