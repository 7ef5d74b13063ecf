package sim

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
	_ "time/tzdata" // COPRI timestamps are Europe/Berlin; do not depend on the host's zoneinfo
)

// COPRI's two timestamp shapes.
const (
	copriLongTime  = "2006-01-02 15:04:05.000000-07" // 2021-10-28 18:09:17.454818+02
	copriShortTime = "2006-01-02 15:04:05"           // 2021-10-28 18:09:19 (Berlin, no zone)
)

const (
	copriVersion = "4.1.23.12"
	minHWIDLen   = 16
)

// Failure states. COPRI's failure codes are undocumented; these follow the
// "Failure NNNN: text" shape of the real server.
const (
	copriFailUnknownRequest = "Failure 1000: request not defined"
	copriFailAuth           = "Failure 1001: authentication failed"
	copriFailHWID           = "Failure 1002: hw_id missing or shorter than 16 characters"
	copriFailCookie         = "Failure 1003: authcookie not defined"
)

// handleCopri is /APIjsonserver: GET query or POST form, dispatched on request=.
func (s *Sim) handleCopri(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed parameters", http.StatusBadRequest)
		return
	}
	req := r.Form.Get("request")
	key := routeCopriPrefix + req
	counter, ok := s.requests[key]
	if !ok {
		counter = s.requests[routeCopriPrefix+copriOtherRequest]
	}
	counter.Add(1)
	if !s.delay(r) {
		return
	}
	if kind := s.pickError(); kind != "" {
		s.injectCopriError(w, r, kind)
		return
	}
	env := wireShareeEnvelope{
		Response:      req,
		UserGroup:     []string{},
		CopriVersion:  copriVersion,
		URIPrimary:    s.baseURL(r),
		ClearingCache: "0",
		Debuglevel:    "1",
		Lang:          "de",
	}
	if l := r.Form.Get("lang"); l != "" {
		env.Lang = l
	}
	var body any
	switch req {
	case "authorization":
		body = s.copriLogin(r, env)
	case "authout":
		env = s.copriSession(r, env)
		if env.Authcookie != "" {
			s.mu.Lock()
			delete(s.sessions, env.Authcookie)
			s.mu.Unlock()
			env.ResponseState, env.ResponseText, env.Authcookie = "OK: logout", "Abgemeldet", ""
		}
		body = wireCopriAuth{Shareejson: env}
	case "user_bikes_occupied":
		env = s.copriSession(r, env)
		out := wireCopriOccupied{Shareejson: env, BikesOccupied: map[string]wireRental{}}
		if env.Authcookie != "" {
			out.BikesOccupied = s.copriRentals(env.URIPrimary)
		}
		body = out
	case "bikes_all":
		env = s.copriSession(r, env)
		out := wireCopriBikes{Shareejson: env, Bikes: map[string]wireBike{}}
		if env.Authcookie != "" {
			out.Bikes = s.copriBikes(env.URIPrimary, r.Form.Get("station"), r.Form.Get("bike"))
		}
		body = out
	default:
		env.ResponseState, env.ResponseText = copriFailUnknownRequest, "Unbekannter Request"
		body = wireCopriAuth{Shareejson: env}
	}
	b, err := marshal(body)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// injectCopriError is injectError in COPRI's style: the server sits behind
// a plain web server, so 5xx and 429 carry no JSON envelope.
func (s *Sim) injectCopriError(w http.ResponseWriter, r *http.Request, kind string) {
	switch kind {
	case errKind500, errKind503, errKind429:
		s.injected[kind].Add(1)
		code, _ := strconv.Atoi(kind)
		http.Error(w, http.StatusText(code), code)
	case errKindMalformed:
		s.injected[kind].Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"shareejson":{"response":"`)
	default:
		s.injectError(w, r, kind)
	}
}

// copriLogin answers request=authorization.
func (s *Sim) copriLogin(r *http.Request, env wireShareeEnvelope) wireCopriAuth {
	f := r.Form
	s.mu.RLock()
	fail := s.copriFail
	s.mu.RUnlock()
	switch {
	case len(f.Get("hw_id")) < minHWIDLen:
		env.ResponseState, env.ResponseText = copriFailHWID, "Bitte eine gültige Geräte-ID übermitteln"
	case fail || !equal(f.Get("merchant_id"), s.opts.CopriMerchant) ||
		!equal(f.Get("user_id"), s.opts.CopriUser) || !equal(f.Get("user_pw"), s.opts.CopriPassword):
		env.ResponseState, env.ResponseText = copriFailAuth, "Anmeldung fehlgeschlagen"
	default:
		cookie := "6103_" + randomHex(16) + "_" + s.opts.CopriMerchant
		s.mu.Lock()
		s.sessions[cookie] = struct{}{}
		s.mu.Unlock()
		env.ResponseState, env.ResponseText = "OK: successfully authenticated", "Anmeldung erfolgreich"
		env.Authcookie = cookie
		env.UserID = s.opts.CopriUser
		env.UserGroup = []string{"FR300001", "FR300002"}
	}
	return wireCopriAuth{Shareejson: env}
}

// copriSession fills env for the request's authcookie: echoed back when the
// session is valid, a Failure state with an empty authcookie otherwise.
func (s *Sim) copriSession(r *http.Request, env wireShareeEnvelope) wireShareeEnvelope {
	cookie := r.Form.Get("authcookie")
	s.mu.RLock()
	_, ok := s.sessions[cookie]
	s.mu.RUnlock()
	if cookie == "" || !ok {
		env.ResponseState, env.ResponseText = copriFailCookie, "Bitte erneut anmelden"
		return env
	}
	env.ResponseState = "OK: " + env.Response
	env.ResponseText = "OK"
	env.Authcookie = cookie
	env.UserID = s.opts.CopriUser
	env.UserGroup = []string{"FR300001", "FR300002"}
	return env
}

// berlin is COPRI's time zone.
func berlin() *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return loc
}

func money(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func coord(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }

// copriRentals renders the open rentals keyed by booking id.
func (s *Sim) copriRentals(base string) map[string]wireRental {
	now := s.opts.Now()
	zone := s.zone
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]wireRental, len(s.fleet.rentals))
	for _, rt := range s.fleet.rentals {
		b := rt.bike
		hours := max(0, now.Sub(rt.startTime).Hours())
		computed := math.Max(0, math.Ceil(hours-rt.tariff.freeHours))
		total := math.Min(computed*rt.tariff.eurPerHour, rt.tariff.maxPerDay*math.Ceil(math.Max(hours, 1)/24))
		t := &wireTariff{
			MaxEURPerDay: money(rt.tariff.maxPerDay),
			EURPerHour:   money(rt.tariff.eurPerHour),
			Name:         rt.tariff.name,
			FreeHours:    money(rt.tariff.freeHours),
		}
		w := wireRental{
			StartTime:     rt.startTime.In(zone).Format(copriLongTime),
			UnitPrice:     money(rt.tariff.eurPerHour),
			Description:   b.descr,
			LockState:     string(rt.lock),
			RequestTime:   rt.requestTime.In(zone).Format(copriLongTime),
			KU:            rt.kU,
			KSeed:         rt.kSeed,
			KA:            rt.kA,
			BikeGroup:     []string{b.group},
			URIOperator:   base,
			RealHours:     strconv.FormatFloat(math.Floor(hours*100)/100, 'f', -1, 64),
			System:        "Ilockit",
			ComputedHours: strconv.FormatFloat(computed, 'f', -1, 64),
			GPS:           wireGPS{Longitude: coord(b.lon), Latitude: coord(b.lat)},
			State:         string(rt.state),
			Bike:          b.id,
			TotalPrice:    money(total),
			Station:       b.station,
			IlockitGUID:   b.guid,
			IlockitID:     b.ilockitID,
			EndTime:       rt.endTime.In(zone).Format(copriShortTime),
		}
		if rt.altShape {
			t.ID = rt.tariff.number
			w.RentalDescription = t
		} else {
			t.Number = rt.tariff.number
			w.TariffDescription = t
		}
		out[rt.bookingID] = w
	}
	return out
}

// copriBikes renders bikes_all keyed by bike id, optionally filtered.
func (s *Sim) copriBikes(base, station, bikeID string) map[string]wireBike {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]wireBike, len(s.fleet.bikes))
	for _, b := range s.fleet.bikes {
		if (station != "" && b.station != station) || (bikeID != "" && b.id != bikeID) {
			continue
		}
		out[b.id] = wireBike{
			Bike:         b.id,
			Station:      b.station,
			State:        string(b.state),
			LockState:    string(b.lock),
			ServiceState: string(b.service),
			System:       "Ilockit",
			GPS:          wireGPS{Longitude: coord(b.lon), Latitude: coord(b.lat)},
			BikeGroup:    []string{b.group},
			URIOperator:  base,
			Description:  b.descr,
		}
	}
	return out
}
