// Package config is fleetd's configuration: the YAML schema, its defaults,
// ${ENV} expansion, secrets read from files, and validation that names the
// offending key so an operator can fix every problem in one go.
//
// Parsing is strict: unknown keys, duplicate keys, wrongly typed values and
// multiple YAML documents are errors. Secrets are held as secret.String so the
// effective configuration (Config.String) and every error stay free of them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetd/fleetd/internal/secret"
)

// Defaults that other packages may want to name.
const (
	DefaultBikeepBaseURL  = "https://services.bikeep.com"
	DefaultBikeepTokenURL = "https://auth.bikeep.com/oauth2/token"
	DefaultHWID           = "fleetd-monitor-0001"
	DefaultLedger         = "/var/lib/fleetd/remediation.db"
	// NoAutoRemediationTag is the device tag excluded from remediation unless
	// remediation.exclude.tags says otherwise.
	NoAutoRemediationTag = "no-auto-remediation"
)

// Remediation triggers (remediation.trigger).
const (
	TriggerInternal     = "internal"
	TriggerAlertmanager = "alertmanager"
	TriggerBoth         = "both"
)

// Config is the whole fleetd configuration.
type Config struct {
	Bikeep      Bikeep      `yaml:"bikeep"`
	Copri       []Operator  `yaml:"copri"`
	Schedule    Schedule    `yaml:"schedule"`
	Health      Health      `yaml:"health"`
	Remediation Remediation `yaml:"remediation"`
	Metrics     Metrics     `yaml:"metrics"`
	// Cluster is nil without a cluster section (one replica).
	Cluster *Cluster `yaml:"cluster,omitempty"`
}

// Bikeep configures the Bikeep API client. Authentication is either OAuth2
// client credentials (ClientID with ClientSecret or ClientSecretFile) or a
// static bearer token (Token or TokenFile).
type Bikeep struct {
	BaseURL          string        `yaml:"base_url"`
	TokenURL         string        `yaml:"token_url"`
	ClientID         string        `yaml:"client_id,omitempty"`
	ClientSecret     secret.String `yaml:"client_secret,omitempty"`
	ClientSecretFile string        `yaml:"client_secret_file,omitempty"`
	Token            secret.String `yaml:"token,omitempty"`
	TokenFile        string        `yaml:"token_file,omitempty"`
	// tokenPath is TokenFile resolved against the config file's directory.
	tokenPath      string
	Locations      Locations     `yaml:"locations"`
	Concurrency    int           `yaml:"concurrency"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxBodyBytes caps how much of one response body is read.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// UsesClientCredentials reports whether the client authenticates with OAuth2
// client credentials rather than a static token.
func (b Bikeep) UsesClientCredentials() bool {
	return !b.ClientSecret.IsZero() || b.ClientSecretFile != ""
}

// Operator is one COPRI / sharee.bike backend.
type Operator struct {
	// Name identifies the operator in logs and in the metric label
	// source="copri/<name>".
	Name         string        `yaml:"name"`
	PrimaryURL   string        `yaml:"primary_url"`
	OperatorURL  string        `yaml:"operator_url"`
	MerchantID   string        `yaml:"merchant_id"`
	UserID       string        `yaml:"user_id"`
	Password     secret.String `yaml:"password,omitempty"`
	PasswordFile string        `yaml:"password_file,omitempty"`
	// HWID is the stable client identifier COPRI wants (≥ 16 characters).
	HWID string `yaml:"hw_id"`
	// BikesAll enables the bikes_all request, which needs a service account.
	BikesAll       bool          `yaml:"bikes_all"`
	Match          Match         `yaml:"match"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// DefaultOperator returns an operator with every default filled in; the
// connection fields and credentials are left empty.
func DefaultOperator() Operator {
	return Operator{
		HWID:           DefaultHWID,
		Match:          Match{BikeToDevice: MatchAlias},
		RequestTimeout: 10 * time.Second,
	}
}

// UnmarshalYAML fills in the operator defaults before decoding, so a key that
// is present keeps its value (even a zero one) and an absent key gets the
// default. The checker in decode.go has already vetted the keys.
func (o *Operator) UnmarshalYAML(n *yaml.Node) error {
	type plain Operator
	*o = DefaultOperator()
	return n.Decode((*plain)(o))
}

// Schedule holds the robfig/cron specs of the two walks (see ParseCron).
type Schedule struct {
	Devices string `yaml:"devices"`
	Rentals string `yaml:"rentals"`
}

// Health holds the thresholds of fault classification.
type Health struct {
	LockMismatchGrace time.Duration `yaml:"lock_mismatch_grace"`
	TransitionGrace   time.Duration `yaml:"transition_grace"`
	RentalMaxDuration time.Duration `yaml:"rental_max_duration"`
	StaleAfter        time.Duration `yaml:"stale_after"`
}

// Remediation is the policy of the remediation engine.
type Remediation struct {
	Enabled               bool          `yaml:"enabled"`
	DryRun                bool          `yaml:"dry_run"`
	MinFaultAge           time.Duration `yaml:"min_fault_age"`
	Cooldown              time.Duration `yaml:"cooldown"`
	MaxAttempts           int           `yaml:"max_attempts"`
	PowerCycleFromAttempt int           `yaml:"power_cycle_from_attempt"`
	Rate                  Rate          `yaml:"rate"`
	MaxInFlight           int           `yaml:"max_in_flight"`
	CommandTimeout        time.Duration `yaml:"command_timeout"`
	Storm                 Storm         `yaml:"storm"`
	Exclude               Exclude       `yaml:"exclude"`
	Blackout              []Blackout    `yaml:"blackout"`
	Ledger                string        `yaml:"ledger"`
	Trigger               string        `yaml:"trigger"`
	// ForgetAfter is how long a fault episode outlives its device's absence:
	// a device missing from complete lists of its location for this long is
	// forgotten, episode and attempts included. Absence from failed or
	// partial lists is no evidence at all (DESIGN.md, "Fault episodes end
	// only on evidence").
	ForgetAfter time.Duration `yaml:"forget_after"`
	// LedgerPasswordFile holds the PostgreSQL password when the DSN has
	// none; ledgerPassword is what it held.
	LedgerPasswordFile string `yaml:"ledger_password_file,omitempty"`
	ledgerPassword     secret.String
	// HistoryRetention is how long a PostgreSQL ledger keeps its command
	// history (unused with bbolt).
	HistoryRetention time.Duration `yaml:"history_retention"`
}

// Storm configures the storm brake, applied per location and fleet-wide.
type Storm struct {
	MaxFaultyRatio float64       `yaml:"max_faulty_ratio"`
	MinDevices     int           `yaml:"min_devices"`
	Cooldown       time.Duration `yaml:"cooldown"`
}

// Exclude lists what remediation never touches.
type Exclude struct {
	Locations   []string `yaml:"locations"`
	DeviceTypes []string `yaml:"device_types"`
	Tags        []string `yaml:"tags"`
}

// Metrics configures optional metric families.
type Metrics struct {
	// PerDevice adds info and state series for every device (cardinality!).
	PerDevice bool `yaml:"per_device"`
}

// Default returns the configuration that applies to every key a file leaves
// out. It has no credentials, so it does not validate on its own.
func Default() *Config {
	return &Config{
		Bikeep: Bikeep{
			BaseURL:        DefaultBikeepBaseURL,
			TokenURL:       DefaultBikeepTokenURL,
			Locations:      Locations{Auto: true},
			Concurrency:    16,
			RequestTimeout: 10 * time.Second,
			MaxBodyBytes:   8 << 20,
		},
		Copri: []Operator{},
		Schedule: Schedule{
			Devices: "@every 30s",
			Rentals: "@every 60s",
		},
		Health: Health{
			LockMismatchGrace: 2 * time.Minute,
			TransitionGrace:   5 * time.Minute,
			RentalMaxDuration: 24 * time.Hour,
			StaleAfter:        5 * time.Minute,
		},
		Remediation: Remediation{
			Enabled:               true,
			MinFaultAge:           2 * time.Minute,
			Cooldown:              15 * time.Minute,
			MaxAttempts:           3,
			PowerCycleFromAttempt: 3,
			Rate:                  Rate{Count: 30, Per: time.Minute},
			MaxInFlight:           10,
			CommandTimeout:        3 * time.Minute,
			Storm:                 Storm{MaxFaultyRatio: 0.25, MinDevices: 8, Cooldown: 10 * time.Minute},
			Exclude: Exclude{
				Locations:   []string{},
				DeviceTypes: []string{},
				Tags:        []string{NoAutoRemediationTag},
			},
			Blackout:         []Blackout{},
			ForgetAfter:      24 * time.Hour,
			HistoryRetention: DefaultHistoryRetention,
			Ledger:           DefaultLedger,
			Trigger:          TriggerInternal,
		},
	}
}

// Load reads the file at path and parses it with Parse, resolving relative
// *_file paths against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, filepath.Dir(path))
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return cfg, nil
}

// fileError puts the file name in front of Parse's problems, one per line.
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	msg := e.err.Error()
	if !strings.Contains(msg, "\n") {
		return fmt.Sprintf("config %s: %s", e.path, msg)
	}
	n := strings.Count(msg, "\n") + 1
	return fmt.Sprintf("config %s: %d problems:\n  %s", e.path, n, strings.ReplaceAll(msg, "\n", "\n  "))
}

func (e *fileError) Unwrap() error { return e.err }

// Parse turns YAML into a validated Config: ${ENV} expansion in scalar
// values, a strict decode over the defaults, secrets read from *_file keys
// (relative paths against baseDir), then Validate. Every problem found is
// returned, joined with errors.Join, one per line.
//
// Expansion happens on the parsed scalar values rather than on the raw text,
// so a value with YAML syntax in it (a password with ": " or "#") stays one
// string, and comments may mention ${VARS} freely.
func Parse(data []byte, baseDir string) (*Config, error) {
	root, err := parseDocument(data)
	if err != nil {
		return nil, err
	}
	d := newChecker(os.LookupEnv)
	d.walk(root, reflect.TypeFor[Config](), "")
	if d.tooLarge {
		return nil, errors.Join(d.errs...)
	}
	// The checker nulled what it rejected, so the rest decodes and is
	// validated now: every problem of the file in one report.
	cfg := Default()
	if err := root.Decode(cfg); err != nil {
		// The checker should have caught this; never echo values anyway.
		return nil, errors.Join(append(d.errs, fmt.Errorf("decode config: %s", stripValues(err.Error())))...)
	}
	cfg.normalize()
	problems := d.errs
	for _, err := range append(cfg.resolveSecrets(baseDir), cfg.validate()...) {
		if ke, ok := errors.AsType[*keyError](err); ok {
			if d.covered(ke.path) || slices.ContainsFunc(ke.about, d.covered) {
				continue
			}
			ke.line = d.lineFor(ke)
		}
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// parseDocument returns the single document's top-level mapping.
func parseDocument(data []byte) (*yaml.Node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("config is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		return nil, err
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, fmt.Errorf("multiple YAML documents are not supported: %w", err)
	default:
		return nil, fmt.Errorf("multiple YAML documents are not supported (second document at line %d)", extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("config is empty")
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, errors.New("config is empty")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("want a mapping at the top level, got %s (line %d)", kindName(root), root.Line)
	}
	return root, nil
}

// normalize turns YAML nulls into the shapes a default config has, so that a
// config and its String() output decode to equal structs.
func (c *Config) normalize() {
	if c.Copri == nil {
		c.Copri = []Operator{}
	}
	r := &c.Remediation
	if r.Blackout == nil {
		r.Blackout = []Blackout{}
	}
	if r.Exclude.Locations == nil {
		r.Exclude.Locations = []string{}
	}
	if r.Exclude.DeviceTypes == nil {
		r.Exclude.DeviceTypes = []string{}
	}
	// An absent (or null) tags key keeps the safety tag; `tags: []` drops it.
	if r.Exclude.Tags == nil {
		r.Exclude.Tags = []string{NoAutoRemediationTag}
	}
}

// String returns the effective configuration as YAML, for `fleetd
// check-config`. Secrets print as <secret>; a secret read from a file is
// shown by its *_file key alone, so the output parses back to the same
// config apart from inline secrets.
func (c *Config) String() string {
	v := *c
	if v.Bikeep.ClientSecretFile != "" {
		v.Bikeep.ClientSecret = ""
	}
	if v.Bikeep.TokenFile != "" {
		v.Bikeep.Token = ""
	}
	v.Remediation.Ledger = c.Remediation.RedactedLedger()
	v.Copri = make([]Operator, len(c.Copri))
	for i, o := range c.Copri {
		if o.PasswordFile != "" {
			o.Password = ""
		}
		v.Copri[i] = o
	}
	var n yaml.Node
	if err := n.Encode(&v); err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	renderNode(&n, reflect.TypeFor[Config]())
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return fmt.Sprintf("# cannot render config: %v\n", err)
	}
	_ = enc.Close()
	return buf.String()
}

// renderNode polishes an encoded config, walking the node alongside the Go
// type: durations lose Go's zero units ("24h0m0s" → "24h") and a "$" in a
// string is doubled, so that ${ENV} expansion gives the value back.
func renderNode(n *yaml.Node, t reflect.Type) {
	switch {
	case t == durationType:
		if d, err := time.ParseDuration(n.Value); err == nil && n.Kind == yaml.ScalarNode {
			n.Value = formatDuration(d)
		}
	case t == reflect.TypeFor[Locations]():
		for _, c := range n.Content {
			c.Value = strings.ReplaceAll(c.Value, "$", "$$")
		}
	case isLeaf(t):
	case t.Kind() == reflect.String && n.Kind == yaml.ScalarNode:
		n.Value = strings.ReplaceAll(n.Value, "$", "$$")
	case t.Kind() == reflect.Pointer:
		renderNode(n, t.Elem())
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if f, ok := fields.byName[n.Content[i].Value]; ok {
				renderNode(n.Content[i+1], f.Type)
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for _, c := range n.Content {
			renderNode(c, t.Elem())
		}
	}
}

// formatDuration drops the zero minutes and seconds Duration.String keeps.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TokenPath returns token_file resolved against the config file's directory
// ("" without token_file), for a client that re-reads it.
func (b Bikeep) TokenPath() string { return b.tokenPath }
