package bikeep

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/fleetd/fleetd/internal/record"
)

// poolKeep bounds the body buffer a decoder state keeps for reuse: a hostile
// multi-megabyte body is decoded, then its buffer is left to the collector.
const poolKeep = 1 << 20

// ListDecoder decodes the body of GET /device/v1/locations/{id}/devices
// straight into record.Device values, the compact records a walk keeps,
// sharing what did not change with the location's previous records.
//
// A body in which every element is a good device — what a healthy API sends
// — is decoded by a hand-written scanner (fast.go) that reads each element
// once into its record and skips the fields fleetd never reads (deprecated
// fields, settings, user, the command URLs) without allocating. Any other
// body goes to the full decoder (decodeDeviceList) and its devices are
// compacted with Device.Record, so the rules for what makes a location
// failed or partial, a device undecodable, or a string shortened are the
// full decoder's by construction: the fast path declines everything it is
// not certain the full decoder reads the same way.
//
// Read buffers and decoder state are pooled. A ListDecoder is safe for
// concurrent use.
type ListDecoder struct {
	maxBody int64
	// note is told each field the full decoder shortened (metrics).
	note   func(field string)
	states sync.Pool
}

// NewListDecoder returns a decoder refusing bodies over maxBody bytes (0
// means DefaultMaxBodyBytes); note, which may be nil, is told every field a
// vendor value was shortened in.
func NewListDecoder(maxBody int64, note func(field string)) *ListDecoder {
	if maxBody <= 0 {
		maxBody = DefaultMaxBodyBytes
	}
	ld := &ListDecoder{maxBody: maxBody, note: note}
	ld.states.New = func() any { return new(listState) }
	return ld
}

// listState is one decode's reusable memory.
type listState struct {
	body bytes.Buffer
	tags []string
	out  []record.Device
	// names is the fast path's scratch for member names.
	names [][]byte
	// lower is the fast path's scratch for a lower-cased member name.
	lower []byte
	// prev is the location's previous records; byID indexes them when the
	// order changed.
	prev []record.Device
	byID map[string]int
	// none and noneOther are the zero values compared with when a device
	// has no previous record; never written.
	none      record.Device
	noneOther record.Undocumented
}

// errTimeRange: record.Time holds instants after the Unix epoch, up to 2262.
var errTimeRange = errors.New("timestamp out of range")

// Decode reads one device-list body from r. prev is the location's
// previous records (nil on the first walk): strings, tag slices and, when
// nothing changed, the whole slice are shared with it, so an unchanged
// location allocates nothing. The result must not be modified.
//
// Errors are the full decoder's: *BodyTooLargeError or a read error
// (location failed, no devices), *DecodeError (location failed, no
// devices), or *PartialDecodeError together with the devices that did
// decode.
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
	return ld.decode(st, st.body.Bytes(), prev)
}

// DecodeBytes is Decode over a body already in memory.
func (ld *ListDecoder) DecodeBytes(b []byte, prev []record.Device) ([]record.Device, error) {
	if int64(len(b)) > ld.maxBody {
		return nil, &BodyTooLargeError{Limit: ld.maxBody, Route: RouteLocationDevices}
	}
	st := ld.states.Get().(*listState)
	defer ld.put(st)
	return ld.decode(st, b, prev)
}

func (ld *ListDecoder) put(st *listState) {
	if st.body.Cap() > poolKeep {
		st.body = bytes.Buffer{}
	}
	clear(st.out)
	st.out, st.prev = st.out[:0], nil
	clear(st.byID)
	ld.states.Put(st)
}

func (ld *ListDecoder) decode(st *listState, b []byte, prev []record.Device) ([]record.Device, error) {
	st.prev = prev
	clear(st.byID)
	if requireObject(b) == nil && st.fastList(b) {
		return st.result(nil)
	}
	devs, err := decodeDeviceList(RouteLocationDevices, b, ld.note)
	var pe *PartialDecodeError
	if err != nil && !errors.As(err, &pe) {
		return nil, err
	}
	st.out = st.out[:0]
	for i := range devs {
		r := devs[i].Record()
		// Share the previous record (and so its strings) when equal.
		if p := st.previous([]byte(r.ID), i); p != nil && p.Equal(&r) {
			r = *p
		}
		st.out = append(st.out, r)
	}
	return st.result(err)
}

// result shares prev when nothing changed, else copies out of the scratch.
func (st *listState) result(err error) ([]record.Device, error) {
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
	return devs, err
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
// a copy. The fast path only takes strings within limits.Name's cap, so
// nothing is shortened here.
func keep(b []byte, old string) string {
	if string(b) == old {
		return old
	}
	return string(b)
}

// finish attaches the undocumented enum values other to d, sharing prev's
// when equal.
func finish(d, prev *record.Device, other record.Undocumented) {
	if other == (record.Undocumented{}) {
		return
	}
	if prev != nil && prev.Undocumented() != nil && *prev.Undocumented() == other {
		d.SetUndocumented(prev.Undocumented())
		return
	}
	u := new(record.Undocumented) // only here: other itself stays on the stack
	*u = other
	d.SetUndocumented(u)
}
