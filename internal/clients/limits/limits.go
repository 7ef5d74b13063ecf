// Package limits holds the caps fleetd puts on strings a vendor sends before
// they can reach a metric label, a log line, a URL or the status page. Both
// API clients and the streaming device decoder use these, so a device is
// judged the same way whichever path decoded it.
package limits

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Caps in bytes. An identifier is used in URLs and as the key of fleet state,
// so it is never shortened: one over its cap makes the record undecodable.
// Display strings (alias, code, names) are shortened with Marker.
const (
	MaxIDBytes   = 128
	MaxNameBytes = 256
	// MaxTextBytes bounds free text (vendor messages, details) kept for logs.
	MaxTextBytes = 1024
)

// Marker ends a shortened string, so a reader sees it was cut.
const Marker = "…"

// ErrEmptyID is returned by ID for an empty identifier.
var ErrEmptyID = errors.New("empty id")

// ID checks an identifier as the vendor sent it: non-empty, at most
// MaxIDBytes, valid UTF-8, free of U+FFFD and of C0 control characters. It
// never rewrites the value: a rewritten id would name another device.
//
// U+FFFD is refused because encoding/json turns invalid UTF-8 (and escaped
// lone surrogates) into it while decoding: an id that arrives with it is
// almost surely not the id the vendor holds, and using it would address
// another device or none. Control characters can reach an id only escaped
// (JSON forbids them raw); no real id has one, and NUL cannot be stored in
// a PostgreSQL text column, where the ledger keys its rows by id.
func ID(s string) error {
	switch {
	case s == "":
		return ErrEmptyID
	case len(s) > MaxIDBytes:
		return fmt.Errorf("id of %d bytes exceeds the %d-byte limit", len(s), MaxIDBytes)
	case !utf8.ValidString(s):
		return errors.New("id is not valid UTF-8")
	case strings.ContainsRune(s, utf8.RuneError):
		return errors.New("id contains U+FFFD (invalid UTF-8 replaced while decoding)")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 {
			return fmt.Errorf("id contains the control character U+%04X", s[i])
		}
	}
	return nil
}

// Text returns s cut to at most max bytes (Marker included) on a rune
// boundary, with invalid UTF-8 replaced, and whether it changed anything.
func Text(s string, max int) (string, bool) {
	if len(s) <= max && utf8.ValidString(s) {
		return s, false
	}
	if !utf8.ValidString(s) {
		s = toValidUTF8(s)
		if len(s) <= max {
			return s, true
		}
	}
	cut := max - len(Marker)
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Marker, true
}

// Name is Text with MaxNameBytes: for alias, code, location and station names.
func Name(s string) (string, bool) { return Text(s, MaxNameBytes) }

func toValidUTF8(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}
