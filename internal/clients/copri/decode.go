package copri

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/clients/httpx"
	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/secret"
)

// Envelope is the shareejson object every COPRI response carries. Fields are
// decoded tolerantly: a value of an unexpected shape reads as empty rather
// than failing the response, because only ResponseState and AuthCookie drive
// decisions.
type Envelope struct {
	Response      string        // the request name echoed back
	ResponseState string        // "OK..." or "Failure NNNN: text"
	ResponseText  string        // human-readable detail
	AuthCookie    secret.String // session token; empty means not authenticated
	UserID        string
	UserGroup     []string // arrives as an array or a single string
	CopriVersion  string
	URIPrimary    string
	ClearingCache string
	DebugLevel    string
	Lang          string
}

// OK reports whether the response state is a success ("OK" prefix).
func (e Envelope) OK() bool { return strings.HasPrefix(e.ResponseState, "OK") }

// wireTop is the root of a response. The data members are kept raw so that
// the envelope can be checked before the data is interpreted; wipe zeroes
// them once done, as they hold lock key material until then.
type wireTop struct {
	Shareejson    json.RawMessage `json:"shareejson"`
	BikesOccupied json.RawMessage `json:"bikes_occupied"`
	Bikes         json.RawMessage `json:"bikes"`
}

func (t *wireTop) wipe() {
	if t == nil {
		return
	}
	clear(t.Shareejson)
	clear(t.BikesOccupied)
	clear(t.Bikes)
}

type wireEnvelope struct {
	Response      json.RawMessage `json:"response"`
	ResponseState json.RawMessage `json:"response_state"`
	ResponseText  json.RawMessage `json:"response_text"`
	AuthCookie    json.RawMessage `json:"authcookie"`
	UserID        json.RawMessage `json:"user_id"`
	UserGroup     json.RawMessage `json:"user_group"`
	CopriVersion  json.RawMessage `json:"copri_version"`
	URIPrimary    json.RawMessage `json:"uri_primary"`
	ClearingCache json.RawMessage `json:"clearing_cache"`
	DebugLevel    json.RawMessage `json:"debuglevel"`
	Lang          json.RawMessage `json:"lang"`
	// The reference text puts the data beside shareejson; deployed servers
	// have been seen nesting it inside. Both are accepted.
	BikesOccupied json.RawMessage `json:"bikes_occupied"`
	Bikes         json.RawMessage `json:"bikes"`
}

// wireRental has no field for K_u, K_seed or K_a on purpose: encoding/json
// skips members without a field, so the key material is never copied out of
// the response body.
type wireRental struct {
	Bike              json.RawMessage `json:"bike"`
	Station           json.RawMessage `json:"station"`
	State             json.RawMessage `json:"state"`
	LockState         json.RawMessage `json:"lock_state"`
	StartTime         json.RawMessage `json:"start_time"`
	RequestTime       json.RawMessage `json:"request_time"`
	EndTime           json.RawMessage `json:"end_time"`
	System            json.RawMessage `json:"system"`
	IlockitGUID       json.RawMessage `json:"Ilockit_GUID"`
	IlockitID         json.RawMessage `json:"Ilockit_ID"`
	URIOperator       json.RawMessage `json:"uri_operator"`
	GPS               json.RawMessage `json:"gps"`
	BikeGroup         json.RawMessage `json:"bike_group"`
	Description       json.RawMessage `json:"description"`
	UnitPrice         json.RawMessage `json:"unit_price"`
	TotalPrice        json.RawMessage `json:"total_price"`
	RealHours         json.RawMessage `json:"real_hours"`
	ComputedHours     json.RawMessage `json:"computed_hours"`
	TariffDescription json.RawMessage `json:"tariff_description"`
	RentalDescription json.RawMessage `json:"rental_description"`
}

// wireBike likewise has no field for key material (service accounts may be
// sent K_a / K_seed with bikes_all).
type wireBike struct {
	Bike         json.RawMessage `json:"bike"`
	Station      json.RawMessage `json:"station"`
	State        json.RawMessage `json:"state"`
	LockState    json.RawMessage `json:"lock_state"`
	ServiceState json.RawMessage `json:"service_state"`
	System       json.RawMessage `json:"system"`
	GPS          json.RawMessage `json:"gps"`
	BikeGroup    json.RawMessage `json:"bike_group"`
	URIOperator  json.RawMessage `json:"uri_operator"`
	Description  json.RawMessage `json:"description"`
}

type wireGPS struct {
	Latitude  json.RawMessage `json:"latitude"`
	Longitude json.RawMessage `json:"longitude"`
}

type wireTariff struct {
	Name         json.RawMessage `json:"name"`
	Number       json.RawMessage `json:"number"`
	ID           json.RawMessage `json:"id"` // rental_description names the number "id"
	EURPerHour   json.RawMessage `json:"eur_per_hour"`
	MaxEURPerDay json.RawMessage `json:"max_eur_per_day"`
	FreeHours    json.RawMessage `json:"free_hours"`
}

// decodeTop splits a response into its envelope and raw data members. The
// caller must wipe the returned wireTop.
func decodeTop(req string, body []byte) (*wireTop, Envelope, error) {
	doc := bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	if len(doc) == 0 {
		return nil, Envelope{}, &DecodeError{Request: req, Err: errors.New("empty body")}
	}
	if doc[0] != '{' {
		return nil, Envelope{}, &DecodeError{Request: req, Err: errors.New("want a JSON object")}
	}
	top := &wireTop{}
	if err := json.Unmarshal(doc, top); err != nil {
		top.wipe()
		return nil, Envelope{}, &DecodeError{Request: req, Err: err}
	}
	if absent(top.Shareejson) {
		top.wipe()
		return nil, Envelope{}, &DecodeError{Request: req, Field: "shareejson", Err: errors.New("missing")}
	}
	if top.Shareejson[0] != '{' {
		top.wipe()
		return nil, Envelope{}, &DecodeError{Request: req, Field: "shareejson", Err: errors.New("want an object")}
	}
	var we wireEnvelope
	if err := json.Unmarshal(top.Shareejson, &we); err != nil {
		top.wipe()
		return nil, Envelope{}, &DecodeError{Request: req, Field: "shareejson", Err: err}
	}
	if absent(top.BikesOccupied) {
		top.BikesOccupied = we.BikesOccupied
	}
	if absent(top.Bikes) {
		top.Bikes = we.Bikes
	}
	env := Envelope{
		Response:      lenient(we.Response),
		ResponseState: strings.TrimSpace(lenient(we.ResponseState)),
		ResponseText:  lenient(we.ResponseText),
		AuthCookie:    secret.String(strings.TrimSpace(lenient(we.AuthCookie))),
		UserID:        lenient(we.UserID),
		UserGroup:     lenientList(we.UserGroup),
		CopriVersion:  lenient(we.CopriVersion),
		URIPrimary:    lenient(we.URIPrimary),
		ClearingCache: lenient(we.ClearingCache),
		DebugLevel:    lenient(we.DebugLevel),
		Lang:          lenient(we.Lang),
	}
	clear(we.AuthCookie)
	return top, env, nil
}

// decodeRentals decodes a whole user_bikes_occupied body, ignoring the
// response state (the client checks that first). Used by tests and fuzzing.
func decodeRentals(req string, body []byte, loc *time.Location) (Envelope, []Rental, error) {
	top, env, err := decodeTop(req, body)
	if err != nil {
		return env, nil, err
	}
	defer top.wipe()
	rentals, err := parseRentals(req, top.BikesOccupied, loc, nil)
	return env, rentals, err
}

// decodeBikes is decodeRentals for bikes_all.
func decodeBikes(req string, body []byte, loc *time.Location) (Envelope, []Bike, error) {
	top, env, err := decodeTop(req, body)
	if err != nil {
		return env, nil, err
	}
	defer top.wipe()
	bikes, err := parseBikes(req, top.Bikes, loc, nil)
	return env, bikes, err
}

// parseRentals decodes bikes_occupied, sorted by booking id. Ids (the
// booking key, bike, station) must pass limits.ID; display strings are
// shortened, each reported to note (which may be nil).
func parseRentals(req string, raw json.RawMessage, loc *time.Location, note func(field string)) ([]Rental, error) {
	const field = "bikes_occupied"
	byID := map[string]int{}
	var out []Rental
	err := eachMember(req, field, raw, func(key string, dec *json.Decoder) error {
		path := fmt.Sprintf("%s[%s]", field, httpx.Sanitize(key, 64))
		var w *wireRental
		if err := dec.Decode(&w); err != nil {
			return &DecodeError{Request: req, Field: path, Err: errors.New("want an object")}
		}
		if w == nil {
			return nil // a null rental carries nothing to report
		}
		f := &fields{req: req, path: path, loc: loc, note: note}
		if err := limits.ID(key); err != nil {
			return &DecodeError{Request: req, Field: path, Err: fmt.Errorf("booking id: %w", err)}
		}
		r := Rental{
			BookingID:     key,
			Bike:          f.id("bike", w.Bike),
			Station:       f.id("station", w.Station),
			State:         BookingState(f.str("state", w.State)),
			LockState:     LockState(f.str("lock_state", w.LockState)),
			StartTime:     f.time("start_time", w.StartTime),
			RequestTime:   f.time("request_time", w.RequestTime),
			EndTime:       f.time("end_time", w.EndTime),
			System:        f.str("system", w.System),
			IlockitGUID:   f.str("Ilockit_GUID", w.IlockitGUID),
			IlockitID:     f.str("Ilockit_ID", w.IlockitID),
			URIOperator:   f.str("uri_operator", w.URIOperator),
			GPS:           f.gps("gps", w.GPS),
			BikeGroup:     f.list("bike_group", w.BikeGroup),
			Description:   f.text("description", w.Description),
			UnitPrice:     f.num("unit_price", w.UnitPrice),
			TotalPrice:    f.num("total_price", w.TotalPrice),
			RealHours:     f.num("real_hours", w.RealHours),
			ComputedHours: f.num("computed_hours", w.ComputedHours),
		}
		if !absent(w.TariffDescription) {
			r.Tariff = f.tariff("tariff_description", w.TariffDescription)
		}
		if r.Tariff == nil {
			r.Tariff = f.tariff("rental_description", w.RentalDescription)
		}
		if f.err != nil {
			return f.err
		}
		if i, dup := byID[key]; dup {
			out[i] = r // JSON semantics: the last member wins
			return nil
		}
		byID[key] = len(out)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Rental) int { return compareIDs(a.BookingID, b.BookingID) })
	return out, nil
}

// parseBikes decodes bikes_all's bikes, sorted by bike id, with the caps of
// parseRentals.
func parseBikes(req string, raw json.RawMessage, loc *time.Location, note func(field string)) ([]Bike, error) {
	const field = "bikes"
	byID := map[string]int{}
	var out []Bike
	err := eachMember(req, field, raw, func(key string, dec *json.Decoder) error {
		path := fmt.Sprintf("%s[%s]", field, httpx.Sanitize(key, 64))
		var w *wireBike
		if err := dec.Decode(&w); err != nil {
			return &DecodeError{Request: req, Field: path, Err: errors.New("want an object")}
		}
		if w == nil {
			return nil
		}
		f := &fields{req: req, path: path, loc: loc, note: note}
		b := Bike{
			Bike:         f.id("bike", w.Bike),
			Station:      f.id("station", w.Station),
			State:        BookingState(f.str("state", w.State)),
			LockState:    LockState(f.str("lock_state", w.LockState)),
			ServiceState: ServiceState(f.str("service_state", w.ServiceState)),
			System:       f.str("system", w.System),
			GPS:          f.gps("gps", w.GPS),
			BikeGroup:    f.list("bike_group", w.BikeGroup),
			URIOperator:  f.str("uri_operator", w.URIOperator),
			Description:  f.text("description", w.Description),
		}
		if f.err != nil {
			return f.err
		}
		if b.Bike == "" {
			if err := limits.ID(key); err != nil {
				return &DecodeError{Request: req, Field: path, Err: fmt.Errorf("bike id: %w", err)}
			}
			b.Bike = key
		}
		if i, dup := byID[b.Bike]; dup {
			out[i] = b
			return nil
		}
		byID[b.Bike] = len(out)
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Bike) int { return compareIDs(a.Bike, b.Bike) })
	return out, nil
}

// eachMember walks an object keyed by id. A missing member, null, "" and
// PHP's empty array [] all mean "none".
func eachMember(req, field string, raw json.RawMessage, fn func(key string, dec *json.Decoder) error) error {
	raw = bytes.TrimSpace(raw)
	if absent(raw) || string(raw) == `""` {
		return nil
	}
	switch raw[0] {
	case '{':
	case '[':
		if len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0 {
			return nil
		}
		return &DecodeError{Request: req, Field: field, Err: errors.New("want an object keyed by id, got a non-empty array")}
	default:
		return &DecodeError{Request: req, Field: field, Err: errors.New("want an object keyed by id")}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return &DecodeError{Request: req, Field: field, Err: err}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return &DecodeError{Request: req, Field: field, Err: err}
		}
		key, ok := tok.(string)
		if !ok {
			return &DecodeError{Request: req, Field: field, Err: errors.New("malformed object")}
		}
		if err := fn(key, dec); err != nil {
			return err
		}
	}
	return nil
}

// fields decodes the members of one object, keeping the first error with
// its full path so a caller can keep going field by field.
type fields struct {
	req  string
	path string
	loc  *time.Location
	note func(field string) // told of every shortened value; may be nil
	err  *DecodeError
}

func (f *fields) fail(name string, err error) {
	if f.err == nil {
		f.err = &DecodeError{Request: f.req, Field: f.path + "." + name, Err: err}
	}
}

// str reads a display string, shortened to limits.MaxNameBytes.
func (f *fields) str(name string, raw json.RawMessage) string {
	return f.capped(name, raw, limits.MaxNameBytes)
}

// text reads free text, shortened to limits.MaxTextBytes.
func (f *fields) text(name string, raw json.RawMessage) string {
	return f.capped(name, raw, limits.MaxTextBytes)
}

func (f *fields) capped(name string, raw json.RawMessage, max int) string {
	s, err := scalar(raw)
	if err != nil {
		f.fail(name, err)
		return ""
	}
	out, cut := limits.Text(s, max)
	if cut && f.note != nil {
		f.note(name)
	}
	return out
}

// id reads an identifier: never shortened; "" (absent) is allowed, anything
// else must pass limits.ID.
func (f *fields) id(name string, raw json.RawMessage) string {
	s, err := scalar(raw)
	if err != nil {
		f.fail(name, err)
		return ""
	}
	if s != "" {
		if err := limits.ID(s); err != nil {
			f.fail(name, err)
			return ""
		}
	}
	return s
}

func (f *fields) num(name string, raw json.RawMessage) float64 {
	s, err := scalar(raw)
	if err != nil {
		f.fail(name, err)
		return 0
	}
	v, err := parseNumber(s)
	if err != nil {
		f.fail(name, err)
	}
	return v
}

func (f *fields) time(name string, raw json.RawMessage) time.Time {
	s, err := scalar(raw)
	if err != nil {
		f.fail(name, err)
		return time.Time{}
	}
	t, err := parseTimestamp(s, f.loc)
	if err != nil {
		f.fail(name, err)
	}
	return t
}

func (f *fields) list(name string, raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if absent(raw) {
		return nil
	}
	if raw[0] != '[' {
		s, err := scalar(raw)
		if err != nil {
			f.fail(name, errors.New("want a list of strings"))
			return nil
		}
		if s == "" {
			return nil
		}
		s, cut := limits.Name(s)
		if cut && f.note != nil {
			f.note(name)
		}
		return []string{s}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		f.fail(name, err)
		return nil
	}
	var out []string
	for i, it := range items {
		if len(out) == maxListItems {
			if f.note != nil {
				f.note(name)
			}
			break
		}
		s, err := scalar(it)
		if err != nil {
			f.fail(fmt.Sprintf("%s[%d]", name, i), err)
			return nil
		}
		if s != "" {
			s, cut := limits.Name(s)
			if cut && f.note != nil {
				f.note(name)
			}
			out = append(out, s)
		}
	}
	return out
}

// object reports whether raw is a non-empty object worth decoding; null,
// missing, "" and PHP's [] are "absent" and anything else is an error.
func (f *fields) object(name string, raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	switch {
	case absent(raw), string(raw) == `""`:
		return false
	case raw[0] == '{':
		return true
	case raw[0] == '[' && len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0:
		return false
	}
	f.fail(name, errors.New("want an object"))
	return false
}

func (f *fields) gps(name string, raw json.RawMessage) *GPS {
	if !f.object(name, raw) {
		return nil
	}
	var w wireGPS
	if err := json.Unmarshal(raw, &w); err != nil {
		f.fail(name, err)
		return nil
	}
	sub := &fields{req: f.req, path: f.path + "." + name, loc: f.loc, note: f.note}
	latS, lonS := sub.str("latitude", w.Latitude), sub.str("longitude", w.Longitude)
	if sub.err == nil && strings.TrimSpace(latS) == "" && strings.TrimSpace(lonS) == "" {
		return nil // no position known
	}
	g := &GPS{Latitude: sub.num("latitude", w.Latitude), Longitude: sub.num("longitude", w.Longitude)}
	if sub.err == nil && (g.Latitude < -90 || g.Latitude > 90) {
		sub.fail("latitude", fmt.Errorf("%s is out of range", quote(latS)))
	}
	if sub.err == nil && (g.Longitude < -180 || g.Longitude > 180) {
		sub.fail("longitude", fmt.Errorf("%s is out of range", quote(lonS)))
	}
	if sub.err != nil {
		if f.err == nil {
			f.err = sub.err
		}
		return nil
	}
	return g
}

func (f *fields) tariff(name string, raw json.RawMessage) *Tariff {
	if !f.object(name, raw) {
		return nil
	}
	var w wireTariff
	if err := json.Unmarshal(raw, &w); err != nil {
		f.fail(name, err)
		return nil
	}
	sub := &fields{req: f.req, path: f.path + "." + name, loc: f.loc, note: f.note}
	t := &Tariff{
		Name:         sub.str("name", w.Name),
		Number:       sub.str("number", w.Number),
		EURPerHour:   sub.num("eur_per_hour", w.EURPerHour),
		MaxEURPerDay: sub.num("max_eur_per_day", w.MaxEURPerDay),
		FreeHours:    sub.num("free_hours", w.FreeHours),
	}
	if t.Number == "" {
		t.Number = sub.str("id", w.ID)
	}
	if sub.err != nil {
		if f.err == nil {
			f.err = sub.err
		}
		return nil
	}
	return t
}

// maxListItems bounds a list of display strings (bike_group).
const maxListItems = 64

// absent reports a missing member or JSON null.
func absent(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// scalar returns the text of a JSON scalar: a string's contents, a number's
// literal, "true"/"false"; "" for null or a missing member. COPRI sends
// strings, but a number sent bare is the same value.
func scalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case 'n':
		return "", nil
	case '{':
		return "", errors.New("want a string, got an object")
	case '[':
		return "", errors.New("want a string, got an array")
	default: // number, true, false
		return string(raw), nil
	}
}

// lenient is scalar for envelope members, which must never fail a response.
func lenient(raw json.RawMessage) string {
	s, err := scalar(raw)
	if err != nil {
		return ""
	}
	return s
}

// lenientList reads a list of scalars or a single scalar; anything else is empty.
func lenientList(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if absent(raw) {
		return nil
	}
	if raw[0] != '[' {
		if s := lenient(raw); s != "" {
			return []string{s}
		}
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	var out []string
	for _, it := range items {
		if s := lenient(it); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseNumber parses a COPRI decimal. An empty string is 0 (COPRI sends ""
// for "not computed yet"); a decimal comma is an error rather than a guess.
func parseNumber(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%s is not a number", quote(s))
	}
	return v, nil
}

// Zoned layouts COPRI (PostgreSQL) emits: "+02", "+0200" and "+02:00"
// offsets; fractional seconds are accepted by time.Parse without a layout
// element for them.
var zonedLayouts = [...]string{
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z0700",
	"2006-01-02 15:04:05Z07",
}

// parseTimestamp parses both COPRI shapes; a time without a zone is in loc.
// "" is the zero time.
func parseTimestamp(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	norm := s
	if len(norm) > 10 && norm[10] == 'T' {
		norm = norm[:10] + " " + norm[11:]
	}
	for _, layout := range zonedLayouts {
		if t, err := time.Parse(layout, norm); err == nil {
			return t, nil
		}
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", norm, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s is not a timestamp", quote(s))
}

// compareIDs orders decimal ids numerically and anything else as text, so
// that "99" sorts before "155896".
func compareIDs(a, b string) int {
	if digits(a) && digits(b) {
		ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := cmp.Compare(len(ta), len(tb)); c != 0 {
			return c
		}
		if c := strings.Compare(ta, tb); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// quote formats a server value for an error message, clipped so a huge
// value cannot flood a log line.
func quote(s string) string { return strconv.Quote(clip(s)) }

func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
