package status

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/scrape"
)

// walkSnapshot is one walk of a two-location fleet at time at: loc-a holds
// devices dev-1..dev-3 (dev-3 tagged "vip"), loc-b holds dev-9.
func walkSnapshot(at time.Time, faults ...health.Fault) *scrape.Snapshot {
	d3 := dev("dev-3", "A-03", bikeep.TypeBikeDock, bikeep.HealthUnhealthy)
	d3.Tags = []string{"vip"}
	return &scrape.Snapshot{
		Taken:   at,
		Sources: []scrape.SourceStatus{{Name: scrape.SourceBikeep, Up: true, Walked: true, LastSuccess: at, LastDuration: time.Second}},
		Locations: []scrape.LocationStatus{
			{ID: "loc-a", Name: "Alpha", Up: true, LastSuccess: at, ExpectedDevices: 3, Devices: bikeep.Records(
				dev("dev-1", "A-01", bikeep.TypeBikeDock, bikeep.HealthUnhealthy),
				dev("dev-2", "A-02", bikeep.TypeBikeDock, bikeep.HealthHealthy),
				d3,
			)},
			{ID: "loc-b", Name: "Beta", Up: true, LastSuccess: at, Devices: bikeep.Records(
				dev("dev-9", "B-09", bikeep.TypeBikeDock, bikeep.HealthUnhealthy),
			)},
		},
		Faults: faults,
	}
}

func unhealthy(device, alias, loc string, firstSeen time.Time) health.Fault {
	return health.Fault{Kind: health.Unhealthy, DeviceID: device, Alias: alias, LocationID: loc, DeviceType: bikeep.TypeBikeDock,
		Recoverable: true, Since: firstSeen, FirstSeen: firstSeen, Walks: 2}
}

// cell returns the Remediation cell of a device's row in the faulty-devices
// table, or of its row in the ended-faults table.
func cell(t *testing.T, page, section, deviceID string) string {
	t.Helper()
	i := strings.Index(page, `<section id="`+section+`"`)
	if i < 0 {
		t.Fatalf("no section %s", section)
	}
	sec := page[i:]
	sec = sec[:strings.Index(sec, "</section>")]
	for _, row := range strings.Split(sec, "<tr") {
		if strings.Contains(row, `title="`+deviceID+`"`) {
			return row[strings.Index(row, `class="rem"`):]
		}
	}
	return ""
}

func TestRemediationWords(t *testing.T) {
	now := fixedNow
	f := unhealthy("dev-1", "A-01", "loc-a", now.Add(-5*time.Second))
	skip := func(reason string) Decision {
		return Decision{Time: now, DeviceID: "dev-1", Alias: "A-01", LocationID: "loc-a", Fault: "unhealthy", Source: "walk", Outcome: "skipped", Reason: reason}
	}
	base := func() *Remediation {
		return &Remediation{Enabled: true, Trigger: "internal", MinFaultAge: 20 * time.Second, Cooldown: 30 * time.Second}
	}
	for _, tc := range []struct {
		name  string
		fault health.Fault
		rem   func() *Remediation
		want  string
	}{
		{"remediation off", f, func() *Remediation { return nil }, `<span class="muted">—</span>`},
		{"no decision yet", f, base, "no decision yet"},
		{"not recoverable, no decision", health.Fault{Kind: health.Dead, DeviceID: "dev-1", LocationID: "loc-a", FirstSeen: now}, base,
			"not recoverable by sync-device — needs a visit"},
		{"too young, with the time it may be sent", f, func() *Remediation {
			r := base()
			r.Decisions = []Decision{skip("too_young")}
			return r
		}, "waiting: too young until 09:30:15"},
		{"too young by walks only", unhealthy("dev-1", "A-01", "loc-a", now.Add(-time.Minute)), func() *Remediation {
			r := base()
			r.Decisions = []Decision{skip("too_young")}
			return r
		}, "waiting: too young (seen by one walk so far)"},
		{"cooldown until the last send plus cooldown", f, func() *Remediation {
			r := base()
			r.Decisions = []Decision{skip("cooldown"),
				{Time: now.Add(-4 * time.Second), DeviceID: "dev-1", Fault: "unhealthy", Outcome: "sent", Attempt: 1, CommandID: "c-1", Result: "success"}}
			return r
		}, "cooldown until 09:30:26"},
		{"location storm", f, func() *Remediation {
			r := base()
			r.Storms = []Storm{{Scope: "loc-a", Since: now.Add(-4 * time.Minute)}}
			r.Decisions = []Decision{skip("storm")}
			return r
		}, "storm: in this location since 09:26:00, no new commands"},
		{"fleet storm", f, func() *Remediation {
			r := base()
			r.Storms = []Storm{{Scope: "fleet", Since: now.Add(-time.Minute)}, {Scope: "loc-a", Since: now}}
			r.Decisions = []Decision{skip("storm")}
			return r
		}, "storm: fleet-wide since 09:29:00"},
		{"excluded by tag", unhealthy("dev-3", "A-03", "loc-a", now), func() *Remediation {
			r := base()
			r.Rules = policy.Compile(config.Remediation{Exclude: config.Exclude{Tags: []string{"other", "vip"}}})
			d := skip("excluded")
			d.DeviceID = "dev-3"
			r.Decisions = []Decision{d}
			return r
		}, "excluded by tag vip"},
		{"excluded by location", f, func() *Remediation {
			r := base()
			r.Rules = policy.Compile(config.Remediation{Exclude: config.Exclude{Locations: []string{"loc-a"}}})
			r.Decisions = []Decision{skip("excluded")}
			return r
		}, "excluded by location"},
		{"excluded by device type", f, func() *Remediation {
			r := base()
			r.Rules = policy.Compile(config.Remediation{Exclude: config.Exclude{DeviceTypes: []string{string(bikeep.TypeBikeDock)}}})
			r.Decisions = []Decision{skip("excluded")}
			return r
		}, "excluded by device type"},
		{"excluded under rules since reloaded away", f, func() *Remediation {
			r := base()
			r.Rules = policy.Compile(config.Remediation{Exclude: config.Exclude{Locations: []string{"loc-b"}}})
			r.Decisions = []Decision{skip("excluded")}
			return r
		}, "excluded by remediation.exclude"},
		{"paused", f, func() *Remediation {
			r := base()
			r.Decisions = []Decision{skip("paused")}
			return r
		}, "paused by an operator"},
		{"dry run", f, func() *Remediation {
			r := base()
			r.Decisions = []Decision{{Time: now, DeviceID: "dev-1", Fault: "unhealthy", Outcome: "dry_run", Attempt: 1}}
			return r
		}, "dry run: would send attempt 1"},
		{"command in flight", f, func() *Remediation {
			r := base()
			r.DeviceState = map[string]string{"dev-1": "in flight (attempt 1)"}
			r.Decisions = []Decision{{Time: now, DeviceID: "dev-1", Fault: "unhealthy", Outcome: "sent", Attempt: 1, CommandID: "c-1"}}
			return r
		}, "in flight (attempt 1)</span><ul class=\"cmds\"><li>#1 sync-device · running"},
		{"exhausted with a verification on the decision", f, func() *Remediation {
			r := base()
			r.Exhausted = []Exhausted{{DeviceID: "dev-1", LocationID: "loc-a", Fault: "unhealthy", Attempts: 3}}
			r.Decisions = []Decision{{Time: now, DeviceID: "dev-1", Fault: "unhealthy", Outcome: "sent", Attempt: 3, PowerCycle: true, CommandID: "c-3", Result: "not_fixed"}}
			return r
		}, "exhausted after 3 — not fixed</span><ul class=\"cmds\"><li>#3 sync-device &#43; power cycle · success → not fixed"},
		{"a refused Alertmanager request does not hide the walk's decision", f, func() *Remediation {
			r := base()
			am := skip("trigger")
			am.Source = "alertmanager"
			r.Decisions = []Decision{am, skip("too_young")}
			return r
		}, "waiting: too young until 09:30:15"},
		{"trigger alertmanager, no request yet", f, func() *Remediation {
			r := base()
			r.Trigger = "alertmanager"
			return r
		}, "left to Alertmanager: no request yet"},
		{"a decision older than the episode is not about it", f, func() *Remediation {
			r := base()
			d := skip("paused")
			d.Time = now.Add(-time.Hour)
			r.Decisions = []Decision{d}
			return r
		}, "no decision yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := walkSnapshot(now, tc.fault)
			page := get(newTestHandler(t, Options{Snapshot: func() *scrape.Snapshot { return s }, Remediation: tc.rem}), http.MethodGet, "/").Body.String()
			if got := cell(t, page, "faults", tc.fault.DeviceID); !strings.Contains(got, tc.want) {
				t.Errorf("Remediation cell lacks %q:\n%s", tc.want, got)
			}
		})
	}
}

// A fault's life, walk by walk, as the page tells it: commands appear with
// their results, each is judged fixed / not fixed by the first walk after it
// ended, and the fault stays on the page for an hour after it ends.
func TestFaultLifecycle(t *testing.T) {
	var mu sync.Mutex
	now := fixedNow
	first := now
	var snap *scrape.Snapshot
	rem := &Remediation{Enabled: true, Trigger: "internal", MinFaultAge: 20 * time.Second, Cooldown: 30 * time.Second}
	h := newTestHandler(t, Options{
		Snapshot:    func() *scrape.Snapshot { mu.Lock(); defer mu.Unlock(); return snap },
		Remediation: func() *Remediation { mu.Lock(); defer mu.Unlock(); c := *rem; return &c },
		Now:         func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
	}).(*Handler)
	f := unhealthy("dev-1", "A-01", "loc-a", first)
	g := unhealthy("dev-9", "B-09", "loc-b", first)
	decide := func(d Decision) {
		d.DeviceID, d.Alias, d.LocationID, d.Fault, d.Source = "dev-1", "A-01", "loc-a", "unhealthy", "walk"
		rem.Decisions = append([]Decision{d}, rem.Decisions...)
	}
	setResult := func(attempt int, result string) {
		for i := range rem.Decisions {
			if rem.Decisions[i].Outcome == "sent" && rem.Decisions[i].Attempt == attempt {
				rem.Decisions[i].Result = result
			}
		}
	}
	// walk advances the clock by 10 s, publishes a walk with faults and lets
	// the engine decide (fn), then the page observes it, as the daemon does.
	walk := func(fn func(), faults ...health.Fault) {
		mu.Lock()
		now = now.Add(10 * time.Second)
		snap = walkSnapshot(now, faults...)
		if fn != nil {
			fn()
		}
		s := snap
		mu.Unlock()
		h.Observe(s)
	}
	between := func(fn func()) { mu.Lock(); fn(); mu.Unlock() }
	page := func() string { return get(h, http.MethodGet, "/").Body.String() }
	expect := func(step, section, device string, want ...string) {
		t.Helper()
		c := cell(t, page(), section, device)
		for _, w := range want {
			if !strings.Contains(c, w) {
				t.Errorf("%s: %s row of %s lacks %q:\n%s", step, section, device, w, c)
			}
		}
	}

	walk(func() { decide(Decision{Time: now, Outcome: "skipped", Reason: "too_young"}) }, f, g)
	expect("first walk", "faults", "dev-1", "waiting: too young until 09:30:20")

	walk(func() { decide(Decision{Time: now, Outcome: "sent", Attempt: 1, CommandID: "cmd-1"}) }, f, g)
	expect("sent", "faults", "dev-1", "command #1 sent 09:30:20, waiting for the device", "#1 sync-device · running", "cmd-1")

	between(func() { setResult(1, "success") })
	expect("result in", "faults", "dev-1", "command #1 ended success — awaiting the next walk to verify", "#1 sync-device · success <span")

	walk(func() { decide(Decision{Time: now, Outcome: "skipped", Reason: "cooldown"}) }, f, g)
	expect("still faulty after the command", "faults", "dev-1", "cooldown until 09:30:50", "#1 sync-device · success → not fixed")

	walk(func() {
		decide(Decision{Time: now, Outcome: "sent", Attempt: 2, PowerCycle: true, CommandID: "cmd-2"})
		rem.Exhausted = []Exhausted{{DeviceID: "dev-1", LocationID: "loc-a", Fault: "unhealthy", Attempts: 2}}
	}, f, g)
	between(func() { setResult(2, "success") })
	expect("exhausted, last one not judged yet", "faults", "dev-1", "exhausted after 2 — last command success, awaiting verification")

	walk(nil, f, g)
	expect("exhausted and judged", "faults", "dev-1", "exhausted after 2 — not fixed",
		"#1 sync-device · success → not fixed", "#2 sync-device &#43; power cycle · success → not fixed")

	// The fault clears: a complete walk sees the device without it. dev-9's
	// location goes stale: its fault is no longer reported, which is not a cure.
	walk(func() { rem.Exhausted = nil }, g)
	expect("cleared", "resolved", "dev-1", "cleared after command #2 — fixed", "#2 sync-device &#43; power cycle · success → fixed")
	mu.Lock()
	now = now.Add(10 * time.Second)
	snap = walkSnapshot(now)
	snap.Locations[1] = scrape.LocationStatus{ID: "loc-b", Name: "Beta", Stale: true, LastSuccess: now.Add(-5 * time.Minute), LastError: "timeout"}
	s := snap
	mu.Unlock()
	h.Observe(s)
	p := page()
	expect("lost sight", "resolved", "dev-9", "lost sight: the location stopped answering (data stale)")
	if !strings.Contains(p, `<tr class="cleared"><td data-label="Alias"><span class="alias" title="A-01">`) ||
		!strings.Contains(p, `<tr class="lost"><td data-label="Alias"><span class="alias" title="B-09">`) {
		t.Error("ended rows not classed cleared / lost")
	}
	if !strings.Contains(p, "Ended in the last hour <small>(2)</small>") {
		t.Error("ended section does not count 2")
	}

	// An hour later they are gone.
	walk(func() { now = now.Add(ResolvedFor) })
	if p := page(); !strings.Contains(p, "No fault ended in the last hour.") {
		t.Errorf("ended faults kept beyond %v", ResolvedFor)
	}
}

func TestEndings(t *testing.T) {
	now := fixedNow
	f := unhealthy("dev-1", "A-01", "loc-a", now)
	for _, tc := range []struct {
		name string
		next func() *scrape.Snapshot
		want string
	}{
		{"cleared by itself", func() *scrape.Snapshot { return walkSnapshot(now.Add(10 * time.Second)) }, "cleared by itself"},
		{"device gone from a complete list", func() *scrape.Snapshot {
			s := walkSnapshot(now.Add(10 * time.Second))
			s.Locations[0].Devices = s.Locations[0].Devices[1:]
			return s
		}, "lost sight: the device is no longer in its location&#39;s list"},
		{"location gone", func() *scrape.Snapshot {
			s := walkSnapshot(now.Add(10 * time.Second))
			s.Locations = s.Locations[1:]
			return s
		}, "lost sight: the location is no longer listed"},
		{"new episode", func() *scrape.Snapshot {
			return walkSnapshot(now.Add(10*time.Second), unhealthy("dev-1", "A-01", "loc-a", now.Add(10*time.Second)))
		}, "cleared, then came back as a new episode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := walkSnapshot(now, f)
			h := newTestHandler(t, Options{Snapshot: func() *scrape.Snapshot { return s }}).(*Handler)
			h.Observe(s)
			s = tc.next()
			if got := cell(t, get(h, http.MethodGet, "/").Body.String(), "resolved", "dev-1"); !strings.Contains(got, tc.want) {
				t.Errorf("ending lacks %q:\n%s", tc.want, got)
			}
		})
	}
}

// The memory of ended faults is bounded: a storm that clears thousands of
// faults at once keeps the newest MaxRows.
func TestResolvedBounded(t *testing.T) {
	var faults []health.Fault
	for i := range MaxRows + 50 {
		faults = append(faults, unhealthy(fmt.Sprintf("dev-x%04d", i), "X", "loc-a", fixedNow))
	}
	s := walkSnapshot(fixedNow, faults...)
	h := newTestHandler(t, Options{Snapshot: func() *scrape.Snapshot { return s }}).(*Handler)
	h.Observe(s)
	h.Observe(walkSnapshot(fixedNow.Add(10 * time.Second)))
	if n := len(h.mem.resolved); n != MaxRows {
		t.Errorf("%d ended faults kept, want %d", n, MaxRows)
	}
}

func TestPartialLocation(t *testing.T) {
	s := walkSnapshot(fixedNow)
	s.Locations[0].Undecodable, s.Locations[0].DecodeError = 2, `device 4: "id" is not valid UTF-8`
	page := get(newTestHandler(t, Options{Snapshot: func() *scrape.Snapshot { return s }}), http.MethodGet, "/").Body.String()
	for _, want := range []string{
		`<span class="badge warn">partial</span>`,
		"partial: 2 devices undecodable — device 4: &#34;id&#34; is not valid UTF-8",
		"3 decoded, 2 undecodable · 3 expected",
		`<small>in the walk of</small> <time datetime="2025-05-12T09:30:00Z">`,
		`<span class="muted">0 of 2 locations failing</span>, <span class="warn">1 partial</span>`,
		`<tr><td>partial (some devices undecodable)</td><td class="n warn">1</td></tr>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// Observe runs in the walk's goroutine while pages are served.
func TestObserveWhileServing(t *testing.T) {
	var mu sync.Mutex
	s := walkSnapshot(fixedNow, unhealthy("dev-1", "A-01", "loc-a", fixedNow))
	h := newTestHandler(t, Options{
		Snapshot:    func() *scrape.Snapshot { mu.Lock(); defer mu.Unlock(); return s },
		Remediation: fixtureRemediation,
	}).(*Handler)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 50 {
			next := walkSnapshot(fixedNow.Add(time.Duration(i)*time.Second), unhealthy("dev-1", "A-01", "loc-a", fixedNow))
			if i%2 == 1 {
				next = walkSnapshot(fixedNow.Add(time.Duration(i) * time.Second))
			}
			mu.Lock()
			s = next
			mu.Unlock()
			h.Observe(next)
		}
	}()
	go func() {
		defer wg.Done()
		for range 50 {
			if code := get(h, http.MethodGet, "/").Code; code != http.StatusOK {
				t.Errorf("code %d", code)
			}
		}
	}()
	wg.Wait()
}
