// Package secret holds a string type for credentials and key material that
// refuses to print itself: every formatting path (fmt verbs, slog, JSON, YAML)
// renders "<secret>", so a secret that strays into a log line, an error string
// or check-config output is masked instead of leaked.
package secret

import (
	"fmt"
	"log/slog"
)

// Masked is what a non-empty secret prints as.
const Masked = "<secret>"

// String is a secret value. Use Reveal to obtain the plain text, and only at
// the point where it is put on the wire.
type String string

// Reveal returns the plain text. Call it only to hand the value to the
// protocol that needs it, never to log or format it.
func (s String) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s String) IsZero() bool { return s == "" }

func (s String) masked() string {
	if s == "" {
		return ""
	}
	return Masked
}

// String implements fmt.Stringer.
func (s String) String() string { return s.masked() }

// GoString implements fmt.GoStringer so %#v does not leak either.
func (s String) GoString() string { return fmt.Sprintf("%q", s.masked()) }

// Format implements fmt.Formatter: every verb, including %x and %q, prints the mask.
func (s String) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", s.masked())
	default:
		fmt.Fprint(f, s.masked())
	}
}

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(s.masked()) }

// MarshalJSON implements json.Marshaler.
func (s String) MarshalJSON() ([]byte, error) {
	// Written by hand: json.Marshal would HTML-escape the angle brackets.
	return []byte(`"` + s.masked() + `"`), nil
}

// MarshalYAML implements yaml.Marshaler (gopkg.in/yaml.v3).
func (s String) MarshalYAML() (any, error) { return s.masked(), nil }

// MarshalText implements encoding.TextMarshaler so map keys and text encoders mask too.
func (s String) MarshalText() ([]byte, error) { return []byte(s.masked()), nil }
