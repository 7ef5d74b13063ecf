package config

import (
	"strings"
	"testing"
)

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"HOST": "bikeep.example", "EMPTY": "", "DOLLAR": "a$b", "REF": "${HOST}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want, err string
		changed       bool
	}{
		{in: "plain", want: "plain"},
		{in: "https://${HOST}/x", want: "https://bikeep.example/x", changed: true},
		{in: "${HOST}${HOST}", want: "bikeep.examplebikeep.example", changed: true},
		{in: "${UNSET:-fallback}", want: "fallback", changed: true},
		{in: "${EMPTY:-fallback}", want: "fallback", changed: true},
		{in: "${EMPTY}", want: "", changed: true},
		{in: "${HOST:-fallback}", want: "bikeep.example", changed: true},
		{in: "${UNSET:-}", want: "", changed: true},
		{in: "${UNSET:-a:-b}", want: "a:-b", changed: true},
		{in: "$$", want: "$", changed: true},
		{in: "$${HOST}", want: "${HOST}", changed: true},
		{in: "$$$${HOST}", want: "$${HOST}", changed: true},
		{in: "$$$", want: "$$", changed: true},
		{in: "pa$word", want: "pa$word"},
		{in: "end$", want: "end$"},
		{in: "$HOST", want: "$HOST"},
		{in: "${DOLLAR}", want: "a$b", changed: true},
		{in: "${REF}", want: "${HOST}", changed: true}, // values are not expanded again
		{in: "${UNSET}", err: "environment variable UNSET is not set"},
		{in: "x ${HOST} ${UNSET}", err: "environment variable UNSET is not set"},
		{in: "${HOST", err: `unterminated "${" (write "$$" for a literal "$")`},
		{in: "${}", err: `invalid environment variable name "" in ${...}`},
		{in: "${1X}", err: `invalid environment variable name "1X" in ${...}`},
		{in: "${A B}", err: `invalid environment variable name "A B" in ${...}`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, changed, err := expandEnv(tt.in, lookup)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("expandEnv(%q) error = %v, want %q", tt.in, err, tt.err)
				}
				if strings.Contains(err.Error(), "bikeep.example") {
					t.Errorf("error echoes another variable's value: %v", err)
				}
				return
			}
			if err != nil || got != tt.want || changed != tt.changed {
				t.Fatalf("expandEnv(%q) = %q, %v, %v; want %q, %v", tt.in, got, changed, err, tt.want, tt.changed)
			}
		})
	}
}

func TestParseExpandsEnvInValuesOnly(t *testing.T) {
	const tricky = "se: cr#et\n- \"quoted\" 'too' ${NOPE} $$"
	t.Setenv("FLEETD_T_SECRET", tricky)
	t.Setenv("FLEETD_T_CONC", "24")
	t.Setenv("FLEETD_T_ENABLED", "false")
	t.Setenv("FLEETD_T_RATIO", "0.5")
	t.Setenv("FLEETD_T_TIMEOUT", "30s")
	t.Setenv("FLEETD_T_RATE", "2/s")
	t.Setenv("FLEETD_T_LOC", "loc-9")
	t.Setenv("FLEETD_T_NUMERIC", "0042")
	t.Setenv("FLEETD_T_NULL", "null")
	const doc = `
# A comment may mention ${UNSET_IN_COMMENT} without harm.
bikeep:
  client_id: ${FLEETD_T_NUMERIC}
  client_secret: ${FLEETD_T_SECRET}
  concurrency: "${FLEETD_T_CONC}"
  request_timeout: ${FLEETD_T_TIMEOUT}
  locations: ["$${literal}", "${FLEETD_T_LOC}"]
  base_url: https://${FLEETD_T_UNSET_HOST:-services.bikeep.com}/api
remediation:
  enabled: ${FLEETD_T_ENABLED}
  rate: ${FLEETD_T_RATE}
  storm: {max_faulty_ratio: "${FLEETD_T_RATIO}"}
  ledger: ${FLEETD_T_NULL}
`
	// An unknown key is reported before anything beneath it is expanded.
	_, err := Parse([]byte(doc+`  exclude:
    unknown_key_is_not_expanded: ${UNSET_UNDER_UNKNOWN_KEY}
`), "")
	want := `remediation.exclude: unknown key "unknown_key_is_not_expanded" (line 16)`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error = %v, want %q", err, want)
	}
	cfg, err := Parse([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Bikeep
	if b.ClientID != "0042" || b.ClientSecret.Reveal() != tricky || b.Concurrency != 24 || b.RequestTimeout.String() != "30s" ||
		strings.Join(b.Locations.IDs, ",") != "${literal},loc-9" || b.BaseURL != "https://services.bikeep.com/api" {
		t.Errorf("bikeep = %+v (secret intact: %v)", b, b.ClientSecret.Reveal() == tricky)
	}
	r := cfg.Remediation
	if r.Enabled || r.Rate.String() != "2/s" || r.Storm.MaxFaultyRatio != 0.5 || r.Ledger != "null" {
		t.Errorf("remediation = %+v", r)
	}
}

func TestParseExpandsAnchorsOnce(t *testing.T) {
	cfg, err := Parse([]byte(`
bikeep: {client_id: a, client_secret: b}
copri:
  - &op
    name: one
    primary_url: https://p.example
    operator_url: https://o.example
    merchant_id: m
    user_id: u
    password: &pw "$$$$x"
  - <<: *op
    name: two
    merchant_id: *pw
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Copri[0].Password.Reveal(); p != "$$x" {
		t.Errorf("copri[0].password = %q, want $$x", p)
	}
	if p, m := cfg.Copri[1].Password.Reveal(), cfg.Copri[1].MerchantID; p != "$$x" || m != "$$x" {
		t.Errorf("copri[1] password, merchant_id = %q, %q; want $$x twice", p, m)
	}
	if cfg.Copri[1].Name != "two" || cfg.Copri[1].HWID != DefaultHWID {
		t.Errorf("copri[1] = %+v", cfg.Copri[1])
	}
}

// TestErrorsNeverEchoEnvironmentValues covers the usual slip of putting a
// secret's variable into the wrong field: type errors hide values that came
// from the environment, and secret fields and URL credentials are never
// echoed. (A non-secret field's valid-typed value may be echoed by Validate,
// as check-config prints it anyway.)
func TestErrorsNeverEchoEnvironmentValues(t *testing.T) {
	const leak = "hunter2-do-not-print"
	t.Setenv("FLEETD_T_LEAK", leak)
	docs := []string{
		"bikeep: {client_id: a, client_secret: b, concurrency: '${FLEETD_T_LEAK}'}",
		"bikeep: {client_id: a, client_secret: b, request_timeout: ${FLEETD_T_LEAK}}",
		"bikeep: {client_id: a, client_secret: b, locations: ${FLEETD_T_LEAK}}",
		"bikeep: {client_id: a, client_secret: b, locations: [${FLEETD_T_LEAK}, {x: 1}]}",
		"bikeep: {client_id: a, client_secret: b}\nremediation: {rate: '${FLEETD_T_LEAK}'}",
		"bikeep: {client_id: a, client_secret: b}\nremediation: {enabled: '${FLEETD_T_LEAK}'}",
		"bikeep: {client_id: a, client_secret: b}\nremediation: {storm: {max_faulty_ratio: '${FLEETD_T_LEAK}'}}",
		"bikeep: {client_id: a, client_secret: b, base_url: 'https://user:${FLEETD_T_LEAK}@x'}",
		"bikeep: {client_id: a, client_secret: b, base_url: 'https://x:${FLEETD_T_LEAK}'}",
		"bikeep: {client_id: a, client_secret: b, client_secret_file: x, token: '${FLEETD_T_LEAK}'}",
		"bikeep: {client_id: ${FLEETD_T_LEAK}, client_secret: b}\ncopri: [{password: '${FLEETD_T_LEAK}', name: 'x y'}]",
	}
	for _, doc := range docs {
		_, err := Parse([]byte(doc), t.TempDir())
		if err == nil {
			t.Errorf("Parse(%q) succeeded", doc)
			continue
		}
		if strings.Contains(err.Error(), leak) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) error leaks the value: %v", doc, err)
		}
	}
}
