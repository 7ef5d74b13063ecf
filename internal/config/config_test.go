package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/secret"
)

// Secret values used by the fixtures; none may ever show up in output.
const (
	testCopriPassword = `pa$$: "w0rd" #not-a-comment ${NOT_EXPANDED}`
	testBikeepFile    = "bikeep-client-secret-from-file"
	testCopriFile     = "copri-password-from-file"
)

func setFixtureEnv(t *testing.T) {
	t.Helper()
	t.Setenv("FLEETD_TEST_CLIENT_ID", "fleetd-test-client")
	t.Setenv("FLEETD_TEST_COPRI_PASSWORD", testCopriPassword)
	t.Setenv("FLEETD_TEST_MERCHANT_ID", "") // empty: the :- fallback applies
}

func wantFull() *Config {
	c := Default()
	c.Bikeep = Bikeep{
		BaseURL:          "https://services-dev.bikeep.com",
		TokenURL:         "https://auth-dev.bikeep.com/oauth2/token",
		ClientID:         "fleetd-test-client",
		ClientSecret:     testBikeepFile,
		ClientSecretFile: "secrets/bikeep_client_secret",
		Locations:        Locations{IDs: []string{"loc-1", "2042", "loc-3"}},
		Concurrency:      32,
		RequestTimeout:   15 * time.Second,
		MaxBodyBytes:     1 << 20,
	}
	c.Copri = []Operator{{
		Name:           "freiburg",
		PrimaryURL:     "https://shareeapp-primary.copri-bike.de",
		OperatorURL:    "https://shareeapp-fr01.copri-bike.de",
		MerchantID:     "merchant-0042",
		UserID:         "monitor@example.org",
		Password:       testCopriFile,
		PasswordFile:   "secrets/copri_password",
		HWID:           "fleetd-monitor-freiburg-01",
		BikesAll:       true,
		Match:          Match{BikeToDevice: "tag:copri-bike-"},
		RequestTimeout: 20 * time.Second,
	}, {
		Name:           "konstanz_2",
		PrimaryURL:     "http://copri.konstanz.example:8080/primary",
		OperatorURL:    "http://copri.konstanz.example:8080/operator",
		MerchantID:     "0815",
		UserID:         "service@example.org",
		Password:       testCopriPassword,
		HWID:           "fleetd-monitor-0002-konstanz",
		Match:          Match{BikeToDevice: MatchHardwareID},
		RequestTimeout: 5 * time.Second,
	}}
	c.Schedule = Schedule{Devices: "*/20 * * * * *", Rentals: "@every 2m"}
	c.Health = Health{
		LockMismatchGrace: 90 * time.Second,
		TransitionGrace:   10 * time.Minute,
		RentalMaxDuration: 48 * time.Hour,
		StaleAfter:        15 * time.Minute,
	}
	c.Remediation = Remediation{
		Enabled:               false,
		DryRun:                true,
		MinFaultAge:           0,
		Cooldown:              90 * time.Minute,
		MaxAttempts:           5,
		ForgetAfter:           36 * time.Hour,
		HistoryRetention:      DefaultHistoryRetention,
		PowerCycleFromAttempt: 4,
		Rate:                  Rate{Count: 100, Per: time.Hour},
		MaxInFlight:           3,
		CommandTimeout:        90 * time.Second,
		Storm:                 Storm{MaxFaultyRatio: 0.5, MinDevices: 20, Cooldown: 0},
		Exclude: Exclude{
			Locations:   []string{"loc-3"},
			DeviceTypes: []string{"GUARD", "BIKE_HOUSE_DOOR"},
			Tags:        []string{"no-auto-remediation", "fragile"},
		},
		Blackout: []Blackout{
			{Start: "0 23 * * *", Duration: 2 * time.Hour, Timezone: "Europe/Berlin"},
			{Start: "30 6 * * 1-5", Duration: 15 * time.Minute, Timezone: "UTC"},
		},
		Ledger:  "/tmp/fleetd-test/remediation.db",
		Trigger: TriggerBoth,
	}
	c.Metrics = Metrics{PerDevice: true}
	return c
}

// assertConfig compares section by section so a failure points at the part
// that differs; secrets are compared by their revealed value.
func assertConfig(t *testing.T, got, want *Config) {
	t.Helper()
	sections := []struct {
		name      string
		got, want any
	}{
		{"bikeep", got.Bikeep, want.Bikeep},
		{"copri", got.Copri, want.Copri},
		{"schedule", got.Schedule, want.Schedule},
		{"health", got.Health, want.Health},
		{"remediation", got.Remediation, want.Remediation},
		{"metrics", got.Metrics, want.Metrics},
	}
	for _, s := range sections {
		if !reflect.DeepEqual(s.got, s.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", s.name, s.got, s.want)
		}
	}
	if g, w := got.Bikeep.ClientSecret.Reveal(), want.Bikeep.ClientSecret.Reveal(); g != w {
		t.Errorf("bikeep.client_secret = %q, want %q", g, w)
	}
	if g, w := got.Bikeep.Token.Reveal(), want.Bikeep.Token.Reveal(); g != w {
		t.Errorf("bikeep.token = %q, want %q", g, w)
	}
	for i := range min(len(got.Copri), len(want.Copri)) {
		if g, w := got.Copri[i].Password.Reveal(), want.Copri[i].Password.Reveal(); g != w {
			t.Errorf("copri[%d].password = %q, want %q", i, g, w)
		}
	}
}

func TestLoadValid(t *testing.T) {
	setFixtureEnv(t)
	minimal := Default()
	minimal.Bikeep.ClientID = "minimal-client"
	minimal.Bikeep.ClientSecret = "minimal-secret"
	token := Default()
	token.Bikeep.Token = testBikeepFile
	token.Bikeep.TokenFile = "secrets/bikeep_client_secret"
	token.Bikeep.tokenPath = filepath.Join("testdata", "secrets/bikeep_client_secret")
	tests := []struct {
		file string
		want *Config
	}{
		{"valid-full.yml", wantFull()},
		{"valid-minimal.yml", minimal},
		{"valid-token.yml", token},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			assertConfig(t, got, tt.want)
		})
	}
}

func TestDefaultsMatchDesign(t *testing.T) {
	c := Default()
	if c.Bikeep.BaseURL != "https://services.bikeep.com" || c.Bikeep.TokenURL != "https://auth.bikeep.com/oauth2/token" ||
		!c.Bikeep.Locations.Auto || c.Bikeep.Concurrency != 16 || c.Bikeep.RequestTimeout != 10*time.Second ||
		c.Bikeep.MaxBodyBytes != 8*1024*1024 {
		t.Errorf("bikeep defaults: %+v", c.Bikeep)
	}
	if c.Schedule != (Schedule{Devices: "@every 30s", Rentals: "@every 60s"}) {
		t.Errorf("schedule defaults: %+v", c.Schedule)
	}
	if c.Health != (Health{2 * time.Minute, 5 * time.Minute, 24 * time.Hour, 5 * time.Minute}) {
		t.Errorf("health defaults: %+v", c.Health)
	}
	r := c.Remediation
	if !r.Enabled || r.DryRun || r.MinFaultAge != 2*time.Minute || r.Cooldown != 15*time.Minute || r.MaxAttempts != 3 ||
		r.PowerCycleFromAttempt != 3 || r.Rate.String() != "30/m" || r.MaxInFlight != 10 || r.CommandTimeout != 3*time.Minute ||
		r.Storm != (Storm{0.25, 8, 10 * time.Minute}) || !reflect.DeepEqual(r.Exclude.Tags, []string{"no-auto-remediation"}) ||
		len(r.Blackout) != 0 || r.ForgetAfter != 24*time.Hour || r.Ledger != "/var/lib/fleetd/remediation.db" || r.Trigger != "internal" {
		t.Errorf("remediation defaults: %+v", r)
	}
	if o := DefaultOperator(); o.HWID != "fleetd-monitor-0001" || o.Match.BikeToDevice != "alias" || o.RequestTimeout != 10*time.Second || o.BikesAll {
		t.Errorf("operator defaults: %+v", o)
	}
	if c.Metrics.PerDevice {
		t.Error("metrics.per_device defaults to true")
	}
}

func TestExplicitZeroValuesAreKept(t *testing.T) {
	cfg, err := Parse([]byte(`
bikeep: {client_id: a, client_secret: b}
remediation:
  enabled: false
  min_fault_age: 0
  storm: {cooldown: 0s}
  exclude: {tags: []}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Remediation
	if r.Enabled || r.MinFaultAge != 0 || r.Storm.Cooldown != 0 || len(r.Exclude.Tags) != 0 {
		t.Errorf("explicit zeros lost: %+v", r)
	}
	// Absent or null keys inside a present block keep their defaults.
	cfg, err = Parse([]byte("bikeep: {client_id: a, client_secret: b}\nremediation:\n  exclude: {locations: [x], tags: ~}\n  storm: {min_devices: 3}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	r = cfg.Remediation
	if !reflect.DeepEqual(r.Exclude.Tags, []string{NoAutoRemediationTag}) || r.Storm != (Storm{0.25, 3, 10 * time.Minute}) || !r.Enabled {
		t.Errorf("defaults lost: %+v", r)
	}
}

func TestLoadInvalid(t *testing.T) {
	t.Setenv("FLEETD_TEST_SECRETISH", "hunter2-not-a-number")
	tests := map[string]string{
		"empty":          `config testdata/invalid-empty.yml: config is empty`,
		"comments-only":  `config testdata/invalid-comments-only.yml: config is empty`,
		"multidoc":       `config testdata/invalid-multidoc.yml: multiple YAML documents are not supported (second document at line 2)`,
		"syntax":         `config testdata/invalid-syntax.yml: yaml: line 2: did not find expected key`,
		"top-level-list": `config testdata/invalid-top-level-list.yml: want a mapping at the top level, got a list (line 1)`,
		"unknown-key":    `config testdata/invalid-unknown-key.yml: bikeep: unknown key "foo" (line 3)`,
		"unknown-keys-everywhere": `config testdata/invalid-unknown-keys-everywhere.yml: 17 problems:
  bikeep: unknown key "client_secrt" (line 3); did you mean "client_secret"?
  unknown top-level key "remediaton" (line 4); did you mean "remediation"?
  copri[1].match: unknown key "bike_to_devices" (line 9); did you mean "bike_to_device"?
  remediation.storm: unknown key "ratio" (line 11)
  remediation.blackout[0]: unknown key "tz" (line 14)
  bikeep: credentials missing: set one of client_secret, client_secret_file, token or token_file (line 1)
  copri[0].primary_url: required (line 7)
  copri[0].operator_url: required (line 7)
  copri[0].merchant_id: required (line 7)
  copri[0].user_id: required (line 7)
  copri[0]: credentials missing: set password or password_file (line 7)
  copri[1].primary_url: required (line 8)
  copri[1].operator_url: required (line 8)
  copri[1].merchant_id: required (line 8)
  copri[1].user_id: required (line 8)
  copri[1]: credentials missing: set password or password_file (line 8)
  remediation.blackout[0].duration: must be greater than 0, got 0s (line 13)`,
		"duplicate-key": `config testdata/invalid-duplicate-key.yml: bikeep: duplicate key "concurrency" (line 5, first at line 4)`,
		"types": `config testdata/invalid-types.yml: 10 problems:
  bikeep.concurrency: want an integer, got "many" (line 4)
  bikeep.request_timeout: want a duration like 30s, 5m or 1h, got "10" (line 5)
  bikeep.max_body_bytes: want an integer, got "1.5" (line 6)
  bikeep.locations: want "auto" or a list of location ids, got a mapping (line 7)
  remediation.enabled: want true or false, got "yes" (line 9)
  remediation.min_fault_age: want a duration like 30s, 5m or 1h, got "2 minutes" (line 10)
  remediation.storm.max_faulty_ratio: want a number, got "high" (line 12)
  remediation.exclude.tags: want a list, got a scalar (line 14)
  remediation.blackout: want a list, got a mapping (line 15)
  metrics: want a mapping, got a scalar (line 16)`,
		"env-unset": `config testdata/invalid-env-unset.yml: 3 problems:
  bikeep.client_id: environment variable FLEETD_TEST_UNSET_VARIABLE is not set (line 2)
  bikeep.base_url: unterminated "${" (write "$$" for a literal "$") (line 4)
  bikeep.token_url: invalid environment variable name "not-a-name" in ${...} (line 5)`,
		"env-type": `config testdata/invalid-env-type.yml: 2 problems:
  bikeep.concurrency: want an integer, got the value of "${FLEETD_TEST_SECRETISH}" (line 4)
  remediation.rate: want N/s, N/m or N/h, got the value of "${FLEETD_TEST_SECRETISH}" (line 6)`,
		"concurrency":        `config testdata/invalid-concurrency.yml: bikeep.concurrency: must be between 1 and 1024, got 0 (line 4)`,
		"duplicate-operator": `config testdata/invalid-duplicate-operator.yml: copri[1].name: duplicate operator name "freiburg" (line 10)`,
		"rate":               `config testdata/invalid-rate.yml: remediation.rate: want N/s, N/m or N/h, got "fast" (line 3)`,
		"power-cycle":        `config testdata/invalid-power-cycle.yml: remediation.power_cycle_from_attempt: must be between 1 and remediation.max_attempts (3), got 5 (line 3)`,
		"trigger":            `config testdata/invalid-trigger.yml: remediation.trigger: must be one of internal, alertmanager, both; got "x" (line 3)`,
		"urls": `config testdata/invalid-urls.yml: 4 problems:
  bikeep.base_url: must be an absolute http(s) URL, got "ftp://services.bikeep.com" (line 2)
  bikeep.token_url: must be an absolute http(s) URL, got "/oauth2/token" (line 3)
  copri[0].primary_url: must not embed credentials (line 8)
  copri[0].operator_url: not a valid URL (line 9)`,
		"operator": `config testdata/invalid-operator.yml: 8 problems:
  copri[0].name: must match ^[a-z0-9][a-z0-9_-]*$ (it becomes the metric label copri/<name>), got "Freiburg City" (line 3)
  copri[0].merchant_id: required (line 6)
  copri[0].user_id: required (line 3)
  copri[0].hw_id: must be at least 16 characters, got 9 (line 8)
  copri[0].match.bike_to_device: want alias, code, hardware_id or tag:<prefix>, got "tag:" (line 9)
  copri[0].request_timeout: must be greater than 0, got 0s (line 10)
  copri[1].name: required (line 11)
  copri[1].match.bike_to_device: want alias, code, hardware_id or tag:<prefix>, got "serial" (line 16)`,
		"secrets-both": `config testdata/invalid-secrets-both.yml: 2 problems:
  bikeep: client_secret and client_secret_file are mutually exclusive (line 4)
  copri[0]: password and password_file are mutually exclusive (line 12)`,
		"secrets-missing": `config testdata/invalid-secrets-missing.yml: 2 problems:
  bikeep: credentials missing: set one of client_secret, client_secret_file, token or token_file (line 1)
  copri[0]: credentials missing: set password or password_file (line 4)`,
		"secrets-mixed":     `config testdata/invalid-secrets-mixed.yml: bikeep: client credentials (client_secret, client_secret_file) and a static token (token, token_file) are mutually exclusive (line 2)`,
		"client-id-missing": `config testdata/invalid-client-id-missing.yml: bikeep.client_id: required with client_secret or client_secret_file (line 2)`,
		"secret-files": `config testdata/invalid-secret-files.yml: 3 problems:
  bikeep.token_file: open testdata/secrets/does-not-exist: no such file or directory (line 2)
  copri[0].password_file: testdata/secrets/empty: file is empty (line 9)
  copri[1].password_file: testdata/secrets: not a regular file (line 15)`,
		"schedule": `config testdata/invalid-schedule.yml: 2 problems:
  schedule.devices: invalid cron spec "every 30s": expected 5 to 6 fields, found 2: [every 30s]; for a fixed interval write "@every 30s" (line 3)
  schedule.rentals: required (line 4)`,
		"health": `config testdata/invalid-health.yml: 4 problems:
  health.lock_mismatch_grace: must be greater than 0, got 0s (line 3)
  health.transition_grace: must be greater than 0, got -5m (line 4)
  health.rental_max_duration: must be greater than 0, got 0s (line 5)
  health.stale_after: must be greater than 0, got 0s (line 6)`,
		"remediation-numbers": `config testdata/invalid-remediation-numbers.yml: 6 problems:
  remediation.min_fault_age: must not be negative, got -1m (line 3)
  remediation.cooldown: must be greater than 0, got 0s (line 4)
  remediation.max_attempts: must be between 1 and 100, got 0 (line 5)
  remediation.max_in_flight: must be at least 1, got 0 (line 6)
  remediation.command_timeout: must be greater than 0, got 0s (line 7)
  remediation.ledger: required (line 8)`,
		"storm": `config testdata/invalid-storm.yml: 3 problems:
  remediation.storm.max_faulty_ratio: must be in (0, 1], got 1.5 (line 4)
  remediation.storm.min_devices: must be at least 1, got 0 (line 5)
  remediation.storm.cooldown: must not be negative, got -1s (line 6)`,
		"storm-ratio-zero": `config testdata/invalid-storm-ratio-zero.yml: remediation.storm.max_faulty_ratio: must be in (0, 1], got 0 (line 3)`,
		"exclude": `config testdata/invalid-exclude.yml: 4 problems:
  remediation.exclude.locations[0]: empty entry (line 4)
  remediation.exclude.locations[2]: duplicate entry "loc-1" (line 4)
  remediation.exclude.device_types[0]: empty entry (line 5)
  remediation.exclude.tags[0]: empty entry (line 6)`,
		"blackout": `config testdata/invalid-blackout.yml: 7 problems:
  remediation.blackout[0].start: invalid cron spec "0 25 * * *": end of range (25) above maximum (23): 25 (line 4)
  remediation.blackout[1].start: @every has no fixed opening time; use a cron spec such as "0 2 * * *" (line 6)
  remediation.blackout[1].duration: must be greater than 0, got 0s (line 7)
  remediation.blackout[1].timezone: unknown time zone "Mars/Olympus_Mons" (line 8)
  remediation.blackout[2].start: use timezone instead of a TZ= prefix (line 9)
  remediation.blackout[3].start: required (line 11)
  remediation.blackout[4].start: "0 0 30 2 *" never fires (line 12)`,
		// Decode-level problems (durations, the rate) do not hide the rest:
		// secret files, cron specs and range checks come in the same report.
		"all-at-once": `config testdata/invalid-all-at-once.yml: 9 problems:
  bikeep.request_timeout: want a duration like 30s, 5m or 1h, got "ten seconds" (line 6)
  remediation.rate: want N/s, N/m or N/h, got "30 per minute" (line 17)
  remediation.cooldown: want a duration like 30s, 5m or 1h, got "15 minutes" (line 20)
  bikeep.client_secret_file: open testdata/secrets/does-not-exist: no such file or directory (line 5)
  copri[0].password_file: open testdata/secrets/missing-password: no such file or directory (line 13)
  schedule.devices: invalid cron spec "every 30s": expected 5 to 6 fields, found 2: [every 30s]; for a fixed interval write "@every 30s" (line 15)
  remediation.power_cycle_from_attempt: must be between 1 and remediation.max_attempts (3), got 4 (line 22)
  remediation.storm.max_faulty_ratio: must be in (0, 1], got 25 (line 19)
  remediation.trigger: must be one of internal, alertmanager, both; got "alertmanger" (line 23)`,
		"locations": `config testdata/invalid-locations.yml: bikeep.locations: want "auto" or a list of location ids, got "all" (line 4)`,
		"locations-list": `config testdata/invalid-locations-list.yml: 2 problems:
  bikeep.locations[1]: empty location id (line 4)
  bikeep.locations[2]: duplicate location id "loc-1" (line 4)`,
		"locations-empty": `config testdata/invalid-locations-empty.yml: 2 problems:
  bikeep.locations: want "auto" or a non-empty list of location ids (line 4)
  bikeep.max_body_bytes: must be at least 1024, got 100 (line 5)`,
	}
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("%d invalid-*.yml files but %d test cases", len(files), len(tests))
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "invalid-"), ".yml")
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatalf("no expected error for %s", f)
			}
			cfg, err := Load(f)
			if err == nil {
				t.Fatalf("Load succeeded: %s", cfg)
			}
			if cfg != nil {
				t.Error("Load returned a config with its error")
			}
			if err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
			for _, leak := range []string{"hunter2", testCopriPassword} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error leaks %q", leak)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load = %v, want ErrNotExist", err)
	}
}

func TestParseErrorIsJoined(t *testing.T) {
	_, err := Parse([]byte("bikeep: {client_id: a, client_secret: b, concurrency: 0}\nremediation: {trigger: x}\n"), "")
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("want a joined error of 2, got %v", err)
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	c := Default()
	c.Bikeep.Token = "static"
	if err := c.Validate(); err != nil {
		t.Fatalf("default config with a token: %v", err)
	}
	c.Copri = append(c.Copri, DefaultOperator())
	c.Bikeep.Locations = Locations{Auto: true, IDs: []string{"x"}}
	c.Remediation.Rate = Rate{}
	c.Remediation.Storm.MaxFaultyRatio = nanValue()
	want := `bikeep.locations: auto and a list of ids are mutually exclusive
copri[0].name: required
copri[0].primary_url: required
copri[0].operator_url: required
copri[0].merchant_id: required
copri[0].user_id: required
copri[0]: credentials missing: set password or password_file
remediation.rate: want N/s, N/m or N/h, got "0/0s"
remediation.storm.max_faulty_ratio: must be in (0, 1], got NaN`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}

func TestStringMasksSecretsAndRoundTrips(t *testing.T) {
	setFixtureEnv(t)
	t.Setenv("FLEETD_TEST_CLIENT_ID", "fleetd-test-client")
	for _, file := range []string{"valid-full.yml", "valid-minimal.yml", "valid-token.yml"} {
		t.Run(file, func(t *testing.T) {
			cfg, err := Load(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			out := cfg.String()
			for _, s := range []string{testCopriPassword, "w0rd", testBikeepFile, testCopriFile, "minimal-secret"} {
				if strings.Contains(out, s) {
					t.Errorf("String() leaks %q:\n%s", s, out)
				}
			}
			back, err := Parse([]byte(out), "testdata")
			if err != nil {
				t.Fatalf("String() output does not parse: %v\n%s", err, out)
			}
			// Inline secrets come back as the mask; file secrets are re-read.
			want := *cfg
			want.Copri = slices.Clone(cfg.Copri)
			mask := func(s *secret.String, file string) {
				if !s.IsZero() && file == "" {
					*s = secret.Masked
				}
			}
			mask(&want.Bikeep.ClientSecret, want.Bikeep.ClientSecretFile)
			mask(&want.Bikeep.Token, want.Bikeep.TokenFile)
			for i := range want.Copri {
				mask(&want.Copri[i].Password, want.Copri[i].PasswordFile)
			}
			assertConfig(t, back, &want)
			if again := back.String(); again != out {
				t.Errorf("String() not stable:\n%s\nvs\n%s", out, again)
			}
		})
	}
}

func TestStringShowsFileNotSecret(t *testing.T) {
	setFixtureEnv(t)
	cfg, err := Load("testdata/valid-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	out := cfg.String()
	for _, want := range []string{
		"  client_secret_file: secrets/bikeep_client_secret\n",
		"    password_file: secrets/copri_password\n",
		"    password: <secret>\n",
		"  rate: 100/h\n",
		"  cooldown: 1h30m\n",
		"  locations:\n    - loc-1\n    - \"2042\"\n",
		"      timezone: Europe/Berlin\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("String() lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "client_secret: ") {
		t.Errorf("String() shows client_secret next to client_secret_file:\n%s", out)
	}
}

func TestExampleParses(t *testing.T) {
	t.Setenv("BIKEEP_CLIENT_ID", "example-client")
	t.Setenv("BIKEEP_CLIENT_SECRET", "example-secret")
	t.Setenv("COPRI_MERCHANT_ID", "example-merchant")
	t.Setenv("COPRI_USER", "monitor@example.org")
	t.Setenv("COPRI_PASSWORD", "example-password")
	got, err := Load("example.yml")
	if err != nil {
		t.Fatal(err)
	}
	// The example promises to show the defaults: apart from credentials and
	// the operator's identity it must equal an empty config's.
	want := Default()
	want.Bikeep.ClientID = "example-client"
	want.Bikeep.ClientSecret = "example-secret"
	op := DefaultOperator()
	op.Name = "freiburg"
	op.PrimaryURL = "https://shareeapp-primary.copri-bike.de"
	op.OperatorURL = "https://shareeapp-fr01.copri-bike.de"
	op.MerchantID = "example-merchant"
	op.UserID = "monitor@example.org"
	op.Password = "example-password"
	want.Copri = []Operator{op}
	assertConfig(t, got, want)
}

func TestParseStructuralErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"bikeep: {token: t}\nbikeep: {token: u}\n", `duplicate key "bikeep" (line 2, first at line 1)`},
		{"bikeep: {token: t}\ncopri:\n  - {<<: [1], name: a}\n", `copri[0]: want a mapping to merge, got a scalar (line 3)`},
		{"bikeep: {token: t}\ncopri: {name: a}\n", `copri: want a list, got a mapping (line 2)`},
		{"bikeep: {token: t, client_id: [a]}\n", `bikeep.client_id: want a string, got a list (line 1)`},
		{"bikeep: {token: t, ? [a] : b}\n", `bikeep: want a plain key, got a list (line 1)`},
		{"bikeep: {token: t, concurrency: 99999999999999999999}\n", `bikeep.concurrency: want an integer, got "99999999999999999999" (line 1)`},
		{"bikeep: {token: t}\nremediation: {rate: [1]}\n", `remediation.rate: want N/s, N/m or N/h, got a list (line 2)`},
		{"~\n", `config is empty`},
		{"---\n...\n", `config is empty`},
		{"bikeep: {token: t}\n---\n", `multiple YAML documents are not supported (second document at line 2)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "")
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) = %v, want %q", tt.doc, err, tt.want)
			}
		})
	}
}

func TestLoadErrorUnwraps(t *testing.T) {
	_, err := Load("testdata/invalid-secret-files.yml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load error %v does not unwrap to os.ErrNotExist", err)
	}
}

// Every problem an operator can get from a file points at a line of it;
// only a file with nothing in it has no line to name.
func TestEveryProblemNamesItsLine(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yml")
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`line \d+`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Load(f)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			if strings.HasSuffix(msg, ": config is empty") {
				return
			}
			if _, rest, multi := strings.Cut(msg, " problems:\n"); multi {
				msg = rest
			}
			for p := range strings.SplitSeq(msg, "\n") {
				if !line.MatchString(p) {
					t.Errorf("problem without a line number: %s", strings.TrimSpace(p))
				}
			}
		})
	}
}

// A value rejected while decoding is replaced by its default for the rest
// of the checks; that must not produce a second, misleading problem.
func TestRejectedValueIsReportedOnce(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"bikeep: {token: t}\ncopri: [5]\n", `copri[0]: want a mapping, got a scalar (line 2)`},
		{"bikeep: {client_id: '${FLEETD_TEST_UNSET_VARIABLE}', client_secret: b}\n",
			`bikeep.client_id: environment variable FLEETD_TEST_UNSET_VARIABLE is not set (line 1)`},
		{"bikeep: {client_id: a, client_secret: b}\nremediation:\n  max_attempts: many\n  power_cycle_from_attempt: 5\n",
			`remediation.max_attempts: want an integer, got "many" (line 3)`},
		{"bikeep: {client_id: a, client_secret: b}\ncopri:\n  - {name: a, match: fuzzy}\n  - name: b\n",
			`copri[0].match: want a mapping, got a scalar (line 3)
copri[0].primary_url: required (line 3)
copri[0].operator_url: required (line 3)
copri[0].merchant_id: required (line 3)
copri[0].user_id: required (line 3)
copri[0]: credentials missing: set password or password_file (line 3)
copri[1].primary_url: required (line 4)
copri[1].operator_url: required (line 4)
copri[1].merchant_id: required (line 4)
copri[1].user_id: required (line 4)
copri[1]: credentials missing: set password or password_file (line 4)`},
		{"bikeep: {token: t}\nbikeep: {token: u, concurrency: 0}\n", `duplicate key "bikeep" (line 2, first at line 1)`},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "")
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) =\n%v\nwant\n%s", tt.doc, err, tt.want)
			}
		})
	}
}

// A cron spec that fails to parse gets the @every form as the fix, using
// the interval the operator meant when it can be read off the spec.
func TestCronErrorSuggestsEvery(t *testing.T) {
	for spec, want := range map[string]string{
		"every 30s":    "@every 30s",
		"30s":          "@every 30s",
		"@every30s":    "@every 30s",
		"Every 1h30m":  "@every 1h30m",
		"every 2 m":    "@every 2m",
		"every minute": "@every 30s",
		"5 minutes":    "@every 30s",
		"every 10ms":   "@every 30s", // below cron's one-second resolution
	} {
		t.Run(spec, func(t *testing.T) {
			_, err := Parse([]byte("bikeep: {token: t}\nschedule:\n  devices: '"+spec+"'\n"), "")
			if err == nil {
				t.Fatal("Parse accepted the spec")
			}
			if !strings.Contains(err.Error(), "; for a fixed interval write \""+want+"\" (line 3)") {
				t.Errorf("error %q does not suggest %q at line 3", err, want)
			}
		})
	}
}
