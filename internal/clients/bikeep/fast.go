package bikeep

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/record"
)

// The fast path decodes a body in which every element is a good device —
// what a healthy API sends on every walk — with a hand-written scanner that
// validates strictly (RFC 8259 grammar, valid UTF-8, no duplicate member
// names) and produces the records the full decoder would. It declines
// (returns false) on anything it is not certain the full decoder reads the
// same way: a string with an escape or over limits.MaxNameBytes, a member
// name encoding/json would fold onto a known one, a repeated name, more
// than maxTags tags, nesting deeper than fastDepth, any element the rules
// refuse, any syntax error. Then the full decoder decodes the body, so the
// fast path only ever has to be right about what it accepts; FuzzFastPath
// and the differential tests hold it to that.
//
// Why hand-written: decoding was ~70 % of the walk's CPU with jsontext
// (github.com/go-json-experiment/json), most of it validating names and
// strings token by token; one pass over bytes already in memory, strings
// eight bytes at a time and member names matched by a switch with a bit
// set for duplicates, does the same validation several times faster.

// fastDepth bounds the nesting the fast path follows (the device itself is
// depth 2); deeper bodies go to jsontext, which allows 10,000.
const fastDepth = 32

type scanner struct {
	b  []byte
	i  int
	st *listState
	// names holds the member names of the objects being scanned, for the
	// duplicate check of names that no bit set covers.
	names [][]byte
}

// fastList decodes b into st.out if every element is a good device.
func (st *listState) fastList(b []byte) bool {
	s := scanner{b: b, st: st, names: st.names[:0]}
	defer func() { clear(s.names); st.names = s.names[:0] }()
	st.out = st.out[:0]
	s.ws()
	if !s.eat('{') {
		return false
	}
	seen := false
	mark := len(s.names)
	ok := s.members(func(name []byte) bool {
		if string(name) != "data" {
			return !s.folds(name, dataMember) && s.unknown(mark, name) && s.skip(1)
		}
		if seen {
			return false
		}
		seen = true
		return s.devices()
	})
	s.names = s.names[:mark]
	if !ok || !seen {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

// ws skips JSON whitespace.
func (s *scanner) ws() {
	// A compact body has none: one comparison settles the common case.
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return
	}
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c after whitespace.
func (s *scanner) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// peek returns the next non-space byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// members scans the members of an object whose '{' was consumed, calling
// member with each name; member consumes the value.
func (s *scanner) members(member func(name []byte) bool) bool {
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		name, ok := s.str()
		if !ok || !s.eat(':') {
			return false
		}
		s.ws()
		if !member(name) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// folds reports whether name, which matched no member exactly, could match
// one the way encoding/json matches names (case-insensitively, with K and ſ
// folding to k and s): then the full decoder would read it, and the fast
// path declines.
func (s *scanner) folds(name []byte, id func([]byte) int) bool {
	s.st.lower = s.st.lower[:0]
	for _, c := range name {
		switch {
		case c >= utf8.RuneSelf:
			return true
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		s.st.lower = append(s.st.lower, c)
	}
	return id(s.st.lower) >= 0
}

// unknown records a name no bit set covers and reports whether it is new
// among those recorded since mark.
func (s *scanner) unknown(mark int, name []byte) bool {
	for _, n := range s.names[mark:] {
		if bytes.Equal(n, name) {
			return false
		}
	}
	s.names = append(s.names, name)
	return true
}

// str scans a string at s.i ('"') without escapes and returns its bytes.
//
// The closing quote is found first with bytes.IndexByte (vectorised), then
// the span is checked: no backslash (also vectorised), then eight bytes at
// a time for control and non-ASCII bytes, with exact UTF-8 validation only
// from the first non-ASCII byte on. A string with an escaped quote has a
// backslash before the quote IndexByte finds, so it is declined as before.
func (s *scanner) str() ([]byte, bool) {
	start := s.i + 1
	if start > len(s.b) {
		return nil, false
	}
	n := bytes.IndexByte(s.b[start:], '"')
	if n < 0 || n > limits.MaxNameBytes {
		return nil, false // over the cap the full decoder shortens it and counts that
	}
	v := s.b[start : start+n]
	if bytes.IndexByte(v, '\\') >= 0 {
		return nil, false
	}
	j := 0
	for ; j+8 <= len(v); j += 8 {
		if !ascii8(binary.LittleEndian.Uint64(v[j:])) {
			break
		}
	}
	for j < len(v) {
		c := v[j]
		switch {
		case c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(v[j:])
			if r == utf8.RuneError && n <= 1 {
				return nil, false
			}
			j += n
		}
	}
	s.i = start + n + 1
	return v, true
}

// ascii8 reports whether all eight bytes in x are at or above 0x20 and
// below 0x80. It may report false for a plain byte above one that is not
// (a borrow), which only sends the scan to the exact byte loop.
func ascii8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	return (x|(x-0x20*ones)&^x)&highs == 0
}

// lit consumes the literal word.
func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// null consumes null if it comes next.
func (s *scanner) null() bool {
	return s.peek() == 'n' && s.lit("null")
}

// number scans a number by RFC 8259's grammar and returns its text.
func (s *scanner) number() ([]byte, bool) {
	b, j := s.b, s.i
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case !digits():
		return nil, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		if !digits() {
			return nil, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return nil, false
		}
	}
	v := b[s.i:j]
	s.i = j
	return v, true
}

// skip validates and skips one value of a member fleetd does not read, at
// the given depth.
func (s *scanner) skip(depth int) bool {
	switch s.peek() {
	case '"':
		_, ok := s.str()
		return ok
	case '{':
		if depth >= fastDepth {
			return false
		}
		s.i++
		mark := len(s.names)
		ok := s.members(func(name []byte) bool { return s.unknown(mark, name) && s.skip(depth+1) })
		s.names = s.names[:mark]
		return ok
	case '[':
		if depth >= fastDepth {
			return false
		}
		s.i++
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		_, ok := s.number()
		return ok
	}
	return false
}

// text reads a string or null (nil, true).
func (s *scanner) text() ([]byte, bool) {
	switch s.peek() {
	case '"':
		return s.str()
	case 'n':
		return nil, s.lit("null")
	}
	return nil, false
}

// float checks a number-or-null member: it must fit a float64.
func (s *scanner) float() bool {
	if s.null() {
		return true
	}
	v, ok := s.number()
	if !ok {
		return false
	}
	_, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(v), len(v)), 64)
	return err == nil
}

// boolean checks a boolean-or-null member.
func (s *scanner) boolean() bool {
	switch s.peek() {
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	return false
}

// stamp reads a timestamp member by bikeep.Time's rules.
func (s *scanner) stamp() (record.Time, bool) {
	b, ok := s.text()
	if !ok || len(b) == 0 {
		return 0, ok
	}
	if ns, ok := utcNanos(b); ok {
		return record.Time(ns), true
	}
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil || !record.Representable(t) {
		return 0, false
	}
	return record.FromTime(t), true
}

// utcNanos reads the forms healthy bodies use, "2006-01-02T15:04:05Z"
// with up to nine fraction digits before the Z, from 1970 to 2261, as
// nanoseconds since the Unix epoch, with time.Parse's range checks;
// anything else (offsets, other years, a bad field) is left to time.Parse,
// which decides. time.Parse and time.Date were most of the cost of a
// timestamp.
func utcNanos(b []byte) (int64, bool) {
	if len(b) < 20 || len(b) > 30 || len(b) == 21 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return 0, false
	}
	year, ok1 := digits4(b[0:4])
	month, ok2 := digits2(b[5:7])
	day, ok3 := digits2(b[8:10])
	hour, ok4 := digits2(b[11:13])
	minute, ok5 := digits2(b[14:16])
	sec, ok6 := digits2(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, false
	}
	var nsec int64
	if len(b) > 20 {
		if b[19] != '.' {
			return 0, false
		}
		digits := b[20 : len(b)-1]
		for _, c := range digits {
			if c < '0' || c > '9' {
				return 0, false
			}
			nsec = nsec*10 + int64(c-'0')
		}
		for range 9 - len(digits) {
			nsec *= 10
		}
	}
	if year < 1970 || year > 2261 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	// Days since 1970-01-01 in the proleptic Gregorian calendar, counting
	// years from March so that the leap day comes last.
	y := year
	if month <= 2 {
		y--
	}
	era, yoe := y/400, y%400
	doy := (153*((month+9)%12)+2)/5 + day - 1
	days := era*146097 + yoe*365 + yoe/4 - yoe/100 + doy - 719468
	ns := (int64(days)*86400+int64(hour*3600+minute*60+sec))*1e9 + nsec
	// The epoch itself is not representable (record.Representable).
	return ns, ns > 0
}

func digits2(b []byte) (int, bool) {
	d0, d1 := b[0]-'0', b[1]-'0'
	return int(d0)*10 + int(d1), d0 <= 9 && d1 <= 9
}

func digits4(b []byte) (int, bool) {
	hi, ok1 := digits2(b[0:2])
	lo, ok2 := digits2(b[2:4])
	return hi*100 + lo, ok1 && ok2
}

// daysIn is the length of month in year (proleptic Gregorian, as time uses).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// object scans an object-or-null member whose names are matched by id
// (-1: not one fleetd reads, skipped); a name repeated is refused.
func (s *scanner) object(id func([]byte) int, member func(int) bool) bool {
	if s.null() {
		return true
	}
	if s.peek() != '{' {
		return false
	}
	s.i++
	var seen uint64
	mark := len(s.names)
	ok := s.members(func(name []byte) bool {
		k := id(name)
		if k < 0 {
			return !s.folds(name, id) && s.unknown(mark, name) && s.skip(3)
		}
		if seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		return member(k)
	})
	s.names = s.names[:mark]
	return ok
}

// devices scans the data array.
func (s *scanner) devices() bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for i := 0; ; i++ {
		if !s.device(i) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// Member ids of a device and of its nested objects.
const (
	fID = iota
	fAlias
	fCode
	fHardwareID
	fType
	fSleepState
	fLockState
	fHardwareState
	fPowerSave
	fState
	fHeartbeatV2
	fCommands
	fTags
	fSettings
	fUser
	fPriceList
	fLocation
	fText  // deprecated and unread strings
	fFloat // deprecated numbers
	fBool
)

func deviceMember(name []byte) int {
	switch string(name) {
	case "id":
		return fID
	case "alias":
		return fAlias
	case "code":
		return fCode
	case "hardware_id":
		return fHardwareID
	case "type":
		return fType
	case "sleep_state":
		return fSleepState
	case "lock_state":
		return fLockState
	case "hardware_state":
		return fHardwareState
	case "power_save_strategy":
		return fPowerSave
	case "state":
		return fState
	case "heartbeat_v2":
		return fHeartbeatV2
	case "commands":
		return fCommands
	case "tags":
		return fTags
	case "settings":
		return fSettings
	case "user":
		return fUser
	case "price_list":
		return fPriceList
	case "location":
		return fLocation
	// Members sharing a rule get ids past the named ones, one each, so the
	// duplicate check still tells them apart.
	case "nr":
		return fBool + 1
	case "heartbeat":
		return fBool + 2
	case "heartbeat_health":
		return fBool + 3
	case "uri":
		return fBool + 4
	case "comment":
		return fBool + 5
	case "wifi_rssi":
		return fBool + 6
	case "heartbeat_latency":
		return fBool + 7
	case "has_otp_support":
		return fBool + 8
	case "has_access_lists":
		return fBool + 9
	case "has_subscription":
		return fBool + 10
	case "has_allowlist":
		return fBool + 11
	case "has_camera":
		return fBool + 12
	}
	return -1
}

// ruleOf maps the ids past fBool to their rule.
func ruleOf(k int) int {
	switch {
	case k <= fBool:
		return k
	case k <= fBool+5:
		return fText
	case k <= fBool+7:
		return fFloat
	}
	return fBool
}

func dataMember(name []byte) int {
	if string(name) == "data" {
		return 0
	}
	return -1
}

// The member ids of the nested objects, for object's duplicate check.
func stateMember(name []byte) int {
	switch string(name) {
	case "changed_at":
		return 0
	case "value":
		return 1
	case "timeout_at":
		return 2
	}
	return -1
}

func heartbeatMember(name []byte) int {
	switch string(name) {
	case "sent_at":
		return 0
	case "latency_millis":
		return 1
	case "health":
		return 2
	case "dead_since":
		return 3
	}
	return -1
}

func settingsMember(name []byte) int {
	switch string(name) {
	case "updated_at":
		return 0
	case "created_at":
		return 1
	case "deep_link":
		return 2
	}
	return -1
}

func userMember(name []byte) int {
	switch string(name) {
	case "access_key":
		return 0
	case "id":
		return 1
	}
	return -1
}

func refMember(name []byte) int {
	switch string(name) {
	case "id":
		return 0
	case "uri":
		return 1
	}
	return -1
}

// device scans element i into a new record; false unless it is a good
// device.
func (s *scanner) device(i int) bool {
	st := s.st
	if s.peek() != '{' {
		return false
	}
	s.i++
	st.out = append(st.out, record.Device{})
	d := &st.out[len(st.out)-1]
	var prev *record.Device
	if i < len(st.prev) {
		prev = &st.prev[i]
	}
	old := func() *record.Device {
		if prev != nil {
			return prev
		}
		return &st.none
	}
	var other record.Undocumented
	oldOther := func() *record.Undocumented {
		if prev != nil && prev.Undocumented() != nil {
			return prev.Undocumented()
		}
		return &st.noneOther
	}
	haveID := false
	display := func(dst *string, o string) bool {
		b, ok := s.text()
		if !ok {
			return false
		}
		if b == nil {
			*dst = ""
		} else {
			*dst = keep(b, o)
		}
		return true
	}
	enum := func(raw *string, o string, set func([]byte) bool) bool {
		b, ok := s.text()
		*raw = ""
		if !ok {
			return false
		}
		if b != nil && set(b) {
			*raw = keep(b, o)
		} else if b == nil {
			set(nil)
		}
		return true
	}
	var seen uint64
	mark := len(s.names)
	ok := s.members(func(name []byte) bool {
		k := deviceMember(name)
		if k < 0 {
			return !s.folds(name, deviceMember) && s.unknown(mark, name) && s.skip(2)
		}
		if seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		switch ruleOf(k) {
		case fID:
			b, ok := s.text()
			if !ok || b == nil {
				return false
			}
			prev = st.previous(b, i)
			if string(b) == old().ID {
				d.ID = old().ID
			} else {
				d.ID = string(b)
			}
			haveID = true
			return true
		case fAlias:
			return display(&d.Alias, old().Alias)
		case fCode:
			return display(&d.Code, old().Code)
		case fHardwareID:
			return display(&d.HardwareID, old().HardwareID)
		case fType:
			return enum(&other.Type, oldOther().Type, func(b []byte) bool {
				d.Type = record.ParseDeviceType(b)
				return d.Type == record.TypeOther
			})
		case fSleepState:
			return enum(&other.SleepState, oldOther().SleepState, func(b []byte) bool {
				d.SleepState = record.ParseSleepState(b)
				return d.SleepState == record.SleepOther
			})
		case fLockState:
			return enum(&other.LockState, oldOther().LockState, func(b []byte) bool {
				d.LockState = record.ParseLockState(b)
				return d.LockState == record.LockOther
			})
		case fHardwareState:
			return enum(&other.HardwareState, oldOther().HardwareState, func(b []byte) bool {
				d.HardwareState = record.ParseHardwareState(b)
				return d.HardwareState == record.HardwareOther
			})
		case fPowerSave:
			return enum(&other.PowerSave, oldOther().PowerSave, func(b []byte) bool {
				d.PowerSave = record.ParsePowerSaveStrategy(b)
				return d.PowerSave == record.PowerOther
			})
		case fState:
			d.State, d.StateChangedAt, d.StateTimeoutAt, other.State = 0, 0, 0, ""
			d.HasState = s.peek() == '{'
			return s.object(stateMember, func(m int) bool {
				var ok bool
				switch m {
				case 0:
					d.StateChangedAt, ok = s.stamp()
				case 1:
					ok = enum(&other.State, oldOther().State, func(b []byte) bool {
						d.State = record.ParseStateValue(b)
						return d.State == record.StateOther
					})
				default:
					d.StateTimeoutAt, ok = s.stamp()
				}
				return ok
			})
		case fHeartbeatV2:
			d.Health, d.DeadSince, other.Health = 0, 0, ""
			d.HasHeartbeat = s.peek() == '{'
			return s.object(heartbeatMember, func(m int) bool {
				var ok bool
				switch m {
				case 0:
					_, ok = s.stamp()
				case 1:
					ok = s.float()
				case 2:
					ok = enum(&other.Health, oldOther().Health, func(b []byte) bool {
						d.Health = record.ParseHealth(b)
						return d.Health == record.HealthOther
					})
				default:
					d.DeadSince, ok = s.stamp()
				}
				return ok
			})
		case fCommands:
			d.Commands = 0
			if s.null() {
				return true
			}
			if s.peek() != '{' {
				return false
			}
			s.i++
			cmark := len(s.names)
			ok := s.members(func(name []byte) bool {
				if !s.unknown(cmark, name) {
					return false
				}
				d.Commands = record.AddCommand(d.Commands, name)
				_, ok := s.text()
				return ok
			})
			s.names = s.names[:cmark]
			return ok
		case fTags:
			return s.tags(d, old().Tags)
		case fSettings:
			return s.object(settingsMember, func(m int) bool {
				if m == 2 {
					_, ok := s.text()
					return ok
				}
				_, ok := s.stamp()
				return ok
			})
		case fUser:
			return s.object(userMember, func(int) bool { _, ok := s.text(); return ok })
		case fPriceList:
			return s.object(refMember, func(int) bool { _, ok := s.text(); return ok })
		case fLocation:
			// location.id is held to limits.ID like the device's own.
			return s.object(refMember, func(m int) bool {
				b, ok := s.text()
				return ok && (m != 0 || len(b) == 0 || limits.ID(unsafe.String(unsafe.SliceData(b), len(b))) == nil)
			})
		case fText:
			_, ok := s.text()
			return ok
		case fFloat:
			return s.float()
		default:
			return s.boolean()
		}
	})
	s.names = s.names[:mark]
	if !ok || !haveID || limits.ID(d.ID) != nil {
		return false
	}
	finish(d, prev, other)
	return true
}

// tags scans a tags member; the previous record's slice is shared when
// equal.
func (s *scanner) tags(d *record.Device, old []string) bool {
	d.Tags = nil
	if s.null() {
		return true
	}
	if s.peek() != '[' {
		return false
	}
	s.i++
	tags := s.st.tags[:0]
	defer func() { clear(tags); s.st.tags = tags[:0] }()
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			b, ok := s.text()
			if !ok {
				return false
			}
			o := ""
			if len(tags) < len(old) {
				o = old[len(tags)]
			}
			if len(tags) == maxTags {
				return false // the full decoder keeps the first maxTags and counts that
			}
			tags = append(tags, keep(b, o))
			switch s.peek() {
			case ',':
				s.i++
				continue
			case ']':
				s.i++
			default:
				return false
			}
			break
		}
	}
	if old != nil && sliceEqual(tags, old) {
		d.Tags = old
	} else {
		d.Tags = append(make([]string, 0, len(tags)), tags...)
	}
	return true
}

func sliceEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
