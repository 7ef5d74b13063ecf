package bikeep

import (
	"bytes"
	"encoding/binary"
	"math/bits"
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
	// wide is set by str on a string with a non-ASCII byte.
	wide bool
}

// fastList decodes b into st.out if every element is a good device.
func (st *listState) fastList(b []byte) bool {
	s := scanner{b: b, st: st, names: st.names[:0]}
	defer func() { clear(s.names); st.names = s.names[:0] }()
	st.out = st.out[:0]
	if !s.eat('{') {
		return false
	}
	seen := false
	for first := true; ; first = false {
		name, end, ok := s.next(first)
		switch {
		case !ok:
			return false
		case end:
			s.ws()
			return seen && s.i == len(s.b)
		case string(name) == "data":
			if seen || !s.devices() {
				return false
			}
			seen = true
		case s.folds(name, dataMember) || !s.unknown(0, name) || !s.skip(1):
			return false
		}
	}
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

// next moves to the next member of an object whose '{' was consumed
// (first: none read yet): it returns the member's name with the ':' and
// the space before the value consumed, or end once the '}' is consumed.
// Callers loop over it rather than passing a callback: the member loop is
// the walk's hottest code and an indirect call per member showed in
// profiles.
func (s *scanner) next(first bool) (name []byte, end, ok bool) {
	// A compact body's member starts right here: `,"` (or `"` first).
	if i := s.i; i+1 < len(s.b) && (first && s.b[i] == '"' || !first && s.b[i] == ',' && s.b[i+1] == '"') {
		if !first {
			s.i++
		}
	} else {
		c := s.peek()
		if !first {
			switch c {
			case ',':
				s.i++
				c = s.peek()
			case '}':
				s.i++
				return nil, true, true
			default:
				return nil, false, false
			}
		} else if c == '}' {
			s.i++
			return nil, true, true
		}
		if c != '"' {
			return nil, false, false
		}
	}
	name, ok = s.str()
	if !ok {
		return nil, false, false
	}
	// Compact again: the ':' right after the name, the value right after it.
	if i := s.i; i+1 < len(s.b) && s.b[i] == ':' && s.b[i+1] > ' ' {
		s.i = i + 1
		return name, false, true
	}
	if !s.eat(':') {
		return nil, false, false
	}
	s.ws()
	return name, false, true
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
// One pass, eight bytes at a time: special8 finds the first byte that ends
// the string or needs a closer look (quote, backslash, control, non-ASCII),
// so a plain ASCII string costs a few operations per eight bytes and no
// call. Non-ASCII bytes are validated exactly as UTF-8 and set s.wide.
func (s *scanner) str() ([]byte, bool) {
	b := s.b
	start := s.i + 1
	// Whole words while the cap allows: the common string ends in one with
	// no other mark before its quote and returns from inside the loop.
	j, last := start, min(len(b)-8, start+limits.MaxNameBytes)
	for ; j <= last; j += 8 {
		if m := special8(load8(b, j)); m != 0 {
			j += bits.TrailingZeros64(m) >> 3
			if b[j] == '"' && j-start <= limits.MaxNameBytes {
				s.i = j + 1
				return sub(b, start, j), true
			}
			break
		}
	}
	return s.strTail(start, j)
}

// strTail goes on with the string str began at start from j, up to which
// every byte is plain ASCII: the cap, non-ASCII bytes, the last eight
// bytes of the body and every refusal are handled here, out of str's loop.
func (s *scanner) strTail(start, j int) ([]byte, bool) {
	b := s.b
	for {
		if j-start > limits.MaxNameBytes {
			return nil, false // over the cap the full decoder shortens it and counts that
		}
		if j+8 <= len(b) {
			m := special8(load8(b, j))
			if m == 0 {
				j += 8
				continue
			}
			j += bits.TrailingZeros64(m) >> 3
		} else if j >= len(b) {
			return nil, false
		}
		switch c := b[j]; {
		case c == '"':
			if j-start > limits.MaxNameBytes {
				return nil, false
			}
			s.i = j + 1
			return b[start:j], true
		case c == '\\' || c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			j++ // a plain byte in the last eight of the body
		default:
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n <= 1 {
				return nil, false
			}
			s.wide = true
			j += n
		}
	}
}

// sub is b[start:end] for 0 <= start <= end <= len(b), which callers
// have established, without the checks and capacity arithmetic of a slice
// expression; its capacity ends with it.
func sub(b []byte, start, end int) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), start)), end-start)
}

// load8 is the little-endian word at b[j:j+8]; callers have checked that
// j+8 <= len(b). It skips the slice expression binary.LittleEndian would
// need, whose checks were a third of str's loop.
func load8(b []byte, j int) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), j))[:])
}

// special8 marks, in the high bit of its byte, each of the eight bytes in
// x that is a quote, a backslash, below 0x20 or at or above 0x80. Marks
// above the first may be false (borrows), so only the lowest one counts.
func special8(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// Each difference sets a byte's high bit where the byte is zero (q, bs)
	// or below 0x20, and borrows only from such a byte; or-ing x in marks
	// the non-ASCII bytes and stands for the "&^ x" of the textbook forms,
	// since every ASCII byte has its high bit clear in x.
	q := x ^ ('"' * ones)
	bs := x ^ ('\\' * ones)
	return ((q - ones) | (bs - ones) | (x - 0x20*ones) | x) & highs
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
		for first := true; ; first = false {
			name, end, ok := s.next(first)
			switch {
			case !ok:
				return false
			case end:
				s.names = s.names[:mark]
				return true
			case !s.unknown(mark, name) || !s.skip(depth+1):
				return false
			}
		}
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
	if s.i < len(s.b) && s.b[s.i] == '"' {
		return s.str()
	}
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
	if len(v) <= 300 && bytes.IndexAny(v, "eE") < 0 {
		return true // without an exponent, fewer than 309 digits always fit
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

// open begins an object-or-null value: it consumes a '{' (object) or a
// null (not object, ok) and refuses anything else.
func (s *scanner) open() (object, ok bool) {
	switch s.peek() {
	case '{':
		s.i++
		return true, true
	case 'n':
		return false, s.lit("null")
	}
	return false, false
}

// memberEnd is what known returns once the object's '}' is consumed.
const memberEnd = -1

// known moves to the next member of an object of kind obj* nested in a
// device that fleetd reads, skipping and validating the others, and
// returns its id (nestedMember), or memberEnd. A repeated name, or one
// encoding/json would fold onto a known one, is refused. first is true
// before the first member; mark is len(s.names) at the '{'.
func (s *scanner) known(first *bool, kind, mark int, seen *uint64) (int, bool) {
	for {
		name, end, ok := s.next(*first)
		*first = false
		switch {
		case !ok:
			return 0, false
		case end:
			s.names = s.names[:mark]
			return memberEnd, true
		}
		k := nestedMember(kind, name)
		if k < 0 {
			id := func(b []byte) int { return nestedMember(kind, b) }
			if s.folds(name, id) || !s.unknown(mark, name) || !s.skip(3) {
				return 0, false
			}
			continue
		}
		if *seen&(1<<k) != 0 {
			return 0, false
		}
		*seen |= 1 << k
		return k, true
	}
}

// The objects nested in a device, for object.
const (
	objState = iota
	objHeartbeat
	objSettings
	objUser
	objPriceList
	objLocation
)

// nestedMember is the id of name among the members of an object of kind
// obj* — its place in the vendor's order of that object's members — or -1.
// One switch over every nested name, which costs what one per kind would.
func nestedMember(kind int, name []byte) int {
	only := func(want, id int) int {
		if kind == want {
			return id
		}
		return -1
	}
	switch string(name) {
	case "changed_at":
		return only(objState, 0)
	case "value":
		return only(objState, 1)
	case "timeout_at":
		return only(objState, 2)
	case "sent_at":
		return only(objHeartbeat, 0)
	case "latency_millis":
		return only(objHeartbeat, 1)
	case "health":
		return only(objHeartbeat, 2)
	case "dead_since":
		return only(objHeartbeat, 3)
	case "updated_at":
		return only(objSettings, 0)
	case "created_at":
		return only(objSettings, 1)
	case "deep_link":
		return only(objSettings, 2)
	case "access_key":
		return only(objUser, 0)
	case "id":
		if kind == objPriceList || kind == objLocation {
			return 0
		}
		return only(objUser, 1)
	case "uri":
		if kind == objPriceList || kind == objLocation {
			return 1
		}
	}
	return -1
}

// object reads an object-or-null member of kind obj* into d by the full
// decoder's rules for its members; settings, user, price_list and location
// are only validated. other and prev are as in device.
func (s *scanner) object(kind int, d *record.Device, other *record.Undocumented, prev *record.Device) bool {
	switch kind {
	case objState:
		d.State, d.StateChangedAt, d.StateTimeoutAt, other.State = 0, 0, 0, ""
	case objHeartbeat:
		d.Health, d.DeadSince, other.Health = 0, 0, ""
	}
	obj, ok := s.open()
	switch kind {
	case objState:
		d.HasState = obj
	case objHeartbeat:
		d.HasHeartbeat = obj
	}
	if !obj {
		return ok
	}
	var seen uint64
	first, mark := true, len(s.names)
	for {
		m, ok := s.known(&first, kind, mark, &seen)
		if !ok {
			return false
		}
		if m == memberEnd {
			return true
		}
		var b []byte
		switch kind<<8 | m {
		case objState<<8 | 0:
			d.StateChangedAt, ok = s.stamp()
		case objState<<8 | 1:
			ok = scanEnum(s, record.ParseStateValue[[]byte], record.StateOther, &d.State, &other.State, &undocumented(prev, s.st).State)
		case objState<<8 | 2:
			d.StateTimeoutAt, ok = s.stamp()
		case objHeartbeat<<8 | 0, objSettings<<8 | 0, objSettings<<8 | 1:
			_, ok = s.stamp() // validated: the full decoder refuses a bad one
		case objHeartbeat<<8 | 1:
			ok = s.float()
		case objHeartbeat<<8 | 2:
			ok = scanEnum(s, record.ParseHealth[[]byte], record.HealthOther, &d.Health, &other.Health, &undocumented(prev, s.st).Health)
		case objHeartbeat<<8 | 3:
			d.DeadSince, ok = s.stamp()
		case objLocation<<8 | 0:
			// location.id is held to limits.ID like the device's own;
			// an ASCII one has only its length to check.
			s.wide = false
			b, ok = s.text()
			ok = ok && (len(b) == 0 || !s.wide && len(b) <= limits.MaxIDBytes ||
				limits.ID(unsafe.String(unsafe.SliceData(b), len(b))) == nil)
		default:
			_, ok = s.text()
		}
		if !ok {
			return false
		}
	}
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
	// prev is the device's previous record (by position until the id is
	// read), whose strings are reused when equal; old is prev or the zero
	// record.
	var prev *record.Device
	if i < len(st.prev) {
		prev = &st.prev[i]
	}
	old := &st.none
	if prev != nil {
		old = prev
	}
	var other record.Undocumented
	// plainID: the id is all ASCII, so limits.ID has only its length to
	// check.
	haveID, plainID := false, false
	var seen uint64
	mark := len(s.names)
	for first := true; ; first = false {
		name, end, ok := s.next(first)
		if !ok {
			return false
		}
		if end {
			break
		}
		k := deviceMember(name)
		if k < 0 {
			if s.folds(name, deviceMember) || !s.unknown(mark, name) || !s.skip(2) {
				return false
			}
			continue
		}
		if seen&(1<<k) != 0 {
			return false
		}
		seen |= 1 << k
		var b []byte
		switch ruleOf(k) {
		case fID:
			s.wide = false
			b, ok = s.text()
			if !ok || b == nil {
				return false
			}
			plainID = !s.wide
			prev = st.previous(b, i)
			old = &st.none
			if prev != nil {
				old = prev
			}
			if string(b) == old.ID {
				d.ID = old.ID
			} else {
				d.ID = string(b)
			}
			haveID = true
		case fAlias:
			d.Alias, ok = s.display(old.Alias)
		case fCode:
			d.Code, ok = s.display(old.Code)
		case fHardwareID:
			d.HardwareID, ok = s.display(old.HardwareID)
		case fType:
			ok = scanEnum(s, record.ParseDeviceType[[]byte], record.TypeOther, &d.Type, &other.Type, &undocumented(prev, st).Type)
		case fSleepState:
			ok = scanEnum(s, record.ParseSleepState[[]byte], record.SleepOther, &d.SleepState, &other.SleepState, &undocumented(prev, st).SleepState)
		case fLockState:
			ok = scanEnum(s, record.ParseLockState[[]byte], record.LockOther, &d.LockState, &other.LockState, &undocumented(prev, st).LockState)
		case fHardwareState:
			ok = scanEnum(s, record.ParseHardwareState[[]byte], record.HardwareOther, &d.HardwareState, &other.HardwareState, &undocumented(prev, st).HardwareState)
		case fPowerSave:
			ok = scanEnum(s, record.ParsePowerSaveStrategy[[]byte], record.PowerOther, &d.PowerSave, &other.PowerSave, &undocumented(prev, st).PowerSave)
		case fState:
			ok = s.object(objState, d, &other, prev)
		case fHeartbeatV2:
			ok = s.object(objHeartbeat, d, &other, prev)
		case fCommands:
			ok = s.commands(d)
		case fTags:
			ok = s.tags(d, old.Tags)
		case fSettings:
			ok = s.object(objSettings, d, &other, prev)
		case fUser:
			ok = s.object(objUser, d, &other, prev)
		case fPriceList:
			ok = s.object(objPriceList, d, &other, prev)
		case fLocation:
			ok = s.object(objLocation, d, &other, prev)
		case fText:
			_, ok = s.text()
		case fFloat:
			ok = s.float()
		default:
			ok = s.boolean()
		}
		if !ok {
			return false
		}
	}
	s.names = s.names[:mark]
	if !haveID {
		return false
	}
	if !plainID || len(d.ID) == 0 || len(d.ID) > limits.MaxIDBytes {
		if limits.ID(d.ID) != nil {
			return false
		}
	}
	finish(d, prev, other)
	return true
}

// scanEnum reads an enum member (a string or null) into *code with parse; an
// undocumented value (other) is also kept verbatim in *raw, reusing *old
// when equal.
func scanEnum[E comparable](s *scanner, parse func([]byte) E, other E, code *E, raw, old *string) bool {
	b, ok := s.text()
	if *code = parse(b); *code == other && b != nil {
		*raw = keep(b, *old)
	}
	return ok
}

// undocumented is the previous record's undocumented enum values, whose
// strings are reused when equal, or the zero ones.
func undocumented(prev *record.Device, st *listState) *record.Undocumented {
	if prev != nil && prev.Undocumented() != nil {
		return prev.Undocumented()
	}
	return &st.noneOther
}

// display reads a display string or null (""), reusing old when equal.
func (s *scanner) display(old string) (string, bool) {
	b, ok := s.text()
	if !ok || b == nil {
		return "", ok
	}
	return keep(b, old), true
}

// commands reads the commands member (an object of command name to URL,
// or null): the names become d's command set, the URLs are only
// validated.
func (s *scanner) commands(d *record.Device) bool {
	d.Commands = 0
	if obj, ok := s.open(); !obj {
		return ok
	}
	mark := len(s.names)
	for first := true; ; first = false {
		name, end, ok := s.next(first)
		switch {
		case !ok:
			return false
		case end:
			s.names = s.names[:mark]
			return true
		case !s.unknown(mark, name):
			return false
		}
		d.Commands = record.AddCommand(d.Commands, name)
		if _, ok := s.text(); !ok {
			return false
		}
	}
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
