package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

var operatorNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// keyError is a problem with the value at one key path. Parse adds the line
// the key is on in the file; a Config built in code has none.
type keyError struct {
	path string
	err  error
	// about lists further keys the problem depends on: it gives the line
	// (the first one present in the file, else path's) and is silenced when
	// one of them was already rejected while decoding.
	about []string
	line  int
}

func (e *keyError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s: %v (line %d)", e.path, e.err, e.line)
	}
	return fmt.Sprintf("%s: %v", e.path, e.err)
}

func (e *keyError) Unwrap() error { return e.err }

// problems collects "path: message" errors.
type problems []error

func (p *problems) addf(path, format string, args ...any) {
	*p = append(*p, &keyError{path: path, err: fmt.Errorf(format, args...)})
}

// addAbout is addf for a problem that involves other keys than path.
func (p *problems) addAbout(path string, about []string, format string, args ...any) {
	*p = append(*p, &keyError{path: path, about: about, err: fmt.Errorf(format, args...)})
}

// Validate checks the whole configuration and returns every problem, joined,
// each naming its key path. It does not read *_file secrets (Parse does), so
// on a Config built in code a *_file key counts as a configured secret.
func (c *Config) Validate() error {
	return errors.Join(c.validate()...)
}

func (c *Config) validate() []error {
	var p problems
	c.Bikeep.validate(&p)
	names := map[string]int{}
	for i := range c.Copri {
		path := fmt.Sprintf("copri[%d]", i)
		c.Copri[i].validate(&p, path)
		name := c.Copri[i].Name
		if _, dup := names[name]; dup && name != "" {
			p.addf(path+".name", "duplicate operator name %q", name)
		} else {
			names[name] = i
		}
	}
	c.validateSchedule(&p)
	c.Health.validate(&p)
	c.Remediation.validate(&p)
	c.Remediation.validateLedger(&p, c.Cluster, c.Bikeep.RequestTimeout)
	return p
}

func (b *Bikeep) validate(p *problems) {
	checkURL(p, "bikeep.base_url", b.BaseURL)
	checkURL(p, "bikeep.token_url", b.TokenURL)
	clientCreds := b.UsesClientCredentials()
	token := !b.Token.IsZero() || b.TokenFile != ""
	creds := []string{"bikeep.client_secret", "bikeep.client_secret_file", "bikeep.token", "bikeep.token_file"}
	switch {
	case !clientCreds && !token:
		p.addAbout("bikeep", creds, "credentials missing: set one of client_secret, client_secret_file, token or token_file")
	case clientCreds && token:
		p.addAbout("bikeep", creds, "client credentials (client_secret, client_secret_file) and a static token (token, token_file) are mutually exclusive")
	case clientCreds && b.ClientID == "":
		p.addAbout("bikeep.client_id", creds, "required with client_secret or client_secret_file")
	}
	switch l := b.Locations; {
	case l.Auto && len(l.IDs) > 0:
		p.addf("bikeep.locations", "auto and a list of ids are mutually exclusive")
	case !l.Auto && len(l.IDs) == 0:
		p.addf("bikeep.locations", `want "auto" or a non-empty list of location ids`)
	}
	checkList(p, "bikeep.locations", b.Locations.IDs, "location id")
	if b.Concurrency < 1 || b.Concurrency > 1024 {
		p.addf("bikeep.concurrency", "must be between 1 and 1024, got %d", b.Concurrency)
	}
	positive(p, "bikeep.request_timeout", b.RequestTimeout)
	if b.MaxBodyBytes < 1024 {
		p.addf("bikeep.max_body_bytes", "must be at least 1024, got %d", b.MaxBodyBytes)
	}
}

func (o *Operator) validate(p *problems, path string) {
	switch {
	case o.Name == "":
		p.addf(path+".name", "required")
	case !operatorNamePattern.MatchString(o.Name):
		p.addf(path+".name", "must match %s (it becomes the metric label copri/<name>), got %q", operatorNamePattern, o.Name)
	}
	checkURL(p, path+".primary_url", o.PrimaryURL)
	checkURL(p, path+".operator_url", o.OperatorURL)
	if o.MerchantID == "" {
		p.addf(path+".merchant_id", "required")
	}
	if o.UserID == "" {
		p.addf(path+".user_id", "required")
	}
	if o.Password.IsZero() && o.PasswordFile == "" {
		p.addAbout(path, []string{path + ".password", path + ".password_file"}, "credentials missing: set password or password_file")
	}
	if n := len([]rune(o.HWID)); n < 16 {
		p.addf(path+".hw_id", "must be at least 16 characters, got %d", n)
	}
	if o.Match.Field() == "" {
		p.addf(path+".match.bike_to_device", "want alias, code, hardware_id or tag:<prefix>, got %q", o.Match.BikeToDevice)
	}
	positive(p, path+".request_timeout", o.RequestTimeout)
}

func (c *Config) validateSchedule(p *problems) {
	for _, s := range []struct{ key, spec string }{
		{"schedule.devices", c.Schedule.Devices},
		{"schedule.rentals", c.Schedule.Rentals},
	} {
		if s.spec == "" {
			p.addf(s.key, "required")
			continue
		}
		if _, err := ParseCron(s.spec); err != nil {
			p.addf(s.key, "invalid cron spec %q: %v; for a fixed interval write %q", s.spec, err, everyHint(s.spec))
		}
	}
}

func (h *Health) validate(p *problems) {
	positive(p, "health.lock_mismatch_grace", h.LockMismatchGrace)
	positive(p, "health.transition_grace", h.TransitionGrace)
	positive(p, "health.rental_max_duration", h.RentalMaxDuration)
	positive(p, "health.stale_after", h.StaleAfter)
}

func (r *Remediation) validate(p *problems) {
	if r.MinFaultAge < 0 {
		p.addf("remediation.min_fault_age", "must not be negative, got %s", formatDuration(r.MinFaultAge))
	}
	positive(p, "remediation.cooldown", r.Cooldown)
	if r.MaxAttempts < 1 || r.MaxAttempts > 100 {
		p.addf("remediation.max_attempts", "must be between 1 and 100, got %d", r.MaxAttempts)
	} else if r.PowerCycleFromAttempt < 1 || r.PowerCycleFromAttempt > r.MaxAttempts {
		p.addAbout("remediation.power_cycle_from_attempt", []string{"remediation.max_attempts"}, "must be between 1 and remediation.max_attempts (%d), got %d", r.MaxAttempts, r.PowerCycleFromAttempt)
	}
	if r.Rate.Count < 1 || r.Rate.Per <= 0 {
		p.addf("remediation.rate", "want %s, got %q", rateWant, r.Rate.String())
	}
	if r.MaxInFlight < 1 {
		p.addf("remediation.max_in_flight", "must be at least 1, got %d", r.MaxInFlight)
	}
	positive(p, "remediation.command_timeout", r.CommandTimeout)
	positive(p, "remediation.forget_after", r.ForgetAfter)
	if !inUnitInterval(r.Storm.MaxFaultyRatio) {
		p.addf("remediation.storm.max_faulty_ratio", "must be in (0, 1], got %v", r.Storm.MaxFaultyRatio)
	}
	if r.Storm.MinDevices < 1 {
		p.addf("remediation.storm.min_devices", "must be at least 1, got %d", r.Storm.MinDevices)
	}
	if r.Storm.Cooldown < 0 {
		p.addf("remediation.storm.cooldown", "must not be negative, got %s", formatDuration(r.Storm.Cooldown))
	}
	checkList(p, "remediation.exclude.locations", r.Exclude.Locations, "entry")
	checkList(p, "remediation.exclude.device_types", r.Exclude.DeviceTypes, "entry")
	checkList(p, "remediation.exclude.tags", r.Exclude.Tags, "entry")
	for i, b := range r.Blackout {
		path := fmt.Sprintf("remediation.blackout[%d]", i)
		b.validate(p, path)
	}
	if r.Ledger == "" {
		p.addf("remediation.ledger", "required")
	}
	switch r.Trigger {
	case TriggerInternal, TriggerAlertmanager, TriggerBoth:
	default:
		p.addf("remediation.trigger", "must be one of internal, alertmanager, both; got %q", r.Trigger)
	}
}

func (b Blackout) validate(p *problems, path string) {
	if b.Start == "" {
		p.addf(path+".start", "required")
	} else if _, err := ParseCron(b.Start); err != nil {
		p.addf(path+".start", "invalid cron spec %q: %v", b.Start, err)
	} else if s, _, err := (Blackout{Start: b.Start}).schedule(); err != nil {
		p.addf(path+".start", "%v", err)
	} else if s.Next(time.Now()).IsZero() {
		p.addf(path+".start", "%q never fires", b.Start)
	}
	positive(p, path+".duration", b.Duration)
	if _, err := loadLocation(b.Timezone); err != nil {
		p.addf(path+".timezone", "%v", err)
	}
}

// everyHint turns a spec that was meant as an interval ("every 30s", "30s",
// "@every30s") into the @every form, or gives the example "@every 30s".
func everyHint(spec string) string {
	s := strings.TrimSpace(strings.ToLower(spec))
	s = strings.TrimPrefix(s, "@")
	s = strings.TrimSpace(strings.TrimPrefix(s, "every"))
	if d, err := time.ParseDuration(strings.ReplaceAll(s, " ", "")); err == nil && d >= time.Second {
		return "@every " + formatDuration(d)
	}
	return "@every 30s"
}

// checkURL wants an absolute http(s) URL without embedded credentials. A URL
// is only echoed once it is known to hold no userinfo.
func checkURL(p *problems, path, raw string) {
	if raw == "" {
		p.addf(path, "required")
		return
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		p.addf(path, "not a valid URL")
	case u.User != nil:
		p.addf(path, "must not embed credentials")
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.addf(path, "must be an absolute http(s) URL, got %q", raw)
	}
}

func positive(p *problems, path string, d time.Duration) {
	if d <= 0 {
		p.addf(path, "must be greater than 0, got %s", formatDuration(d))
	}
}

// checkList refuses empty and duplicate entries.
func checkList(p *problems, path string, list []string, what string) {
	for i, v := range list {
		if v == "" {
			p.addf(fmt.Sprintf("%s[%d]", path, i), "empty %s", what)
		} else if j := slices.Index(list, v); j < i {
			p.addf(fmt.Sprintf("%s[%d]", path, i), "duplicate %s %q", what, v)
		}
	}
}
