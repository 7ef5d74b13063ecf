package policy

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

var update = flag.Bool("update", false, "rewrite docs/remediation-gates.md from the gate table")

var t0 = time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)

// passing returns an input every gate lets through, with the default
// policy: a 10-minute-old hardware_error seen by 3 walks on a device that
// offers sync-device, a full token bucket and no shared state.
func passing() *Input {
	p := config.Default().Remediation
	dev := &record.Device{ID: "d1", Type: record.TypeLocker, Tags: []string{"zone-a"},
		Commands: record.AddCommand(0, record.CmdSyncDevice)}
	f := &health.Fault{Kind: health.HardwareError, DeviceID: "d1", LocationID: "L1", DeviceType: bikeep.TypeLocker,
		Recoverable: true, FirstSeen: t0.Add(-10 * time.Minute), Walks: 3}
	return &Input{Rules: Compile(p), Now: t0, Source: SourceWalk, Kind: f.Kind, LocationID: "L1",
		Fault: f, Device: dev, Tokens: 1}
}

// TestGateTable sets up, for each gate, the smallest change to a passing
// input that makes exactly that gate refuse, and checks the boundary that
// lets it pass again.
func TestGateTable(t *testing.T) {
	withRules := func(mut func(*config.Remediation)) func(*Input) {
		return func(in *Input) {
			p := in.Rules.Remediation
			mut(&p)
			in.Rules = Compile(p)
		}
	}
	tests := []struct {
		name  string
		setup func(*Input)
		want  string
	}{
		{"every gate passes", func(*Input) {}, ""},
		{"disabled", withRules(func(p *config.Remediation) { p.Enabled = false }), ReasonDisabled},
		{"alertmanager request, trigger internal", func(in *Input) {
			in.Source = SourceAlertmanager
			in.Rules = Compile(func() config.Remediation { p := in.Rules.Remediation; p.Trigger = config.TriggerInternal; return p }())
		}, ReasonTrigger},
		{"alertmanager request, trigger both", func(in *Input) {
			in.Source = SourceAlertmanager
			in.Rules = Compile(func() config.Remediation { p := in.Rules.Remediation; p.Trigger = config.TriggerBoth; return p }())
		}, ""},
		{"paused", func(in *Input) { in.Paused = true }, ReasonPaused},
		{"blackout", func(in *Input) { in.Blackout = true }, ReasonBlackout},
		{"excluded location", withRules(func(p *config.Remediation) { p.Exclude.Locations = []string{"L1"} }), ReasonExcluded},
		{"excluded type", withRules(func(p *config.Remediation) { p.Exclude.DeviceTypes = []string{"LOCKER"} }), ReasonExcluded},
		{"excluded tag", withRules(func(p *config.Remediation) { p.Exclude.Tags = []string{"zone-a"} }), ReasonExcluded},
		{"excluded type from the fault when the device is gone", func(in *Input) {
			withRules(func(p *config.Remediation) { p.Exclude.DeviceTypes = []string{"LOCKER"} })(in)
			in.Device = nil
		}, ReasonExcluded},
		{"fault not active", func(in *Input) { in.Fault = nil }, ReasonNotActive},
		{"device not in the snapshot", func(in *Input) { in.Device = nil }, ReasonNotActive},
		{"kind not recoverable, not active", func(in *Input) { in.Kind, in.Fault = health.Dead, nil }, ReasonNotRecoverable},
		{"device dead", func(in *Input) { in.Fault.Recoverable = false }, ReasonNotRecoverable},
		{"no sync-device", func(in *Input) { in.Device.Commands = record.AddCommand(0, record.CmdLock) }, ReasonUnsupported},
		{"deep sleep, local wakeup", func(in *Input) {
			in.Device.SleepState, in.Device.PowerSave = record.SleepDeep, record.PowerLocalWakeup
		}, ReasonUnsupported},
		{"just under min_fault_age", func(in *Input) { in.Fault.FirstSeen = t0.Add(-2*time.Minute + time.Nanosecond) }, ReasonTooYoung},
		{"exactly min_fault_age", func(in *Input) { in.Fault.FirstSeen = t0.Add(-2 * time.Minute) }, ""},
		{"one walk", func(in *Input) { in.Fault.Walks = 1 }, ReasonTooYoung},
		{"storm", func(in *Input) { in.Storm = true }, ReasonStorm},
		{"device in flight", func(in *Input) { in.Shared.DeviceInFlight = true }, ReasonInFlight},
		{"cooldown just under", func(in *Input) { in.Shared.LastSend = t0.Add(-15*time.Minute + time.Nanosecond) }, ReasonCooldown},
		{"cooldown exactly passed", func(in *Input) { in.Shared.LastSend = t0.Add(-15 * time.Minute) }, ""},
		{"attempts max-1", func(in *Input) { in.Shared.Attempts = 2 }, ""},
		{"attempts max", func(in *Input) { in.Shared.Attempts = 3 }, ReasonExhausted},
		{"in-flight cap reached", func(in *Input) { in.Shared.InFlight = 10 }, ReasonMaxInFlight},
		{"in-flight cap not reached", func(in *Input) { in.Shared.InFlight = 9 }, ""},
		{"stopped", func(in *Input) { in.Stopped = true }, ReasonStopped},
		{"backing off", func(in *Input) { in.BackoffUntil = t0.Add(time.Nanosecond) }, ReasonThrottled},
		{"backoff over", func(in *Input) { in.BackoffUntil = t0 }, ""},
		{"bucket empty", func(in *Input) { in.Tokens = 0.999 }, ReasonRateLimited},
		{"dry run", withRules(func(p *config.Remediation) { p.DryRun = true }), ReasonDryRun},
		// Order: each pair has both gates refusing; the earlier one wins.
		{"disabled before paused", func(in *Input) {
			withRules(func(p *config.Remediation) { p.Enabled = false })(in)
			in.Paused = true
		}, ReasonDisabled},
		{"blackout before excluded", func(in *Input) {
			withRules(func(p *config.Remediation) { p.Exclude.Locations = []string{"L1"} })(in)
			in.Blackout = true
		}, ReasonBlackout},
		{"not recoverable before unsupported", func(in *Input) { in.Fault.Recoverable, in.Device.Commands = false, 0 }, ReasonNotRecoverable},
		{"unsupported before too young", func(in *Input) { in.Fault.Walks, in.Device.Commands = 1, 0 }, ReasonUnsupported},
		{"too young before storm", func(in *Input) { in.Fault.Walks, in.Storm = 1, true }, ReasonTooYoung},
		{"storm before in flight", func(in *Input) { in.Storm, in.Shared.DeviceInFlight = true, true }, ReasonStorm},
		{"in flight before cooldown", func(in *Input) { in.Shared.DeviceInFlight, in.Shared.LastSend = true, t0 }, ReasonInFlight},
		{"cooldown before exhausted", func(in *Input) { in.Shared.LastSend, in.Shared.Attempts = t0, 3 }, ReasonCooldown},
		{"exhausted before in-flight cap", func(in *Input) { in.Shared.Attempts, in.Shared.InFlight = 3, 10 }, ReasonExhausted},
		{"in-flight cap before stopped", func(in *Input) { in.Shared.InFlight, in.Stopped = 10, true }, ReasonMaxInFlight},
		{"stopped before throttled", func(in *Input) { in.Stopped, in.BackoffUntil = true, t0.Add(time.Hour) }, ReasonStopped},
		{"throttled before rate", func(in *Input) { in.BackoffUntil, in.Tokens = t0.Add(time.Hour), 0 }, ReasonThrottled},
		{"rate before dry run", func(in *Input) {
			withRules(func(p *config.Remediation) { p.DryRun = true })(in)
			in.Tokens = 0
		}, ReasonRateLimited},
	}
	table := NewTable()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := passing()
			tc.setup(in)
			if got := table.First(in); got != tc.want {
				t.Fatalf("first refusal %q, want %q", got, tc.want)
			}
			v := table.Decide(in)
			switch tc.want {
			case "":
				if v.Outcome != OutcomeSent || v.Attempt != in.Shared.Attempts+1 {
					t.Fatalf("verdict %+v, want sent as attempt %d", v, in.Shared.Attempts+1)
				}
			case ReasonDryRun:
				if v.Outcome != OutcomeDryRun || v.Attempt != in.Shared.Attempts+1 {
					t.Fatalf("verdict %+v, want dry_run", v)
				}
			default:
				if v.Outcome != OutcomeSkipped || v.Reason != tc.want || v.Attempt != in.Shared.Attempts {
					t.Fatalf("verdict %+v, want skipped %q", v, tc.want)
				}
			}
		})
	}
}

// TestSharedGates: what a Store re-checks is exactly the shared rows of the
// table, in table order, and reads nothing but Shared, Limits and the time.
func TestSharedGates(t *testing.T) {
	l := Limits{Cooldown: time.Minute, MaxAttempts: 2, MaxInFlight: 1}
	tests := []struct {
		s    Shared
		want string
	}{
		{Shared{}, ""},
		{Shared{DeviceInFlight: true, InFlight: 1}, ReasonInFlight},
		{Shared{LastSend: t0.Add(-time.Minute + 1)}, ReasonCooldown},
		{Shared{LastSend: t0.Add(-time.Minute)}, ""},
		{Shared{Attempts: 2, InFlight: 1}, ReasonExhausted},
		{Shared{InFlight: 1}, ReasonMaxInFlight},
	}
	for _, tc := range tests {
		if got := CheckShared(l, tc.s, t0); got != tc.want {
			t.Errorf("CheckShared(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
	var shared []string
	for _, g := range Gates() {
		if g.Shared {
			shared = append(shared, g.Reason)
		}
	}
	if want := []string{ReasonInFlight, ReasonCooldown, ReasonExhausted, ReasonMaxInFlight}; !slices.Equal(shared, want) {
		t.Fatalf("shared gates %v, want %v", shared, want)
	}
}

// TestGateTableWellFormed: reasons are unique label values, every row is
// documented, and only the last row (an outcome, not a gate) has no check.
func TestGateTableWellFormed(t *testing.T) {
	seen := map[string]bool{}
	gs := Gates()
	for i, g := range gs {
		switch {
		case g.Reason == "" || strings.ContainsAny(g.Reason, " \"\\\n") || seen[g.Reason]:
			t.Errorf("row %d: bad or duplicate reason %q", i, g.Reason)
		case g.Doc == "" || strings.Contains(g.Doc, "|") || strings.Contains(g.Doc, "\n"):
			t.Errorf("%s: doc must be one Markdown table cell", g.Reason)
		case (g.Check == nil) != (g.Reason == ReasonLedgerError):
			t.Errorf("%s: only ledger_error, the outcome after the gates, has no check", g.Reason)
		}
		seen[g.Reason] = true
	}
	if !slices.Equal(SkipReasons(), func() []string {
		out := []string{}
		for _, g := range gs {
			out = append(out, g.Reason)
		}
		return out
	}()) {
		t.Fatal("SkipReasons is not the table's reasons in order")
	}
}

// TestExplain: every refusing gate is listed, the first is the verdict.
func TestExplain(t *testing.T) {
	in := passing()
	in.Device.Commands = 0
	in.Device.Tags = append(in.Device.Tags, config.NoAutoRemediationTag)
	in.Fault.Walks = 1
	in.Rules = Compile(func() config.Remediation { p := in.Rules.Remediation; p.Enabled = false; return p }())
	x := NewTable().Explain(in)
	want := []string{ReasonDisabled, ReasonExcluded, ReasonUnsupported, ReasonTooYoung}
	if !slices.Equal(x.Refusals, want) || x.Reason != ReasonDisabled || x.Outcome != OutcomeSkipped {
		t.Fatalf("%+v, want refusals %v", x, want)
	}
	if !x.Refuses(ReasonExcluded) || x.Refuses(ReasonStorm) {
		t.Fatal("Refuses disagrees with Refusals")
	}
	if x := NewTable().Explain(passing()); len(x.Refusals) != 0 || x.Outcome != OutcomeSent {
		t.Fatalf("passing input: %+v", x)
	}
}

func TestStormStep(t *testing.T) {
	const cd = 10 * time.Minute
	over, calm := Measure{Faulty: 3, Devices: 10}, Measure{Faulty: 2, Devices: 10} // limit 0.25
	type step struct {
		at   time.Duration
		m    Measure
		want StormEvent
		// active after the step
		active bool
	}
	tests := []struct {
		name     string
		cooldown time.Duration
		steps    []step
	}{
		{"calm stays calm", cd, []step{{0, calm, StormUnchanged, false}}},
		{"starts at once", cd, []step{{0, over, StormStarted, true}, {time.Minute, over, StormUnchanged, true}}},
		{"holds below for the cooldown", cd, []step{
			{0, over, StormStarted, true}, {time.Minute, calm, StormUnchanged, true},
			{time.Minute + cd - 1, calm, StormUnchanged, true}, {time.Minute + cd, calm, StormEnded, false}}},
		{"over again restarts the hold", cd, []step{
			{0, over, StormStarted, true}, {time.Minute, calm, StormUnchanged, true},
			{5 * time.Minute, over, StormUnchanged, true}, {6 * time.Minute, calm, StormUnchanged, true},
			{time.Minute + cd, calm, StormUnchanged, true}, {6*time.Minute + cd, calm, StormEnded, false}}},
		{"zero cooldown ends on the first calm walk", 0, []step{{0, over, StormStarted, true}, {time.Second, calm, StormEnded, false}}},
		{"too few devices never storm", cd, []step{{0, Measure{Faulty: 7, Devices: 7}, StormUnchanged, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Storm{MaxFaultyRatio: 0.25, MinDevices: 8, Cooldown: tc.cooldown}
			var s Storm
			for i, st := range tc.steps {
				var ev StormEvent
				s, ev = s.Step(t0.Add(st.at), st.m, c)
				if ev != st.want || s.Active() != st.active || s.Last != st.m {
					t.Fatalf("step %d: event %v active %v last %+v, want %v %v %+v", i, ev, s.Active(), s.Last, st.want, st.active, st.m)
				}
			}
		})
	}
}

func TestMeasure(t *testing.T) {
	c := config.Storm{MaxFaultyRatio: 0.25, MinDevices: 8}
	tests := []struct {
		m     Measure
		ratio float64
		over  bool
	}{{Measure{5, 20}, 0.25, false}, {Measure{6, 20}, 0.3, true}, {Measure{7, 7}, 1, false}, {Measure{3, 8}, 0.375, true}, {Measure{0, 0}, 0, false}}
	for _, tc := range tests {
		if r, o := tc.m.Ratio(), tc.m.Over(c); r != tc.ratio || o != tc.over {
			t.Errorf("%+v: ratio %v over %v, want %v %v", tc.m, r, o, tc.ratio, tc.over)
		}
	}
}

// TestReferenceDoc keeps docs/remediation-gates.md equal to the table.
func TestReferenceDoc(t *testing.T) {
	path := filepath.Join("..", "..", "..", "docs", "remediation-gates.md")
	want := Reference()
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is out of date with the gate table: run go test ./internal/remediate/policy -run TestReferenceDoc -update", path)
	}
	for _, r := range SkipReasons() {
		if !strings.Contains(string(got), "| `"+r+"` |") {
			t.Errorf("reference lacks a row for %s", r)
		}
	}
}

// TestOperationsTableOrder: the hand-written table of docs/operations.md
// (which adds what an operator should do) lists every reason once, in
// gate order.
func TestOperationsTableOrder(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "| reason | means |"):
			in = true
		case in && strings.HasPrefix(line, "| `"):
			got = append(got, strings.Trim(strings.Fields(line)[1], "`"))
		case in && !strings.HasPrefix(line, "|"):
			in = false
		}
	}
	if want := SkipReasons(); !slices.Equal(got, want) {
		t.Fatalf("docs/operations.md gate table:\n got %v\nwant %v", got, want)
	}
}

func TestExclusion(t *testing.T) {
	r := Compile(config.Remediation{Exclude: config.Exclude{Locations: []string{"L9"}, DeviceTypes: []string{"LOCKER"}, Tags: []string{"x", "y"}}})
	dock := &record.Device{Type: record.TypeBikeDock, Tags: []string{"a", "y"}}
	tests := []struct {
		name string
		loc  string
		dev  *record.Device
		f    *health.Fault
		want string
	}{
		{"location first", "L9", &record.Device{Type: record.TypeLocker}, nil, "location"},
		{"device type", "L1", &record.Device{Type: record.TypeLocker, Tags: []string{"x"}}, nil, "device type"},
		{"tag", "L1", dock, nil, "tag y"},
		{"type from the fault without a device", "L1", nil, &health.Fault{DeviceType: bikeep.TypeLocker}, "device type"},
		{"the device's type wins over the fault's", "L1", &record.Device{Type: record.TypeBikeDock}, &health.Fault{DeviceType: bikeep.TypeLocker}, ""},
		{"none", "L1", &record.Device{Type: record.TypeBikeDock, Tags: []string{"a"}}, nil, ""},
	}
	for _, tc := range tests {
		got := r.Exclusion(tc.loc, tc.dev, tc.f)
		if got != tc.want || r.Excluded(tc.loc, tc.dev, tc.f) != (tc.want != "") {
			t.Errorf("%s: Exclusion = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestEpisodeStep: an episode ends on evidence only — seen without the
// fault, or absent from complete lists for forget_after — and nothing else
// (no data, a failed or partial list) moves it.
func TestEpisodeStep(t *testing.T) {
	const forget = 24 * time.Hour
	type step struct {
		at   time.Duration
		ev   Evidence
		want EpisodeEvent
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no evidence changes nothing", []step{{0, EvidenceNone, EpisodeUnchanged}, {48 * time.Hour, EvidenceNone, EpisodeUnchanged}}},
		{"still faulty", []step{{0, EvidenceFaulty, EpisodeUnchanged}}},
		{"cured when seen without the fault", []step{{0, EvidenceFaulty, EpisodeUnchanged}, {time.Minute, EvidenceHealthy, EpisodeCured}}},
		{"absent: the clock starts, then forgets", []step{{0, EvidenceAbsent, EpisodeMoved},
			{forget - 1, EvidenceAbsent, EpisodeUnchanged}, {forget, EvidenceAbsent, EpisodeForgotten}}},
		{"glitches do not stop the clock", []step{{0, EvidenceAbsent, EpisodeMoved},
			{time.Hour, EvidenceNone, EpisodeUnchanged}, {forget, EvidenceAbsent, EpisodeForgotten}}},
		{"seen with the fault again resets the clock", []step{{0, EvidenceAbsent, EpisodeMoved},
			{time.Hour, EvidenceFaulty, EpisodeMoved}, {2 * time.Hour, EvidenceAbsent, EpisodeMoved},
			{forget + time.Hour, EvidenceAbsent, EpisodeUnchanged}, {forget + 2*time.Hour, EvidenceAbsent, EpisodeForgotten}}},
		{"cured while absent", []step{{0, EvidenceAbsent, EpisodeMoved}, {time.Hour, EvidenceHealthy, EpisodeCured}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ep Episode
			for i, st := range tc.steps {
				var ev EpisodeEvent
				ep, ev = ep.Step(st.ev, t0.Add(st.at), forget)
				if ev != st.want {
					t.Fatalf("step %d: %v, want %v", i, ev, st.want)
				}
				if (st.ev == EvidenceAbsent && ev == EpisodeMoved) != (!ep.AbsentSince.IsZero() && ep.AbsentSince.Equal(t0.Add(st.at))) {
					t.Fatalf("step %d: absent since %v", i, ep.AbsentSince)
				}
			}
		})
	}
}
