package bikeep

import (
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/record"
)

func TestPlain8(t *testing.T) {
	plain := func(c byte) bool { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' }
	for c := range 256 {
		for pos := range 8 {
			w := []byte("aaaaaaaa")
			w[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			if got := plain8(x); got != plain(byte(c)) {
				t.Fatalf("plain8 with byte %#x at %d = %v, want %v", c, pos, got, plain(byte(c)))
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

func FuzzFastPath(f *testing.F) {
	seedCorpus(f, "device_list.json", "device.json")
	f.Add([]byte(`{"data":[` + string(fixture(f, "device.json")) + `]}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkFast(t, b) })
}
