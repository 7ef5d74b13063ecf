package copri

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func berlin(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05.999999999", s)
	if err != nil {
		panic(err)
	}
	return t
}

// inUTC makes times comparable with reflect.DeepEqual.
func inUTC(r Rental) Rental {
	for _, p := range []*time.Time{&r.StartTime, &r.RequestTime, &r.EndTime} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	return r
}

func TestDecodeRentalsReferencePayload(t *testing.T) {
	env, got, err := decodeRentals(reqUserBikesOccupied, readFixture(t, "user_bikes_occupied.json"), berlin(t))
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := Envelope{
		Response:      "user_bikes_occupied",
		ResponseState: "OK",
		ResponseText:  "Die Liste der reservierten und gebuchten Fahrräder wurde erfolgreich geladen",
		AuthCookie:    "6103_7dc3c95028d06c9663378f6d44346de7_12345678",
		UserID:        "ops@example.org",
		UserGroup:     []string{"FR300001"},
		CopriVersion:  "4.1.8.21",
		URIPrimary:    "https://shareeapp-primary.copri-bike.de",
		ClearingCache: "0",
		DebugLevel:    "1",
		Lang:          "de",
	}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("envelope:\n got %#v\nwant %#v", env, wantEnv)
	}
	if env.AuthCookie.Reveal() != "6103_7dc3c95028d06c9663378f6d44346de7_12345678" {
		t.Errorf("authcookie not decoded")
	}
	want := []Rental{
		{
			BookingID:     "155896",
			Bike:          "FR1540",
			Station:       "FR101",
			State:         StateOccupied,
			LockState:     LockUnlocked,
			StartTime:     utc("2021-10-28 16:09:17.454818"),
			RequestTime:   utc("2021-10-28 15:56:07.541766"),
			EndTime:       utc("2021-10-28 16:09:19"), // no zone: Berlin, CEST
			System:        "Ilockit",
			IlockitGUID:   "00000000-0000-0000-0000-fc3c002a2add",
			IlockitID:     "ISHAREIT-2200540",
			URIOperator:   "https://shareeapp-fr01.copri-bike.de",
			GPS:           &GPS{Latitude: 47.976634, Longitude: 7.825490},
			BikeGroup:     []string{"FR300001"},
			Description:   "Vauban-bike (Ilockit)",
			UnitPrice:     2,
			TotalPrice:    0,
			RealHours:     0,
			ComputedHours: 0,
			Tariff:        &Tariff{Name: "Vauban Bonus", Number: "5504", EURPerHour: 2, MaxEURPerDay: 15, FreeHours: 1},
		},
		{
			BookingID:     "155899",
			Bike:          "FR1601",
			Station:       "FR103",
			State:         StateOccupied,
			LockState:     LockLocked,
			StartTime:     utc("2021-10-28 14:40:02.118"),
			RequestTime:   utc("2021-10-28 14:38:44.9"),
			EndTime:       utc("2021-10-28 16:09:19"),
			System:        "Ilockit",
			IlockitGUID:   "00000000-0000-0000-0000-e57e6b9aee16",
			IlockitID:     "ISHAREIT-2201601",
			URIOperator:   "https://shareeapp-fr01.copri-bike.de",
			GPS:           &GPS{Latitude: 47.981217, Longitude: 7.832214},
			BikeGroup:     []string{"FR300002"},
			Description:   "Lastenrad Vauban (Ilockit)",
			UnitPrice:     3.5,
			TotalPrice:    4.38,
			RealHours:     1.5,
			ComputedHours: 1.75,
			Tariff:        &Tariff{Name: "Lastenrad Standard", Number: "5511", EURPerHour: 3.5, MaxEURPerDay: 25, FreeHours: 0.5},
		},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rentals, want %d", len(got), len(want))
	}
	for i := range want {
		if g := inUTC(got[i]); !reflect.DeepEqual(g, want[i]) {
			t.Errorf("rental %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
	// The zone-less end_time is Berlin wall time.
	if got[0].EndTime.Location().String() != "Europe/Berlin" {
		t.Errorf("end_time location = %v", got[0].EndTime.Location())
	}
}

func TestDecodeBikesReferencePayload(t *testing.T) {
	env, got, err := decodeBikes(reqBikesAll, readFixture(t, "bikes_all.json"), berlin(t))
	if err != nil {
		t.Fatal(err)
	}
	if env.Response != "bikes_all" || !env.OK() || !reflect.DeepEqual(env.UserGroup, []string{"FR300001"}) {
		t.Errorf("envelope = %+v (user_group as a plain string must become a one-element list)", env)
	}
	want := []Bike{
		{Bike: "FR1003", Station: "", State: StateDefect, LockState: LockLocked, ServiceState: ServiceCheck,
			System: "Ilockit", GPS: nil, BikeGroup: nil, URIOperator: "https://shareeapp-fr01.copri-bike.de",
			Description: "Vauban-bike (Ilockit)"},
		{Bike: "FR1540", Station: "FR101", State: StateAvailable, LockState: LockUnlocked, ServiceState: ServiceDefect,
			System: "Ilockit", GPS: &GPS{Latitude: 47.976634, Longitude: 7.825490}, BikeGroup: []string{"FR300001"},
			URIOperator: "https://shareeapp-fr01.copri-bike.de", Description: "Vauban-bike (Ilockit)"},
		{Bike: "FR1601", Station: "FR103", State: StateOccupied, LockState: LockLocked, ServiceState: ServiceOK,
			System: "Ilockit", GPS: &GPS{Latitude: 47.981217, Longitude: 7.832214}, BikeGroup: []string{"FR300002"},
			URIOperator: "https://shareeapp-fr01.copri-bike.de", Description: "Lastenrad Vauban (Ilockit)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("bikes:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeAuthorizationAndFailure(t *testing.T) {
	top, env, err := decodeTop(reqAuthorization, readFixture(t, "authorization.json"))
	if err != nil {
		t.Fatal(err)
	}
	top.wipe()
	if !env.OK() || env.ResponseState != "OK: successfully authenticated" ||
		env.AuthCookie.Reveal() != "6103_7dc3c95028d06c9663378f6d44346de7_12345678" ||
		!reflect.DeepEqual(env.UserGroup, []string{"FR300001", "FR300002"}) || env.UserID != "ops@example.org" {
		t.Errorf("authorization envelope = %+v", env)
	}
	top, env, err = decodeTop(reqUserBikesOccupied, readFixture(t, "failure.json"))
	if err != nil {
		t.Fatal(err)
	}
	top.wipe()
	if env.OK() || env.ResponseState != "Failure 1001: authcookie not defined" || !env.AuthCookie.IsZero() || env.UserGroup != nil {
		t.Errorf("failure envelope = %+v", env)
	}
	fe := &FailureError{ResponseState: env.ResponseState}
	if fe.Code() != 1001 {
		t.Errorf("Code() = %d, want 1001", fe.Code())
	}
}

// keyMaterial returns every K_* value in a fixture; the test parses loosely
// on purpose, the code under test never does.
func keyMaterial(t testing.TB, body []byte) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if strings.HasPrefix(k, "K_") {
					s := fmt.Sprint(x)
					out = append(out, s, strings.Trim(s, "[]"))
					// a distinctive fragment, in case of partial reformatting
					if parts := strings.SplitN(strings.Trim(s, "[]"), ",", 5); len(parts) == 5 {
						out = append(out, strings.Join(parts[:4], ","))
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(out) == 0 {
		t.Fatal("fixture has no key material; the test would prove nothing")
	}
	return out
}

func TestKeyMaterialIsNeverKept(t *testing.T) {
	for _, fx := range []string{"user_bikes_occupied.json", "bikes_all.json"} {
		t.Run(fx, func(t *testing.T) {
			body := readFixture(t, fx)
			keys := keyMaterial(t, body)
			_, rentals, err := decodeRentals(reqUserBikesOccupied, body, berlin(t))
			if err != nil {
				t.Fatal(err)
			}
			_, bikes, err := decodeBikes(reqBikesAll, body, berlin(t))
			if err != nil {
				t.Fatal(err)
			}
			if len(rentals)+len(bikes) == 0 {
				t.Fatal("nothing decoded")
			}
			js, err := json.Marshal(struct {
				R []Rental
				B []Bike
			}{rentals, bikes})
			if err != nil {
				t.Fatal(err)
			}
			outputs := []string{fmt.Sprintf("%+v", rentals), fmt.Sprintf("%#v", rentals),
				fmt.Sprintf("%+v", bikes), fmt.Sprintf("%#v", bikes), string(js)}
			for _, out := range outputs {
				for _, k := range keys {
					if strings.Contains(out, k) {
						t.Fatalf("decoded output contains key material %q", k)
					}
				}
				for _, name := range []string{"K_u", "K_seed", "K_a"} {
					if strings.Contains(out, name) {
						t.Fatalf("decoded output mentions %s", name)
					}
				}
			}
		})
	}
}

func TestDecodeTolerance(t *testing.T) {
	env := `"shareejson":{"response_state":"OK","authcookie":"c"}`
	rental := func(extra string) string {
		return `{` + env + `,"bikes_occupied":{"7":{"bike":"FR1","state":"occupied"` + extra + `}}}`
	}
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, rs []Rental)
	}{
		{"empty object", `{` + env + `,"bikes_occupied":{}}`, wantRentals(0)},
		{"php empty array", `{` + env + `,"bikes_occupied":[]}`, wantRentals(0)},
		{"null", `{` + env + `,"bikes_occupied":null}`, wantRentals(0)},
		{"missing", `{` + env + `}`, wantRentals(0)},
		{"empty string", `{` + env + `,"bikes_occupied":""}`, wantRentals(0)},
		{"null rental skipped", `{` + env + `,"bikes_occupied":{"1":null,"2":{"bike":"X"}}}`, wantRentals(1)},
		{"nested in shareejson", `{"shareejson":{"response_state":"OK","bikes_occupied":{"9":{"bike":"FR9"}}}}`,
			func(t *testing.T, rs []Rental) {
				if len(rs) != 1 || rs[0].Bike != "FR9" || rs[0].BookingID != "9" {
					t.Errorf("got %+v", rs)
				}
			}},
		{"numbers as json numbers", rental(`,"unit_price":2.5,"real_hours":3,"gps":{"latitude":47.5,"longitude":7.8}`),
			func(t *testing.T, rs []Rental) {
				if rs[0].UnitPrice != 2.5 || rs[0].RealHours != 3 || rs[0].GPS == nil || rs[0].GPS.Latitude != 47.5 {
					t.Errorf("got %+v", rs[0])
				}
			}},
		{"empty strings are zero", rental(`,"unit_price":"","start_time":"","gps":{"latitude":"","longitude":""}`),
			func(t *testing.T, rs []Rental) {
				if rs[0].UnitPrice != 0 || !rs[0].StartTime.IsZero() || rs[0].GPS != nil {
					t.Errorf("got %+v", rs[0])
				}
			}},
		{"null members", rental(`,"gps":null,"tariff_description":null,"bike_group":null,"end_time":null,"station":null`),
			func(t *testing.T, rs []Rental) {
				if rs[0].GPS != nil || rs[0].Tariff != nil || rs[0].BikeGroup != nil || !rs[0].EndTime.IsZero() {
					t.Errorf("got %+v", rs[0])
				}
			}},
		{"php empty gps and tariff", rental(`,"gps":[],"tariff_description":[]`),
			func(t *testing.T, rs []Rental) {
				if rs[0].GPS != nil || rs[0].Tariff != nil {
					t.Errorf("got %+v", rs[0])
				}
			}},
		{"unknown states are kept", rental(`,"lock_state":"jammed"` + `,"extra_field":{"deep":[1,2]}`),
			func(t *testing.T, rs []Rental) {
				if rs[0].LockState != "jammed" || rs[0].LockState.Known() || !rs[0].State.Known() {
					t.Errorf("got %+v", rs[0])
				}
			}},
		{"rental_description fallback", rental(`,"rental_description":{"name":"Tarif A","id":"42","eur_per_hour":"1.5","tarif_elements":{"1":["Mietgebühr","2,00 €"]}}`),
			func(t *testing.T, rs []Rental) {
				if rs[0].Tariff == nil || *rs[0].Tariff != (Tariff{Name: "Tarif A", Number: "42", EURPerHour: 1.5}) {
					t.Errorf("got %+v", rs[0].Tariff)
				}
			}},
		{"bike_group as string", rental(`,"bike_group":"FR300001"`),
			func(t *testing.T, rs []Rental) {
				if !reflect.DeepEqual(rs[0].BikeGroup, []string{"FR300001"}) {
					t.Errorf("got %+v", rs[0].BikeGroup)
				}
			}},
		{"numeric order of booking ids", `{` + env + `,"bikes_occupied":{"155896":{},"99":{},"1000":{}}}`,
			func(t *testing.T, rs []Rental) {
				var ids []string
				for _, r := range rs {
					ids = append(ids, r.BookingID)
				}
				if !reflect.DeepEqual(ids, []string{"99", "1000", "155896"}) {
					t.Errorf("order %v", ids)
				}
			}},
		{"BOM and whitespace", "\xef\xbb\xbf \n" + rental(""), wantRentals(1)},
		{"envelope odd types", `{"shareejson":{"response_state":"OK","user_group":{"a":1},"debuglevel":3,"authcookie":null}}`, wantRentals(0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rs, err := decodeRentals(reqUserBikesOccupied, []byte(tc.body), berlin(t))
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tc.check(t, rs)
		})
	}
}

func wantRentals(n int) func(t *testing.T, rs []Rental) {
	return func(t *testing.T, rs []Rental) {
		t.Helper()
		if len(rs) != n {
			t.Errorf("got %d rentals, want %d: %+v", len(rs), n, rs)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	env := `"shareejson":{"response_state":"OK","authcookie":"c"}`
	rental := func(extra string) string {
		return `{` + env + `,"bikes_occupied":{"155896":{"bike":"FR1"` + extra + `}}}`
	}
	tests := []struct {
		name      string
		body      string
		wantField string
		wantMsg   string
	}{
		{"truncated", rental("")[:40], "", "unexpected end of JSON input"},
		{"empty body", "", "", "empty body"},
		{"array root", `[1,2]`, "", "want a JSON object"},
		{"html", `<html>502</html>`, "", "want a JSON object"},
		{"no envelope", `{"bikes_occupied":{}}`, "shareejson", "missing"},
		{"null envelope", `{"shareejson":null}`, "shareejson", "missing"},
		{"string envelope", `{"shareejson":"OK"}`, "shareejson", "want an object"},
		{"decimal comma", rental(`,"unit_price":"2,00"`), "bikes_occupied[155896].unit_price", `"2,00" is not a number`},
		{"NaN", rental(`,"total_price":"NaN"`), "bikes_occupied[155896].total_price", "is not a number"},
		{"huge number", rental(`,"real_hours":1e400`), "bikes_occupied[155896].real_hours", "is not a number"},
		{"bad timestamp", rental(`,"start_time":"28.10.2021 18:09"`), "bikes_occupied[155896].start_time", `"28.10.2021 18:09" is not a timestamp`},
		{"object for string", rental(`,"bike_x":1,"station":{"a":1}`), "bikes_occupied[155896].station", "want a string, got an object"},
		{"array for number", rental(`,"unit_price":[1]`), "bikes_occupied[155896].unit_price", "want a string, got an array"},
		{"bad tariff price", rental(`,"tariff_description":{"eur_per_hour":"zwei"}`), "bikes_occupied[155896].tariff_description.eur_per_hour", `"zwei" is not a number`},
		{"bad latitude", rental(`,"gps":{"latitude":"47,9","longitude":"7.8"}`), "bikes_occupied[155896].gps.latitude", "is not a number"},
		{"latitude out of range", rental(`,"gps":{"latitude":"147.9","longitude":"7.8"}`), "bikes_occupied[155896].gps.latitude", "out of range"},
		{"gps a string", rental(`,"gps":"47.9,7.8"`), "bikes_occupied[155896].gps", "want an object"},
		{"rental a string", `{` + env + `,"bikes_occupied":{"1":"x"}}`, "bikes_occupied[1]", "want an object"},
		{"rentals a number", `{` + env + `,"bikes_occupied":5}`, "bikes_occupied", "want an object keyed by id"},
		{"rentals a list", `{` + env + `,"bikes_occupied":[{"bike":"x"}]}`, "bikes_occupied", "non-empty array"},
		{"bike_group of objects", rental(`,"bike_group":[{}]`), "bikes_occupied[155896].bike_group[0]", "want a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, rs, err := decodeRentals(reqUserBikesOccupied, []byte(tc.body), berlin(t))
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v (%T), rentals %+v; want *DecodeError", err, err, rs)
			}
			if de.Field != tc.wantField || de.Request != reqUserBikesOccupied {
				t.Errorf("field = %q, request = %q; want %q", de.Field, de.Request, tc.wantField)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			if rs != nil {
				t.Errorf("partial result returned: %+v", rs)
			}
		})
	}
	// The documented message shape.
	_, _, err := decodeRentals(reqUserBikesOccupied, []byte(rental(`,"unit_price":"2,00"`)), berlin(t))
	if want := `copri request=user_bikes_occupied: bikes_occupied[155896].unit_price: "2,00" is not a number`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestParseTimestamp(t *testing.T) {
	loc := berlin(t)
	tests := []struct {
		in   string
		want time.Time // zero: expect the zero time
		bad  bool
	}{
		{in: "2021-10-28 18:09:17.454818+02", want: utc("2021-10-28 16:09:17.454818")},
		{in: "2021-10-28 18:09:19", want: utc("2021-10-28 16:09:19")},
		{in: "2021-12-28 18:09:19", want: utc("2021-12-28 17:09:19")}, // CET in winter
		{in: "2021-10-28 18:09:17+02:00", want: utc("2021-10-28 16:09:17")},
		{in: "2021-10-28 18:09:17.5+0200", want: utc("2021-10-28 16:09:17.5")},
		{in: "2021-10-28T18:09:17Z", want: utc("2021-10-28 18:09:17")},
		{in: "2021-10-28 18:09:17-05", want: utc("2021-10-28 23:09:17")},
		{in: "2021-10-28 18:09:17.454818", want: utc("2021-10-28 16:09:17.454818")},
		{in: "  "},
		{in: "", want: time.Time{}},
		{in: "2021-10-28", bad: true},
		{in: "yesterday", bad: true},
		{in: "2021-10-28 18:09:17+2", bad: true},
		{in: "2021-13-28 18:09:17", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTimestamp(tc.in, loc)
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %q as %v, want error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got.UTC(), tc.want)
			}
		})
	}
	// WithTimeZone's zone applies to zone-less values only.
	got, err := parseTimestamp("2021-10-28 18:09:19", time.UTC)
	if err != nil || !got.Equal(utc("2021-10-28 18:09:19")) {
		t.Errorf("UTC zone: got %v, %v", got, err)
	}
}
