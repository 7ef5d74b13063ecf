package scrape

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A failing location says since when it fails — the first failed walk, not
// the latest — and what the Location API says it holds, so the status page
// can name it with its device count.
func TestFailingSinceAndExpectedDevices(t *testing.T) {
	fleet := newFleet(2)
	fleet.locations[1].Devices.Total = 12
	clk := newClock()
	s := newScraper(t, Options{Devices: fleet, Now: clk.Now})
	walk := func() LocationStatus {
		t.Helper()
		clk.Add(30 * time.Second)
		if err := s.WalkDevices(context.Background()); err != nil {
			t.Fatal(err)
		}
		return location(t, s.Snapshot(), "loc-1")
	}
	for _, step := range []struct {
		name        string
		fail        bool
		wantSinceAt time.Duration // after the first walk; -1: zero
	}{
		{"up", false, -1},
		{"first failure", true, 30 * time.Second},
		{"still failing: since stays", true, 30 * time.Second},
		{"recovered", false, -1},
		{"fails again: a new since", true, 120 * time.Second},
	} {
		t.Run(step.name, func(t *testing.T) {
			var err error
			if step.fail {
				err = errors.New("500 Internal Server Error")
			}
			fleet.setFail("loc-1", err)
			l := walk()
			if l.ExpectedDevices != 12 {
				t.Errorf("ExpectedDevices = %d, want devices.total 12", l.ExpectedDevices)
			}
			if step.wantSinceAt < 0 {
				if !l.FailingSince.IsZero() {
					t.Errorf("FailingSince = %v on an up location", l.FailingSince)
				}
				return
			}
			want := newClock().Now().Add(30*time.Second + step.wantSinceAt)
			if !l.FailingSince.Equal(want) {
				t.Errorf("FailingSince = %v, want %v", l.FailingSince, want)
			}
		})
	}
	if l := location(t, s.Snapshot(), "loc-0"); l.ExpectedDevices != 0 {
		t.Errorf("loc-0 without devices.total: ExpectedDevices = %d, want 0 (unknown)", l.ExpectedDevices)
	}
}
