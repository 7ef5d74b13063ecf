package copri

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/clients/limits"
)

func seedCorpus(f *testing.F) {
	for _, name := range []string{"user_bikes_occupied.json", "bikes_all.json", "authorization.json", "failure.json"} {
		f.Add(readFixture(f, name))
	}
	for _, s := range []string{
		`{"shareejson":{"response_state":"OK"},"bikes_occupied":[]}`,
		`{"shareejson":{"response_state":"OK","bikes":{"a":null,"b":{"gps":{"latitude":1e999}}}}}`,
		`{"shareejson":{},"bikes_occupied":{"1":{"start_time":"2021-10-28 18:09:17.454818+02","gps":[],"bike_group":"x"}}}`,
		`{"shareejson":{},"bikes_occupied":{"1":{"tariff_description":{"eur_per_hour":"2,00"}}}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzDecodeRentals checks that no input panics and that every result is
// either an error or well-formed (sorted, no key material fields).
func FuzzDecodeRentals(f *testing.F) {
	seedCorpus(f)
	loc := time.FixedZone("CEST", 2*3600)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, rentals, err := decodeRentals(reqUserBikesOccupied, body, loc)
		if err != nil {
			if rentals != nil {
				t.Fatalf("error %v with partial result", err)
			}
			return
		}
		for i := 1; i < len(rentals); i++ {
			if compareIDs(rentals[i-1].BookingID, rentals[i].BookingID) > 0 {
				t.Fatalf("not sorted: %q before %q", rentals[i-1].BookingID, rentals[i].BookingID)
			}
		}
		for _, r := range rentals {
			if r.GPS != nil && (r.GPS.Latitude < -90 || r.GPS.Latitude > 90) {
				t.Fatalf("latitude %v accepted", r.GPS.Latitude)
			}
			if err := limits.ID(r.BookingID); err != nil {
				t.Fatalf("booking id accepted: %v", err)
			}
			for _, s := range []string{r.Bike, r.Station, r.System, string(r.State), r.Description} {
				if len(s) > limits.MaxTextBytes || !utf8.ValidString(s) {
					t.Fatalf("string of %d bytes (valid UTF-8: %v) accepted", len(s), utf8.ValidString(s))
				}
			}
		}
	})
}

// FuzzDecodeBikes is FuzzDecodeRentals for bikes_all.
func FuzzDecodeBikes(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, bikes, err := decodeBikes(reqBikesAll, body, time.UTC)
		if err != nil {
			if bikes != nil {
				t.Fatalf("error %v with partial result", err)
			}
			// Paths and values are clipped, so a hostile body cannot blow up a log line.
			if n := len(err.Error()); n > 1024 {
				t.Fatalf("error message of %d bytes", n)
			}
			return
		}
		seen := map[string]bool{}
		for _, b := range bikes {
			if seen[b.Bike] {
				t.Fatalf("duplicate bike %q", b.Bike)
			}
			seen[b.Bike] = true
			if err := limits.ID(b.Bike); err != nil {
				t.Fatalf("bike id accepted: %v", err)
			}
			if len(b.Description) > limits.MaxTextBytes || len(b.Station) > limits.MaxIDBytes {
				t.Fatalf("uncapped strings accepted: %d, %d bytes", len(b.Description), len(b.Station))
			}
		}
	})
}
