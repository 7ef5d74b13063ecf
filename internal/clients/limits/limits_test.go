package limits

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestID(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", "0f6c2d1e-6c7a-4f0b-9a59-0d2f4b1a2c3d", true},
		{"empty", "", false},
		{"at cap", strings.Repeat("a", MaxIDBytes), true},
		{"over cap", strings.Repeat("a", MaxIDBytes+1), false},
		{"invalid utf-8", "utf8-d1\xff\xfe\xfd", false},
		{"invalid utf-8 as a JSON decoder leaves it", "utf8-d1\uFFFD\uFFFD\uFFFD", false},
		{"other non-ASCII", "Fahrradständer-7", true},
		{"NUL", "dev-\x001", false},
		{"newline", "dev-1\n", false},
		{"unit separator", "dev\x1f1", false},
		{"DEL is printable enough", "dev\x7f1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ID(tc.in); (err == nil) != tc.ok {
				t.Fatalf("ID(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
		})
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		max     int
		want    string
		changed bool
	}{
		{"short", "KA-0002-01", 256, "KA-0002-01", false},
		{"cut", strings.Repeat("x", 20), 10, strings.Repeat("x", 10-len(Marker)) + Marker, true},
		{"cut on rune boundary", "ääääää", 8, "ää" + Marker, true},
		{"invalid utf-8 replaced", "a\xffb", 10, "a\uFFFDb", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := Text(tc.in, tc.max)
			if got != tc.want || changed != tc.changed {
				t.Fatalf("Text(%q, %d) = %q, %v; want %q, %v", tc.in, tc.max, got, changed, tc.want, tc.changed)
			}
			if len(got) > tc.max || !utf8.ValidString(got) {
				t.Fatalf("Text(%q, %d) = %q: over the cap or invalid", tc.in, tc.max, got)
			}
		})
	}
}

func FuzzText(f *testing.F) {
	f.Add("KA-0002-01", 256)
	f.Add("ä\xff", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < len(Marker) || max > 1<<16 {
			t.Skip()
		}
		got, _ := Text(s, max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("Text(%q, %d) = %q", s, max, got)
		}
	})
}
