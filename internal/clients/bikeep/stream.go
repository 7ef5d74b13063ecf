package bikeep

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/fleetd/fleetd/internal/clients/limits"
	"github.com/fleetd/fleetd/internal/record"
)

// poolKeep bounds the body buffer a decoder state keeps for reuse: a hostile
// multi-megabyte body is decoded, then its buffer is left to the collector.
const poolKeep = 1 << 20

// ListDecoder decodes the body of GET /device/v1/locations/{id}/devices
// straight into record.Device records, one element at a time, without
// building bikeep.Device values. Fields fleetd never reads (deprecated
// fields, settings, user, price_list, the command URLs) are checked for
// their type and skipped without allocating.
//
// Semantics are those of the full decoder (decodeDeviceElement for each
// element, Compact for the record): the body must be an object whose
// "data" is an array, else the location failed (*DecodeError); an element
// that is not a device — wrong type, null, a duplicate key, invalid UTF-8,
// an invalid timestamp, an id failing limits.ID — costs only itself
// (*PartialDecodeError with the good devices). A body that is not JSON at
// all, truncated included, fails the location: how many devices were lost
// is unknown.
//
// Read buffers and decoder state are pooled. A ListDecoder is safe for
// concurrent use.
type ListDecoder struct {
	maxBody int64
	states  sync.Pool
}

// NewListDecoder returns a decoder refusing bodies over maxBody bytes (0
// means DefaultMaxBodyBytes).
func NewListDecoder(maxBody int64) *ListDecoder {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	ld := &ListDecoder{maxBody: maxBody}
	ld.states.New = func() any { return new(listState) }
	return ld
}

// listState is one decode's reusable memory.
type listState struct {
	body bytes.Buffer
	rd   bytes.Reader
	dec  jsontext.Decoder
	// el and elRd decode one element on its own after the strict pass
	// failed on a syntax error.
	el   jsontext.Decoder
	elRd bytes.Reader
	str  []byte
	name []byte
	tags []string
	// names is the fast path's scratch for member names.
	names [][]byte
	// none and noneOther are the zero values compared with when a device
	// has no previous record; never written.
	none      record.Device
	noneOther record.Undocumented
	out       []record.Device
	bad       []ItemError
	// prev is the location's previous records; byID indexes them when the
	// order changed.
	prev []record.Device
	byID map[string]int
}

// The nesting limit is jsontext's fixed 10,000, the same as encoding/json's;
// the byte limit is the body cap, applied while reading. Strict is
// jsontext's default (RFC 7493: no duplicate names, valid UTF-8); lenient
// frames a body whose elements judge their own names and encoding.
func lenient() []jsontext.Options {
	return []jsontext.Options{jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)}
}

// errTimeRange: record.Time holds instants after the Unix epoch, up to 2262.
var errTimeRange = errors.New("timestamp out of range")

// errSyntax marks an element error found by the strict pass that only the
// per-element pass can attribute to one element.
var errSyntax = errors.New("syntax")

// Decode reads one device-list body from r. prev is the location's
// previous records (nil on the first walk): strings, tag slices and, when
// nothing changed, the whole slice are shared with it, so an unchanged
// location allocates nothing. The result must not be modified.
//
// Errors: *BodyTooLargeError or a read error (location failed, no
// devices), *DecodeError (location failed, no devices), or
// *PartialDecodeError together with the devices that did decode.
func (ld *ListDecoder) Decode(r io.Reader, prev []record.Device) ([]record.Device, error) {
	st := ld.states.Get().(*listState)
	defer ld.put(st)
	st.body.Reset()
	if _, err := st.body.ReadFrom(io.LimitReader(r, ld.maxBody+1)); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(st.body.Len()) > ld.maxBody {
		return nil, &BodyTooLargeError{Limit: ld.maxBody, Route: RouteLocationDevices}
	}
	return st.decode(st.body.Bytes(), prev)
}

// DecodeBytes is Decode over a body already in memory.
func (ld *ListDecoder) DecodeBytes(b []byte, prev []record.Device) ([]record.Device, error) {
	if int64(len(b)) > ld.maxBody {
		return nil, &BodyTooLargeError{Limit: ld.maxBody, Route: RouteLocationDevices}
	}
	st := ld.states.Get().(*listState)
	defer ld.put(st)
	return st.decode(b, prev)
}

func (ld *ListDecoder) put(st *listState) {
	if st.body.Cap() > poolKeep {
		st.body = bytes.Buffer{}
	}
	clear(st.out)
	st.out, st.bad, st.prev = st.out[:0], st.bad[:0], nil
	clear(st.byID)
	st.rd.Reset(nil)
	st.elRd.Reset(nil)
	ld.states.Put(st)
}

func (st *listState) decode(b []byte, prev []record.Device) ([]record.Device, error) {
	st.prev = prev
	clear(st.byID)
	if err := requireObject(b); err != nil {
		return nil, &DecodeError{Route: RouteLocationDevices, Err: err}
	}
	if st.fastList(b) {
		return st.result()
	}
	// One strict pass over the whole body: what a healthy API sends. A
	// syntax error inside an element (a duplicate key, invalid UTF-8) stops
	// a strict decoder for good, so only then is the body framed again
	// leniently and each element decoded strictly on its own.
	st.rd.Reset(b)
	st.dec.Reset(&st.rd)
	err := st.list(&st.dec, false)
	if errors.Is(err, errSyntax) {
		st.rd.Reset(b)
		st.dec.Reset(&st.rd, lenient()...)
		err = st.list(&st.dec, true)
	}
	if err != nil {
		return nil, &DecodeError{Route: RouteLocationDevices, Err: err}
	}
	return st.result()
}

// result shares prev when nothing changed, else copies out of the scratch.
func (st *listState) result() ([]record.Device, error) {
	var devs []record.Device
	if len(st.out) == len(st.prev) && len(st.prev) > 0 {
		same := true
		for i := range st.out {
			if !st.out[i].Equal(&st.prev[i]) {
				same = false
				break
			}
		}
		if same {
			devs = st.prev
		}
	}
	if devs == nil {
		devs = make([]record.Device, len(st.out))
		copy(devs, st.out)
	}
	if len(st.bad) > 0 {
		bad := make([]ItemError, len(st.bad))
		copy(bad, st.bad)
		return devs, &PartialDecodeError{Route: RouteLocationDevices, Total: len(devs) + len(bad), Bad: bad}
	}
	return devs, nil
}

// list walks the envelope. In the strict pass (lax false) any syntax error
// is returned wrapped in errSyntax so the caller can retry leniently; in the
// lax pass a syntax error fails the location.
func (st *listState) list(dec *jsontext.Decoder, lax bool) error {
	st.out, st.bad = st.out[:0], st.bad[:0]
	syntax := func(err error) error {
		if lax {
			return err
		}
		return fmt.Errorf("%w: %w", errSyntax, err)
	}
	if _, err := dec.ReadToken(); err != nil { // '{', checked by requireObject
		return syntax(err)
	}
	seen := false
	for {
		if dec.PeekKind() == '}' {
			break
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return syntax(err)
		}
		if tok.String() != "data" {
			if err := dec.SkipValue(); err != nil {
				return syntax(err)
			}
			continue
		}
		if seen {
			return errors.New(`"data" appears twice`)
		}
		seen = true
		switch k := dec.PeekKind(); k {
		case '[':
		case 'n':
			return errors.New(`"data" is null`)
		case 0:
			_, err := dec.ReadToken()
			return syntax(err)
		default:
			return fmt.Errorf(`"data" is %s, not an array`, kindName(k))
		}
		if _, err := dec.ReadToken(); err != nil {
			return syntax(err)
		}
		for i := 0; dec.PeekKind() != ']'; i++ {
			if err := st.item(dec, i, lax); err != nil {
				return syntax(err)
			}
		}
		if _, err := dec.ReadToken(); err != nil { // ']' (or the syntax error PeekKind saw)
			return syntax(err)
		}
	}
	if _, err := dec.ReadToken(); err != nil { // '}' (or the syntax error)
		return syntax(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the top-level object")
		}
		return syntax(err)
	}
	if !seen {
		return errors.New(`no "data" list`)
	}
	return nil
}

// item decodes element i. A returned error is a syntax error of the body;
// an element that is not a device is recorded in st.bad.
func (st *listState) item(dec *jsontext.Decoder, i int, lax bool) error {
	st.out = append(st.out, record.Device{})
	d := &st.out[len(st.out)-1]
	var bad error
	if !lax {
		e := elem{st: st, dec: dec}
		if err := e.device(d, i); err != nil {
			return err
		}
		bad = e.bad
		e.finish(d)
		if bad != nil {
			st.drop(i, d.ID, bad)
		}
		return nil
	}
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	st.elRd.Reset(raw)
	st.el.Reset(&st.elRd)
	e := elem{st: st, dec: &st.el}
	if err := e.device(d, i); err != nil {
		bad = err
	} else if e.bad != nil {
		bad = e.bad
	}
	e.finish(d)
	if bad != nil {
		st.drop(i, d.ID, bad)
	}
	return nil
}

func (st *listState) drop(i int, id string, err error) {
	st.out = st.out[:len(st.out)-1]
	if id != "" {
		id = sanitize(id, 64, "")
	}
	st.bad = append(st.bad, ItemError{Index: i, ID: id, Err: err})
}

// elem decodes one element into a record.Device. Errors that make the
// element no device are kept in bad while the decoder reads on to the end
// of the element; a returned error is a syntax error.
type elem struct {
	st  *listState
	dec *jsontext.Decoder
	bad error
	// prev is the previous record of this device: first a guess (same
	// position), then the record with the same id once the id is read.
	prev *record.Device
	// other collects the raw values of undocumented enum values.
	other record.Undocumented
}

func (e *elem) fail(err error) {
	if e.bad == nil {
		e.bad = err
	}
}

func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "nothing"
}

// skipWrong skips a value of the wrong kind and records why.
func (e *elem) skipWrong(field, want string) error {
	k := e.dec.PeekKind()
	if err := e.dec.SkipValue(); err != nil {
		return err
	}
	e.fail(fmt.Errorf("%s: want %s, got %s", field, want, kindName(k)))
	return nil
}

// str reads a string or null; ok is false for null and for a wrong kind.
// The bytes are valid until the next read.
func (e *elem) str(field string) (b []byte, ok bool, err error) {
	switch e.dec.PeekKind() {
	case '"':
		v, err := e.dec.ReadValue()
		if err != nil {
			return nil, false, err
		}
		if bytes.IndexByte(v, '\\') < 0 {
			return v[1 : len(v)-1], true, nil
		}
		e.st.str, err = jsontext.AppendUnquote(e.st.str[:0], v)
		if err != nil {
			return nil, false, err
		}
		return e.st.str, true, nil
	case 'n':
		_, err := e.dec.ReadToken()
		return nil, false, err
	}
	return nil, false, e.skipWrong(field, "a string")
}

// skipStr checks a string-or-null field fleetd does not read.
func (e *elem) skipStr(field string) error {
	switch e.dec.PeekKind() {
	case '"', 'n':
		return e.dec.SkipValue()
	}
	return e.skipWrong(field, "a string")
}

func (e *elem) skipBool(field string) error {
	switch e.dec.PeekKind() {
	case 't', 'f', 'n':
		_, err := e.dec.ReadToken()
		return err
	}
	return e.skipWrong(field, "a boolean")
}

// skipNumber checks a number-or-null field: it must fit a float64.
func (e *elem) skipNumber(field string) error {
	switch e.dec.PeekKind() {
	case '0':
		v, err := e.dec.ReadValue()
		if err != nil {
			return err
		}
		if _, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(v), len(v)), 64); err != nil {
			e.fail(fmt.Errorf("%s: number out of range", field))
		}
		return nil
	case 'n':
		_, err := e.dec.ReadToken()
		return err
	}
	return e.skipWrong(field, "a number")
}

// timestamp reads a Time field as bikeep.Time does: null, "" or RFC 3339,
// within what record.Time represents.
func (e *elem) timestamp(field string) (record.Time, error) {
	b, ok, err := e.str(field)
	if err != nil || !ok || len(b) == 0 {
		return 0, err
	}
	// The parse result does not keep the string; the error is not kept.
	t, perr := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
	switch {
	case perr != nil:
		e.fail(fmt.Errorf("%s: timestamp not RFC 3339", field))
		return 0, nil
	case !record.Representable(t):
		e.fail(fmt.Errorf("%s: %w", field, errTimeRange))
		return 0, nil
	}
	return record.FromTime(t), nil
}

// name reads a member name, unescaped; valid until the next name.
func (e *elem) name() ([]byte, error) {
	v, err := e.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	e.st.name, err = jsontext.AppendUnquote(e.st.name[:0], v)
	return e.st.name, err
}

// object reads '{' (true), null (false) or a wrong kind (false, recorded),
// then calls field for every member name; field must consume the value.
func (e *elem) object(field, want string, member func(name []byte) error) error {
	switch e.dec.PeekKind() {
	case '{':
	case 'n':
		_, err := e.dec.ReadToken()
		return err
	default:
		return e.skipWrong(field, want)
	}
	if _, err := e.dec.ReadToken(); err != nil {
		return err
	}
	for e.dec.PeekKind() != '}' {
		name, err := e.name()
		if err != nil {
			return err
		}
		if err := member(name); err != nil {
			return err
		}
	}
	_, err := e.dec.ReadToken()
	return err
}

// previous returns the previous record with id b: the one at position i
// when the order is unchanged, else found through an index built on first
// need.
func (st *listState) previous(b []byte, i int) *record.Device {
	if i < len(st.prev) && st.prev[i].ID == string(b) {
		return &st.prev[i]
	}
	if len(st.prev) == 0 {
		return nil
	}
	if len(st.byID) == 0 {
		if st.byID == nil {
			st.byID = make(map[string]int, len(st.prev))
		}
		for j := range st.prev {
			st.byID[st.prev[j].ID] = j
		}
	}
	if j, ok := st.byID[string(b)]; ok {
		return &st.prev[j]
	}
	return nil
}

// keep returns b as a string: old itself when equal (no allocation), else
// a copy capped with limits.Name.
func keep(b []byte, old string) string {
	if string(b) == old {
		return old
	}
	s, _ := limits.Name(string(b))
	return s
}

// prevDev is the previous record to compare with (a zero record if none).
func (e *elem) prevDev() *record.Device {
	if e.prev != nil {
		return e.prev
	}
	return &e.st.none
}

func (e *elem) prevOther() *record.Undocumented {
	if e.prev != nil && e.prev.Undocumented() != nil {
		return e.prev.Undocumented()
	}
	return &e.st.noneOther
}

// device reads one element into d. The previous record is guessed from the
// position until the id is read, so strings that arrive before the id can
// still be shared.
func (e *elem) device(d *record.Device, i int) error {
	if i < len(e.st.prev) {
		e.prev = &e.st.prev[i]
	}
	switch e.dec.PeekKind() {
	case '{':
	case 'n':
		_, err := e.dec.ReadToken()
		e.fail(errors.New("null device"))
		return err
	default:
		return e.skipWrong("device", "an object")
	}
	haveID := false
	err := e.object("device", "an object", func(name []byte) error {
		switch string(name) {
		case "id":
			b, ok, err := e.str("id")
			if err != nil || !ok {
				return err
			}
			e.prev = e.st.previous(b, i)
			if string(b) == e.prevDev().ID {
				d.ID = e.prevDev().ID
			} else {
				d.ID = string(b)
			}
			haveID = true
			return nil
		case "alias":
			return e.keepStr("alias", &d.Alias, e.prevDev().Alias)
		case "code":
			return e.keepStr("code", &d.Code, e.prevDev().Code)
		case "hardware_id":
			return e.keepStr("hardware_id", &d.HardwareID, e.prevDev().HardwareID)
		case "type":
			return e.enum("type", &e.other.Type, e.prevOther().Type, func(b []byte) bool {
				d.Type = record.ParseDeviceType(b)
				return d.Type == record.TypeOther
			})
		case "sleep_state":
			return e.enum("sleep_state", &e.other.SleepState, e.prevOther().SleepState, func(b []byte) bool {
				d.SleepState = record.ParseSleepState(b)
				return d.SleepState == record.SleepOther
			})
		case "lock_state":
			return e.enum("lock_state", &e.other.LockState, e.prevOther().LockState, func(b []byte) bool {
				d.LockState = record.ParseLockState(b)
				return d.LockState == record.LockOther
			})
		case "hardware_state":
			return e.enum("hardware_state", &e.other.HardwareState, e.prevOther().HardwareState, func(b []byte) bool {
				d.HardwareState = record.ParseHardwareState(b)
				return d.HardwareState == record.HardwareOther
			})
		case "power_save_strategy":
			return e.enum("power_save_strategy", &e.other.PowerSave, e.prevOther().PowerSave, func(b []byte) bool {
				d.PowerSave = record.ParsePowerSaveStrategy(b)
				return d.PowerSave == record.PowerOther
			})
		case "state":
			d.State, d.StateChangedAt, d.StateTimeoutAt, e.other.State = 0, 0, 0, ""
			return e.object("state", "an object", func(name []byte) error {
				var err error
				switch string(name) {
				case "changed_at":
					d.StateChangedAt, err = e.timestamp("state.changed_at")
				case "timeout_at":
					d.StateTimeoutAt, err = e.timestamp("state.timeout_at")
				case "value":
					err = e.enum("state.value", &e.other.State, e.prevOther().State, func(b []byte) bool {
						d.State = record.ParseStateValue(b)
						return d.State == record.StateOther
					})
				default:
					err = e.dec.SkipValue()
				}
				return err
			})
		case "heartbeat_v2":
			d.Health, d.DeadSince, e.other.Health = 0, 0, ""
			return e.object("heartbeat_v2", "an object", func(name []byte) error {
				var err error
				switch string(name) {
				case "health":
					err = e.enum("heartbeat_v2.health", &e.other.Health, e.prevOther().Health, func(b []byte) bool {
						d.Health = record.ParseHealth(b)
						return d.Health == record.HealthOther
					})
				case "dead_since":
					d.DeadSince, err = e.timestamp("heartbeat_v2.dead_since")
				case "sent_at":
					_, err = e.timestamp("heartbeat_v2.sent_at")
				case "latency_millis":
					err = e.skipNumber("heartbeat_v2.latency_millis")
				default:
					err = e.dec.SkipValue()
				}
				return err
			})
		case "commands":
			// A member repeated in the element replaces the earlier value,
			// as in the full decoder (only possible in the lenient pass for
			// envelope keys; elements are strict).
			d.Commands = 0
			return e.object("commands", "an object", func(name []byte) error {
				d.Commands = record.AddCommand(d.Commands, name)
				return e.skipStr("commands value")
			})
		case "tags":
			return e.tagList(d)
		case "settings":
			return e.object("settings", "an object", func(name []byte) error {
				switch string(name) {
				case "updated_at":
					_, err := e.timestamp("settings.updated_at")
					return err
				case "created_at":
					_, err := e.timestamp("settings.created_at")
					return err
				case "deep_link":
					return e.skipStr("settings.deep_link")
				}
				return e.dec.SkipValue()
			})
		case "user":
			return e.object("user", "an object", func(name []byte) error {
				switch string(name) {
				case "access_key":
					return e.skipStr("user.access_key")
				case "id":
					return e.skipStr("user.id")
				}
				return e.dec.SkipValue()
			})
		case "price_list":
			return e.ref("price_list", "price_list.id", "price_list.uri")
		case "location":
			return e.ref("location", "location.id", "location.uri")
		case "nr", "heartbeat", "heartbeat_health", "uri", "comment":
			return e.skipStr("a string field")
		case "wifi_rssi", "heartbeat_latency":
			return e.skipNumber("a number field")
		case "has_otp_support", "has_access_lists", "has_subscription", "has_allowlist", "has_camera":
			return e.skipBool("a boolean field")
		}
		return e.dec.SkipValue()
	})
	if err != nil {
		return err
	}
	if !haveID {
		e.fail(fmt.Errorf("id: %w", limits.ErrEmptyID))
	} else if err := limits.ID(d.ID); err != nil {
		e.fail(fmt.Errorf("id: %w", err))
	}
	return nil
}

// finish attaches the undocumented enum values, shared with the previous
// record when equal.
func (e *elem) finish(d *record.Device) {
	if e.other == (record.Undocumented{}) {
		return
	}
	if e.prev != nil && e.prev.Undocumented() != nil && *e.prev.Undocumented() == e.other {
		d.SetUndocumented(e.prev.Undocumented())
		return
	}
	u := e.other
	d.SetUndocumented(&u)
}

func (e *elem) ref(field, idField, uriField string) error {
	return e.object(field, "an object", func(name []byte) error {
		switch string(name) {
		case "id":
			return e.skipStr(idField)
		case "uri":
			return e.skipStr(uriField)
		}
		return e.dec.SkipValue()
	})
}

// keepStr reads a display string into dst, sharing old when equal.
func (e *elem) keepStr(field string, dst *string, old string) error {
	b, ok, err := e.str(field)
	if err != nil || !ok {
		*dst = ""
		return err
	}
	*dst = keep(b, old)
	return nil
}

// enum reads an enum value through set, which reports whether it is
// undocumented; then its text goes to raw (sharing old when equal).
func (e *elem) enum(field string, raw *string, old string, set func([]byte) bool) error {
	b, ok, err := e.str(field)
	*raw = ""
	if err != nil || !ok {
		set(nil)
		return err
	}
	if set(b) {
		*raw = keep(b, old)
	}
	return nil
}

// tagList reads tags; the previous record's slice is shared when equal.
func (e *elem) tagList(d *record.Device) error {
	d.Tags = nil
	switch e.dec.PeekKind() {
	case '[':
	case 'n':
		_, err := e.dec.ReadToken()
		return err
	default:
		return e.skipWrong("tags", "an array")
	}
	if _, err := e.dec.ReadToken(); err != nil {
		return err
	}
	old := e.prevDev().Tags
	tags := e.st.tags[:0]
	for e.dec.PeekKind() != ']' {
		b, _, err := e.str("tags[]")
		if err != nil {
			return err
		}
		o := ""
		if len(tags) < len(old) {
			o = old[len(tags)]
		}
		tags = append(tags, keep(b, o))
	}
	e.st.tags = tags
	if _, err := e.dec.ReadToken(); err != nil {
		return err
	}
	if old != nil && slices.Equal(tags, old) {
		d.Tags = old
	} else {
		d.Tags = slices.Clone(tags)
		if d.Tags == nil {
			d.Tags = []string{}
		}
	}
	clear(e.st.tags)
	return nil
}
