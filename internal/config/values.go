package config

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // blackout time zones must load in minimal containers without /usr/share/zoneinfo

	"github.com/robfig/cron/v3"
	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"
)

// Locations selects the Bikeep locations to walk: every location the API
// lists (YAML: the scalar `auto`) or a fixed list of ids.
type Locations struct {
	Auto bool
	IDs  []string
}

func (Locations) yamlLeaf() {}

// UnmarshalYAML accepts `auto` or a list of location ids.
func (l *Locations) UnmarshalYAML(n *yaml.Node) error {
	const want = `"auto" or a list of location ids`
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "auto" {
			return &valueError{want: want, got: n.Value}
		}
		*l = Locations{Auto: true}
		return nil
	case yaml.SequenceNode:
		ids := make([]string, 0, len(n.Content))
		for _, e := range n.Content {
			if e.Kind == yaml.AliasNode && e.Alias != nil {
				e = e.Alias
			}
			if isNull(e) {
				ids = append(ids, "") // Validate names the empty entry
				continue
			}
			if e.Kind != yaml.ScalarNode {
				return fmt.Errorf("want %s, got a list holding %s", want, kindName(e))
			}
			ids = append(ids, e.Value)
		}
		*l = Locations{IDs: ids}
		return nil
	default:
		return fmt.Errorf("want %s, got %s", want, kindName(n))
	}
}

// MarshalYAML gives `auto` or the list of ids back.
func (l Locations) MarshalYAML() (any, error) {
	if l.Auto {
		return "auto", nil
	}
	if l.IDs == nil {
		return []string{}, nil
	}
	return l.IDs, nil
}

// Rate is a token-bucket rate: Count events per Per. YAML: "30/m", "1/s", "100/h".
type Rate struct {
	Count int
	Per   time.Duration
}

func (Rate) yamlLeaf() {}

const rateWant = "N/s, N/m or N/h"

var ratePattern = regexp.MustCompile(`^([1-9][0-9]{0,8})/([smh])$`)

// ParseRate parses "N/s", "N/m" or "N/h" with N ≥ 1.
func ParseRate(s string) (Rate, error) {
	m := ratePattern.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Rate{}, &valueError{want: rateWant, got: s}
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return Rate{}, &valueError{want: rateWant, got: s}
	}
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[m[2]]
	return Rate{Count: n, Per: per}, nil
}

// UnmarshalYAML parses the "N/unit" form.
func (r *Rate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want %s, got %s", rateWant, kindName(n))
	}
	v, err := ParseRate(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML gives the "N/unit" form back.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }

// String renders "30/m"; a period other than a second, minute or hour (only
// possible from code) is spelled out as a duration.
func (r Rate) String() string {
	switch r.Per {
	case time.Second:
		return fmt.Sprintf("%d/s", r.Count)
	case time.Minute:
		return fmt.Sprintf("%d/m", r.Count)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.Count)
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Per)
}

// Limit converts the rate to events per second for golang.org/x/time/rate.
func (r Rate) Limit() rate.Limit {
	if r.Per <= 0 {
		return 0
	}
	return rate.Limit(float64(r.Count) / r.Per.Seconds())
}

// Match values (copri[].match.bike_to_device).
const (
	MatchAlias      = "alias"
	MatchCode       = "code"
	MatchHardwareID = "hardware_id"
	MatchTag        = "tag"
)

// Match says how a COPRI bike maps to a Bikeep device: by the device's alias,
// code, hardware_id, or a device tag "<prefix><bike>" (tag:<prefix>).
type Match struct {
	BikeToDevice string `yaml:"bike_to_device"`
}

// Field returns MatchAlias, MatchCode, MatchHardwareID or MatchTag, or ""
// for a value that does not validate.
func (m Match) Field() string {
	switch v := m.BikeToDevice; {
	case v == MatchAlias, v == MatchCode, v == MatchHardwareID:
		return v
	case strings.HasPrefix(v, MatchTag+":") && len(v) > len(MatchTag)+1:
		return MatchTag
	}
	return ""
}

// TagPrefix returns the tag prefix of a tag:<prefix> match, else "".
func (m Match) TagPrefix() string {
	if m.Field() != MatchTag {
		return ""
	}
	return strings.TrimPrefix(m.BikeToDevice, MatchTag+":")
}

// cronParser accepts standard 5-field specs, an optional leading seconds
// field, and descriptors such as @every 30s and @daily.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a schedule spec the way fleetd does everywhere
// (schedule.*, remediation.blackout[].start): 5 or 6 fields, or a descriptor.
func ParseCron(spec string) (s cron.Schedule, err error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		// robfig/cron slices past the end of such a spec.
		return nil, errors.New("time zone prefix without a schedule")
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("unparsable spec: %v", r)
		}
	}()
	return cronParser.Parse(spec)
}

// Blackout is a recurring window during which remediation sends nothing. It
// opens at every time Start (a cron spec, read in Timezone) fires and stays
// open for Duration.
type Blackout struct {
	Start    string        `yaml:"start"`
	Duration time.Duration `yaml:"duration"`
	// Timezone is an IANA zone name; empty means UTC.
	Timezone string `yaml:"timezone"`
}

// UnmarshalYAML defaults the time zone to UTC.
func (b *Blackout) UnmarshalYAML(n *yaml.Node) error {
	type plain Blackout
	*b = Blackout{Timezone: "UTC"}
	return n.Decode((*plain)(b))
}

// schedule parses Start in Timezone; @every and TZ= prefixes are refused
// because a window needs a fixed opening time and one time zone.
func (b Blackout) schedule() (*cron.SpecSchedule, *time.Location, error) {
	if strings.HasPrefix(b.Start, "TZ=") || strings.HasPrefix(b.Start, "CRON_TZ=") {
		return nil, nil, errors.New("use timezone instead of a TZ= prefix")
	}
	s, err := ParseCron(b.Start)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid cron spec %q: %w", b.Start, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, nil, errors.New(`@every has no fixed opening time; use a cron spec such as "0 2 * * *"`)
	}
	loc, err := loadLocation(b.Timezone)
	if err != nil {
		return nil, nil, err
	}
	return spec, loc, nil
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", name)
	}
	return loc, nil
}

// Window is a blackout compiled once: its cron spec parsed and its time
// zone loaded, so a check costs one Next and no parsing.
type Window struct {
	open     *cron.SpecSchedule
	loc      *time.Location
	duration time.Duration
}

// Window compiles b; it fails where Validate would refuse b's start or
// time zone.
func (b Blackout) Window() (Window, error) {
	s, loc, err := b.schedule()
	if err != nil {
		return Window{}, err
	}
	return Window{open: s, loc: loc, duration: b.Duration}, nil
}

// Active reports whether t falls in the window: some opening o with
// o ≤ t < o + Duration. Windows may span midnight or overlap. A window
// without a positive duration (or the zero Window) is never active.
func (w Window) Active(t time.Time) bool {
	if w.duration <= 0 || w.open == nil {
		return false
	}
	// Next returns the first opening strictly after its argument, so the
	// first opening after t-Duration is the latest one that could still
	// hold t; the window holds t iff that opening is not after t.
	open := w.open.Next(t.In(w.loc).Add(-w.duration))
	return !open.IsZero() && !open.After(t)
}

// Active reports whether t falls in a window of b (see Window.Active). It
// compiles b on every call: code that checks often compiles it once with
// Window. An invalid blackout is never active (Validate refuses it).
func (b Blackout) Active(t time.Time) bool {
	w, err := b.Window()
	return err == nil && w.Active(t)
}

// NaN-safe range check for ratios.
func inUnitInterval(f float64) bool { return f > 0 && f <= 1 && !math.IsNaN(f) }
