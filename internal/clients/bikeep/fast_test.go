package bikeep

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/record"
)

func TestSpecial8(t *testing.T) {
	special := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	word := func(w []byte) uint64 {
		x := uint64(0)
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(w[i])
		}
		return x
	}
	// The lowest mark must be the first special byte, whatever follows it.
	for c := range 256 {
		for pos := range 8 {
			for _, after := range []byte{'a', 0, '"', 0x1f, 0xff} {
				w := []byte("aaaaaaaa")
				w[pos] = byte(c)
				for k := pos + 1; k < 8; k++ {
					w[k] = after
				}
				first := -1
				for k, b := range w {
					if special(b) {
						first = k
						break
					}
				}
				m := special8(word(w))
				got := -1
				if m != 0 {
					got = bits.TrailingZeros64(m) / 8
				}
				if got != first {
					t.Fatalf("special8(%q) marks byte %d first, want %d", w, got, first)
				}
			}
		}
	}
}

// slowList decodes b with the full decoder, compacted.
func slowList(t testing.TB, b []byte) ([]record.Device, bool) {
	shortened := false
	devs, err := decodeDeviceList(RouteLocationDevices, b, func(string) { shortened = true })
	if err != nil || shortened {
		return nil, false
	}
	return Records(devs...), true
}

// checkFast holds the fast path to its contract: whatever it accepts, the
// full decoder accepts too, with every element good, nothing shortened and
// the same records.
func checkFast(t *testing.T, b []byte) bool {
	t.Helper()
	if requireObject(b) != nil {
		return false
	}
	st := new(listState)
	if !st.fastList(b) {
		return false
	}
	slow, ok := slowList(t, b)
	if !ok {
		t.Fatalf("the fast path accepted a body the full decoder refuses or finds bad elements in:\n%.300q", b)
	}
	if len(slow) != len(st.out) {
		t.Fatalf("fast %d devices, full %d", len(st.out), len(slow))
	}
	for i := range slow {
		if !slow[i].Equal(&st.out[i]) {
			t.Fatalf("device %d: fast %+v, full %+v", i, st.out[i], slow[i])
		}
	}
	return true
}

func TestFastPathTakesHealthyBodies(t *testing.T) {
	for _, name := range []string{"device_list.json"} {
		if !checkFast(t, fixture(t, name)) {
			t.Errorf("%s: the fast path declined the reference payload", name)
		}
	}
	deviceJSON := string(fixture(t, "device.json"))
	if !checkFast(t, []byte(`{"data":[`+deviceJSON+`,`+deviceJSON+`],"uri":"x"}`)) {
		t.Error("the fast path declined a list of reference devices")
	}
	// Bodies it must leave to jsontext, each still decoded right there.
	for _, body := range []string{
		`{"data":[` + strings.Replace(deviceJSON, `"alias": "string"`, `"alias": "a\"b"`, 1) + `]}`,
		`{"data":[` + strings.Replace(deviceJSON, `"alias": "string"`, `"alias": "x", "alias": "y"`, 1) + `]}`,
		`{"data":[` + strings.Replace(deviceJSON, `"alias": "string"`, "\"alias\": \"\xff\"", 1) + `]}`,
		`{"data":[null]}`, `{"data":[]} x`,
	} {
		if checkFast(t, []byte(body)) {
			t.Errorf("the fast path accepted %.80q", body)
		}
	}
}

// layouts are the reference list as the vendor may lay it out: as written,
// compact (what the simulator sends, and the fast path's quickest case),
// and compact but for a space after each ':' or each ','. Only structural
// characters change: the fixture's strings hold none of them.
func layouts(t testing.TB) map[string][]byte {
	t.Helper()
	var compact bytes.Buffer
	if err := json.Compact(&compact, fixture(t, "device_list.json")); err != nil {
		t.Fatal(err)
	}
	c := compact.String()
	return map[string][]byte{
		"as written":           fixture(t, "device_list.json"),
		"compact":              []byte(c),
		"space after a colon":  []byte(strings.ReplaceAll(c, `":`, `": `)),
		"space after a comma":  []byte(strings.ReplaceAll(c, `,"`, `, "`)),
		"space before a colon": []byte(strings.ReplaceAll(c, `":`, `" :`)),
	}
}

// Every layout of a healthy body takes the fast path, and reads as the full
// decoder reads it.
func TestFastPathTakesEveryLayout(t *testing.T) {
	for name, body := range layouts(t) {
		t.Run(name, func(t *testing.T) {
			if !checkFast(t, body) {
				t.Errorf("the fast path declined %.120q", body)
			}
		})
	}
}

func FuzzFastPath(f *testing.F) {
	seedCorpus(f, "device_list.json", "device.json")
	f.Add([]byte(`{"data":[` + string(fixture(f, "device.json")) + `]}`))
	for _, body := range layouts(f) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFast(t, b) })
}

// utcNanos must read exactly what time.Parse and record.FromTime read, or
// decline.
func checkUTCNanos(t *testing.T, s string) {
	t.Helper()
	got, ok := utcNanos([]byte(s))
	if !ok {
		return
	}
	want, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("utcNanos(%q) = %v, time.Parse refuses it: %v", s, got, err)
	}
	if !record.Representable(want) || want.IsZero() {
		t.Fatalf("utcNanos(%q) = %v, but it is not a representable instant", s, got)
	}
	if w := record.FromTime(want); record.Time(got) != w {
		t.Fatalf("utcNanos(%q) = %v, time.Parse reads %v", s, got, int64(w))
	}
}

func TestUTCNanos(t *testing.T) {
	for _, tc := range []struct {
		in     string
		accept bool
	}{
		{"2025-01-15T12:00:00Z", true},
		{"2026-12-01T19:14:29.457Z", true},
		{"2026-12-01T19:14:29.4Z", true},
		{"2026-12-01T19:14:29.123456789Z", true},
		{"2024-02-29T23:59:59Z", true},
		{"2024-03-01T00:00:00Z", true},
		{"2100-03-01T00:00:00Z", true},
		{"2023-12-31T23:59:59Z", true},
		{"1970-01-01T00:00:00.000000001Z", true},
		{"2261-12-31T23:59:59.999999999Z", true},
		{"1970-01-01T00:00:00Z", false}, // the epoch is not representable
		{"1969-12-31T23:59:59Z", false},
		{"2262-01-01T00:00:00Z", false}, // time.Parse decides
		{"0001-01-01T00:00:00Z", false},
		{"2000-02-29T00:00:00Z", true},
		{"2100-02-29T00:00:00Z", false},
		{"2026-12-01T19:14:29.1234567890Z", false}, // ten digits: time.Parse decides
		{"2026-12-01T19:14:29.Z", false},
		{"2026-12-01T19:14:29,457Z", false},
		{"2026-12-01T19:14:29+00:00", false},
		{"2026-12-01t19:14:29Z", false},
		{"2026-12-01T19:14:29z", false},
		{"2023-02-29T00:00:00Z", false},
		{"1900-02-29T00:00:00Z", false},
		{"2025-04-31T00:00:00Z", false},
		{"2025-00-10T00:00:00Z", false},
		{"2025-13-10T00:00:00Z", false},
		{"2025-01-00T00:00:00Z", false},
		{"2025-01-10T24:00:00Z", false},
		{"2025-01-10T23:60:00Z", false},
		{"2025-01-10T23:59:60Z", false},
		{"2025-01-10T2a:59:00Z", false},
		{"+025-01-10T23:59:00Z", false},
		{"2025-01-10T23:59:00.45aZ", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if _, ok := utcNanos([]byte(tc.in)); ok != tc.accept {
				t.Fatalf("utcNanos(%q) accepted %v, want %v", tc.in, ok, tc.accept)
			}
			checkUTCNanos(t, tc.in)
		})
	}
}

func FuzzUTCNanos(f *testing.F) {
	for _, s := range []string{"2025-01-15T12:00:00Z", "2026-12-01T19:14:29.457Z", "2024-02-29T23:59:59.123456789Z"} {
		f.Add(s)
	}
	f.Fuzz(checkUTCNanos)
}

// BenchmarkStamp compares the timestamp fast path with time.Parse, which it
// replaces for the forms healthy bodies use.
func BenchmarkStamp(b *testing.B) {
	in := []byte("2026-12-01T19:14:29.457Z")
	b.Run("utcNanos", func(b *testing.B) {
		for b.Loop() {
			if _, ok := utcNanos(in); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("time.Parse", func(b *testing.B) {
		for b.Loop() {
			if _, err := time.Parse(time.RFC3339Nano, string(in)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestStrAtEveryOffset holds the eight-bytes-at-a-time string scan to the
// byte-by-byte rule: a string is taken when it has no backslash, no control
// byte, only valid UTF-8 and at most limits.MaxNameBytes bytes, wherever
// the odd byte sits relative to the eight-byte words and the body's end.
func TestStrAtEveryOffset(t *testing.T) {
	inserts := []struct {
		name string
		b    string
		ok   bool
	}{
		{"plain", "", true},
		{"backslash", `\`, false},
		{"control", "\x1f", false},
		{"nul", "\x00", false},
		{"del", "\x7f", true},
		{"two-byte", "é", true},
		{"three-byte", "€", true},
		{"four-byte", "😀", true},
		{"replacement", "\uFFFD", true},
		{"invalid", "\xff", false},
		{"truncated", "\xe2\x82", false},
		{"surrogate", "\xed\xa0\x80", false},
	}
	for _, in := range inserts {
		t.Run(in.name, func(t *testing.T) {
			for n := 0; n <= limits.MaxNameBytes+10; n++ {
				for _, at := range []int{0, n / 2, n} {
					content := strings.Repeat("a", at) + in.b + strings.Repeat("a", n-at)
					want := in.ok && len(content) <= limits.MaxNameBytes
					for _, tail := range []string{"", ",", "]}        "} {
						body := []byte(`"` + content + `"` + tail)
						s := scanner{b: body}
						got, ok := s.str()
						if ok != want {
							t.Fatalf("str(%q) ok = %v, want %v", body, ok, want)
						}
						if ok && (string(got) != content || s.i != len(content)+2) {
							t.Fatalf("str(%q) = %q ending at %d", body, got, s.i)
						}
						if ok && s.wide != (strings.IndexFunc(content, func(r rune) bool { return r >= 0x80 }) >= 0) {
							t.Fatalf("str(%q) wide = %v", body, s.wide)
						}
					}
					// Without its closing quote the string is refused.
					s := scanner{b: []byte(`"` + content)}
					if _, ok := s.str(); ok {
						t.Fatalf("str accepted the unterminated %q", content)
					}
				}
			}
		})
	}
}
