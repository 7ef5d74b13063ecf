// Package status renders fleetd's status page at "/": what the last walk saw,
// which devices are faulty and what remediation is doing about them.
//
// The page is server-rendered with html/template (so every vendor string —
// aliases, location names, error texts — is escaped), has no external assets
// and no JavaScript, and is served under a Content-Security-Policy that allows
// nothing but inline styles. It works offline and on a phone.
package status

import (
	"cmp"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/scrape"
)

// MaxRows caps the faulty-device and rental-fault tables: a storm of
// thousands of faults must not make the page unusable; the rest is in
// /metrics.
const MaxRows = 500

// ContentSecurityPolicy is the page's CSP: inline styles, data: images,
// nothing else.
const ContentSecurityPolicy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

// Remediation is the remediation engine's state, as the page shows it.
type Remediation struct {
	Enabled, DryRun, Paused bool
	PauseReason             string
	PausedSince             time.Time
	Trigger                 string
	Storms                  []Storm
	InFlight                int
	Exhausted               []Exhausted
	// Decisions are the recent decisions, newest first.
	Decisions []Decision
	// DeviceState maps device_id → the state of its command in flight,
	// e.g. "in flight (attempt 2)".
	DeviceState map[string]string
	// MinFaultAge and Cooldown are the policy's, for "too young until" and
	// "cooldown until".
	MinFaultAge, Cooldown time.Duration
	// Rules are the policy in force: the page asks them which
	// remediation.exclude rule covers a device, so it never matches the
	// exclude lists itself and cannot disagree with the engine's gate.
	Rules *policy.Rules
}

// Storm is an active fault storm that stops new commands in its scope.
type Storm struct {
	// Scope is "fleet" or a location id.
	Scope string
	Since time.Time
	// Ratio is the faulty fraction of devices that set it off.
	Ratio float64
}

// Exhausted is a device fault that remediation gave up on.
type Exhausted struct {
	DeviceID, Alias, LocationID, Fault string
	Attempts                           int
}

// Decision is one remediation decision.
type Decision struct {
	Time                                                        time.Time
	DeviceID, Alias, LocationID, Fault, Source, Outcome, Reason string
	Attempt                                                     int
	PowerCycle                                                  bool
	CommandID, Result                                           string
}

// Options configure the status page.
type Options struct {
	// Snapshot returns the latest snapshot; a nil result means no walk yet.
	Snapshot func() *scrape.Snapshot
	// Remediation returns the engine's state; a nil func or nil result means
	// remediation is off.
	Remediation func() *Remediation
	Version     string
	// TelemetryPath is linked as the metrics endpoint ("/metrics" if empty).
	TelemetryPath string
	// AdminAPI shows links to /api/v1/remediation.
	AdminAPI bool
	// Cluster returns the slot leases of this replica; a nil func or nil
	// result means a single replica (no cluster section).
	Cluster func() *Cluster
	// Now is the clock; time.Now when nil.
	Now    func() time.Time
	Logger *slog.Logger
}

//go:embed page.html.tmpl
var templates embed.FS

// Handler serves the status page. It remembers, across snapshots, the
// commands of every active fault and the faults that ended within the last
// hour (see Observe).
type Handler struct {
	opts Options
	tmpl *template.Template
	mem  *memory
}

// NewHandler returns the status page handler. It serves GET and HEAD of "/"
// only: other paths get 404, other methods 405, so it can be mounted on a
// catch-all pattern.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Snapshot == nil {
		return nil, errors.New("status: Options.Snapshot is required")
	}
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("page.html.tmpl").Funcs(funcs).ParseFS(templates, "page.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("status: parse template: %w", err)
	}
	return &Handler{opts: opts, tmpl: tmpl, mem: newMemory()}, nil
}

// Observe records a new snapshot and the engine's decisions about it. Call
// it after every device walk (after the engine's own pass): a fault cured
// between two page views is then still shown, with how it ended. The page
// also observes whatever snapshot it renders, so Observe only adds the walks
// nobody looked at.
func (h *Handler) Observe(snap *scrape.Snapshot) {
	h.mem.sync(snap, h.remediation(), h.opts.Now().UTC())
}

func (h *Handler) remediation() *Remediation {
	if h.opts.Remediation == nil {
		return nil
	}
	return h.opts.Remediation()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rem := h.remediation()
	now := h.opts.Now().UTC()
	snap := h.opts.Snapshot()
	h.mem.sync(snap, rem, now)
	p := buildPage(snap, rem, h.mem, now)
	p.Version, p.TelemetryPath, p.AdminAPI = h.opts.Version, h.opts.TelemetryPath, h.opts.AdminAPI
	if h.opts.Cluster != nil {
		p.Cluster = h.opts.Cluster()
	}

	// Render into a buffer so that a template error becomes a clean 500
	// instead of half a page.
	var buf strings.Builder
	if err := h.tmpl.Execute(&buf, p); err != nil {
		h.opts.Logger.Error("status page render failed", "err", err)
		http.Error(w, "status page render failed", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write([]byte(buf.String()))
}

// page is the template's view of the state: everything computed, the
// template only formats.
type page struct {
	Version       string
	TelemetryPath string
	AdminAPI      bool
	Now           time.Time

	HaveSnapshot bool
	Ready        bool
	Taken        time.Time

	Sources []sourceRow

	DevicesTotal     int
	DevicesExpected  int
	DevicesByHealth  []countRow
	FaultsByKind     []countRow
	LocationsTotal   int
	LocationsUp      int
	LocationsDown    int
	LocationsStale   int
	LocationsPartial int

	// Problems are the failing, stale and partial locations.
	Problems []locationProblem

	Faults      []faultRow
	FaultsTotal int
	FaultsMore  int

	Resolved []resolved

	RentalFaults      []health.RentalFault
	RentalFaultsTotal int
	RentalFaultsMore  int

	Remediation *Remediation
	Cluster     *Cluster
}

type sourceRow struct {
	scrape.SourceStatus
	// PerLocation is set for the Bikeep source: its walk can succeed while
	// single locations fail.
	PerLocation               bool
	Failing, Partial, Located int
}

type countRow struct {
	Name  string
	Count int
}

// locationProblem is a location whose devices the page cannot show in full.
type locationProblem struct {
	scrape.LocationStatus
	// State is "down", "stale" or "partial".
	State string
	// Since is when the problem began, as far as fleetd knows.
	Since time.Time
	// Shown is how many of its devices the page still counts.
	Shown int
}

type faultRow struct {
	health.Fault
	LocationName string
	State        string
	// Tone colours the remediation state.
	Tone     string
	Commands []command
	// Rank orders page-worthy faults first (0 most urgent).
	Rank int
	// Class is the row's CSS class.
	Class string
}

func buildPage(s *scrape.Snapshot, rem *Remediation, mem *memory, now time.Time) *page {
	p := &page{Now: now, Remediation: rem}
	mem.read(func(_ map[faultKey]*tracked, resolved []resolved, _ map[string]time.Time) {
		p.Resolved = slices.Clone(resolved)
	})
	if s == nil {
		return p
	}
	p.HaveSnapshot, p.Taken = true, s.Taken
	p.Ready = !s.Taken.IsZero()
	if src, ok := s.Source(scrape.SourceBikeep); ok {
		p.Ready = src.Walked
	}

	names := make(map[string]string, len(s.Locations))
	byHealth := map[string]int{}
	failing := 0
	for i := range s.Locations {
		l := &s.Locations[i]
		names[l.ID] = l.Name
		p.DevicesExpected += l.ExpectedDevices
		switch {
		case l.Stale:
			p.LocationsStale++
			failing++
			p.Problems = append(p.Problems, locationProblem{LocationStatus: *l, State: "stale", Since: cmp.Or(l.FailingSince, l.LastSuccess)})
		case !l.Up:
			p.LocationsDown++
			failing++
			p.Problems = append(p.Problems, locationProblem{LocationStatus: *l, State: "down", Since: cmp.Or(l.FailingSince, l.LastSuccess), Shown: len(l.Devices)})
		case l.Undecodable > 0:
			p.LocationsUp++
			p.LocationsPartial++
			// How long it has been partial is not recorded; the page says
			// which walk saw it.
			p.Problems = append(p.Problems, locationProblem{LocationStatus: *l, State: "partial", Shown: len(l.Devices)})
		default:
			p.LocationsUp++
		}
		for j := range l.Devices {
			byHealth[healthName(&l.Devices[j])]++
		}
	}
	for i := range p.Problems {
		p.Problems[i].Devices = nil // the template needs counts only
	}
	p.LocationsTotal = len(s.Locations)
	for _, src := range s.Sources {
		row := sourceRow{SourceStatus: src}
		if src.Name == scrape.SourceBikeep && src.Walked {
			row.PerLocation, row.Failing, row.Partial, row.Located = true, failing, p.LocationsPartial, len(s.Locations)
		}
		p.Sources = append(p.Sources, row)
	}
	for name, n := range byHealth {
		p.DevicesTotal += n
		p.DevicesByHealth = append(p.DevicesByHealth, countRow{name, n})
	}
	slices.SortFunc(p.DevicesByHealth, func(a, b countRow) int { return cmp.Compare(healthOrder(a.Name), healthOrder(b.Name)) })

	byKind := map[health.FaultKind]int{}
	for i := range s.Faults {
		byKind[s.Faults[i].Kind]++
	}
	for _, k := range health.DeviceFaultKinds() {
		p.FaultsByKind = append(p.FaultsByKind, countRow{string(k), byKind[k]})
	}

	exhausted := map[[2]string]bool{}
	if rem != nil {
		for _, e := range rem.Exhausted {
			exhausted[[2]string{e.DeviceID, e.Fault}] = true
		}
	}
	rows := make([]faultRow, len(s.Faults))
	mem.read(func(active map[faultKey]*tracked, _ []resolved, lastSend map[string]time.Time) {
		for i, f := range s.Faults {
			var t tracked
			if a := active[faultKey{f.DeviceID, f.Kind}]; a != nil {
				t = *a
			}
			var dev *record.Device
			if t.haveLast && t.last.Reason == policy.ReasonExcluded {
				dev, _ = s.Device(f.LocationID, f.DeviceID) // only "excluded by" needs the device
			}
			state, tone := remediationState(stateInput{fault: f, device: dev, track: t, rem: rem, lastSend: lastSend[f.DeviceID], now: now})
			rows[i] = faultRow{Fault: f, LocationName: names[f.LocationID], State: state, Tone: tone, Commands: slices.Clone(t.commands)}
			rows[i].Rank, rows[i].Class = rank(f, exhausted[[2]string{f.DeviceID, string(f.Kind)}])
		}
	})
	slices.SortFunc(rows, func(a, b faultRow) int {
		return cmp.Or(
			cmp.Compare(a.Rank, b.Rank),
			a.Since.Compare(b.Since), // longest-standing first
			cmp.Compare(a.LocationID, b.LocationID),
			cmp.Compare(a.DeviceID, b.DeviceID),
			cmp.Compare(a.Kind, b.Kind),
		)
	})
	p.FaultsTotal = len(rows)
	if len(rows) > MaxRows {
		p.FaultsMore = len(rows) - MaxRows
		rows = rows[:MaxRows]
	}
	p.Faults = rows

	p.RentalFaultsTotal = len(s.RentalFaults)
	p.RentalFaults = s.RentalFaults
	if len(p.RentalFaults) > MaxRows {
		p.RentalFaultsMore = len(p.RentalFaults) - MaxRows
		p.RentalFaults = p.RentalFaults[:MaxRows]
	}
	return p
}

// rank mirrors the paging policy of alerts.yml: dead devices and faults that
// remediation gave up on or may not touch page; recoverable faults under
// remediation and long-dead devices (a ticket) come last.
func rank(f health.Fault, exhausted bool) (int, string) {
	switch {
	case f.Kind == health.Dead:
		return 0, "page"
	case exhausted:
		return 1, "page"
	case f.Kind == health.LongDead:
		return 4, "ticket"
	case !f.Recoverable:
		return 2, "page"
	default:
		return 3, "recoverable"
	}
}

func healthName(d *record.Device) string {
	if d.Health == record.HealthNone {
		return "no data"
	}
	return d.HealthName()
}

func healthOrder(name string) string {
	// Known values in severity order, then anything else alphabetically.
	switch bikeep.Health(name) {
	case bikeep.HealthHealthy:
		return "0"
	case bikeep.HealthUnhealthy:
		return "1"
	case bikeep.HealthDead:
		return "2"
	case bikeep.HealthLongDead:
		return "3"
	}
	if name == "no data" {
		return "5"
	}
	return "4" + name
}

// devicesWords is the Devices cell of a problem location: what the page
// still counts of it, and what the Location API says it has.
func devicesWords(p locationProblem) string {
	var s string
	switch p.State {
	case "partial":
		s = fmt.Sprintf("%d decoded, %d undecodable", p.Shown, p.Undecodable)
	case "down":
		s = "none walked"
		if p.Shown > 0 {
			s = fmt.Sprintf("%d shown from last good data", p.Shown)
		}
	default:
		s = "none reported"
	}
	if p.ExpectedDevices > 0 {
		s += fmt.Sprintf(" · %d expected", p.ExpectedDevices)
	}
	return s
}

var funcs = template.FuncMap{
	"devices": devicesWords,
	"cmd":     commandWords,
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return humanDuration(now.Sub(t))
	},
	"dur": func(d time.Duration) string {
		if d <= 0 {
			return "—"
		}
		if d < time.Second {
			return d.Round(time.Millisecond).String()
		}
		return d.Round(100 * time.Millisecond).String()
	},
	"pct": func(r float64) string { return fmt.Sprintf("%.0f %%", r*100) },
	"yesno": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
}

// humanDuration formats a duration for "for 5m": two units at most.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		h := int(d / time.Hour)
		if m := int(d%time.Hour) / int(time.Minute); m != 0 {
			return fmt.Sprintf("%dh %dm", h, m)
		}
		return fmt.Sprintf("%dh", h)
	default:
		days := int(d / (24 * time.Hour))
		if h := int(d%(24*time.Hour)) / int(time.Hour); h != 0 {
			return fmt.Sprintf("%dd %dh", days, h)
		}
		return fmt.Sprintf("%dd", days)
	}
}
