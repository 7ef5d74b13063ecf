package bikeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// A device list answered 200 is either the whole list, a partial list (some
// entries unreadable) or no list at all. Only the first may be taken as
// "these are all the location's devices": a list-shaped answer that lacks its
// list must never read as an empty location.
func TestDeviceListEnvelope(t *testing.T) {
	const good = `{"id":"a","type":"LOCKER"}`
	type want int
	const (
		complete want = iota
		partial
		failed
	)
	for _, tc := range []struct {
		name string
		body string
		want want
		// ids of the devices returned; for partial, bad are the indexes of
		// the entries reported as undecodable.
		ids   []string
		bad   []int
		total int
		// errText must appear in the error.
		errText string
	}{
		{name: "complete list", body: `{"data":[` + good + `],"uri":"u"}`, want: complete, ids: []string{"a"}},
		{name: "empty array is an empty location", body: `{"data":[],"uri":"u"}`, want: complete, ids: []string{}},
		{name: "uri before data", body: `{"uri":"u","data":[` + good + `]}`, want: complete, ids: []string{"a"}},

		{name: "data null", body: `{"data":null,"uri":"u"}`, want: failed, errText: `"data" is null`},
		{name: "data missing", body: `{"uri":"u"}`, want: failed, errText: `no "data" key`},
		{name: "empty object", body: `{}`, want: failed, errText: `no "data" key`},
		{name: "data an object", body: `{"data":{"id":"a"}}`, want: failed, errText: `not an array`},
		{name: "data a string", body: `{"data":"[]"}`, want: failed, errText: `not an array`},
		{name: "data a number", body: `{"data":0}`, want: failed, errText: `not an array`},
		{name: "body null", body: `null`, want: failed},
		{name: "body an array", body: `[` + good + `]`, want: failed},
		{name: "body empty", body: ``, want: failed},
		{name: "cut before data", body: `{"uri":"u","da`, want: failed},
		{name: "garbage after the envelope", body: `{"data":[` + good + `]} x`, want: failed},
		{name: "cut after the list", body: `{"data":[` + good + `]`, want: failed},

		{name: "one device with a wrong-typed field",
			body: `{"data":[` + good + `,{"id":"b","has_camera":"yes"},{"id":"c"}]}`,
			want: partial, ids: []string{"a", "c"}, bad: []int{1}, total: 3, errText: "item 1 (id b)"},
		{name: "one device cut short (the body breaks off inside it)",
			body: `{"data":[` + good + `,{"id":"b","type":"LOCK`,
			want: partial, ids: []string{"a"}, bad: []int{1}, total: 2, errText: "breaks off"},
		{name: "body breaks off between devices",
			body: `{"data":[` + good + `,`,
			want: partial, ids: []string{"a"}, bad: []int{1}, total: 2, errText: "breaks off"},
		{name: "malformed inside the list",
			body: `{"data":[` + good + ` {"id":"b"}]}`,
			want: partial, ids: []string{"a"}, bad: []int{1}, total: 2, errText: "breaks off"},
		{name: "array cut open", body: `{"data":[`, want: partial, ids: []string{}, bad: []int{0}, total: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := newTestClient(t, respond(http.StatusOK, tc.body))
			devs, err := c.ListLocationDevices(context.Background(), "loc-1")
			var pe *PartialDecodeError
			var de *DecodeError
			switch tc.want {
			case complete:
				if err != nil {
					t.Fatalf("err = %v, want the complete list", err)
				}
				if devs == nil {
					t.Fatal("complete list returned as nil")
				}
			case partial:
				if !errors.As(err, &pe) {
					t.Fatalf("err = %T %v, want a *PartialDecodeError", err, err)
				}
				var idx []int
				for _, b := range pe.Bad {
					idx = append(idx, b.Index)
				}
				if !slices.Equal(idx, tc.bad) || pe.Total != tc.total {
					t.Errorf("bad entries %v of %d, want %v of %d", idx, pe.Total, tc.bad, tc.total)
				}
			case failed:
				if !errors.As(err, &de) || errors.As(err, &pe) {
					t.Fatalf("err = %T %v, want a *DecodeError", err, err)
				}
				if devs != nil {
					t.Fatalf("devices %+v returned with a DecodeError", devs)
				}
			}
			if tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)) {
				t.Errorf("err = %v, want it to mention %q", err, tc.errText)
			}
			if tc.want != failed {
				ids := []string{}
				for _, d := range devs {
					ids = append(ids, d.ID)
				}
				if !slices.Equal(ids, tc.ids) {
					t.Errorf("devices %v, want %v", ids, tc.ids)
				}
			}
		})
	}
}

// A cut list says so in its cause: io.ErrUnexpectedEOF, not a bare EOF that
// reads as a clean end.
func TestCutListWrapsUnexpectedEOF(t *testing.T) {
	_, err := decodeDeviceList(RouteLocationDevices, []byte(`{"data":[{"id":"a"},{"id":`), nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want it to wrap io.ErrUnexpectedEOF", err)
	}
}

func TestLocationListEnvelope(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		wantErr    bool
		n          int
	}{
		{name: "locations", body: `{"data":[{"id":"l1"}],"uri":"u"}`, n: 1},
		{name: "no locations", body: `{"data":[]}`, n: 0},
		{name: "data null", body: `{"data":null}`, wantErr: true},
		{name: "data missing", body: `{"uri":"u"}`, wantErr: true},
		{name: "empty object", body: `{}`, wantErr: true},
		{name: "data an object", body: `{"data":{}}`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, _ := newTestClient(t, respond(http.StatusOK, tc.body))
			locs, err := c.ListLocations(context.Background())
			if tc.wantErr {
				var de *DecodeError
				if !errors.As(err, &de) || locs != nil {
					t.Fatalf("got %v, %T %v; want no locations and a *DecodeError", locs, err, err)
				}
				return
			}
			if err != nil || locs == nil || len(locs) != tc.n {
				t.Fatalf("got %v, %v; want %d locations", locs, err, tc.n)
			}
		})
	}
}

// FuzzListEnvelope holds splitList to encoding/json, which the fast path of
// decodeDeviceList uses: a body encoding/json reads as an object with a
// "data" array is split into exactly that array; a body it rejects is never
// taken for a complete list; a cut is only reported for a body that is not
// valid JSON, and keeps a prefix of entries.
func FuzzListEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"data":[]}`, `{"data":[{"id":"a"},{"id":"b"}],"uri":"u"}`, `{"uri":"u","data":[1,"x",null]}`,
		`{"data":null}`, `{}`, `{"uri":"u"}`, `{"data":{"a":[1]}}`, `{"data":"x"}`, `{"data":[{"id":"a"},{"id":`,
		`{"data":[{"id":"a"}`, `{"data":[`, `{"data":[1 2]}`, `{"data":[]} x`, `{"data":null,"data":[1]}`,
		`{"data":[1],"data":null}`, `{"data":[{"a":[{"b":{}}]}],"x":{"data":null}}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		env, cut, err := splitList(b)
		var ref struct {
			Data *[]json.RawMessage `json:"data"`
		}
		refErr := json.Unmarshal(b, &ref)
		refList := refErr == nil && ref.Data != nil && requireObject(b) == nil
		switch {
		case err != nil:
			if refList {
				t.Fatalf("rejected %q, which encoding/json reads as a list of %d", b, len(*ref.Data))
			}
			if env.Data != nil || cut != nil {
				t.Fatalf("entries or a cut returned with an error")
			}
		case cut != nil:
			if json.Valid(b) {
				t.Fatalf("valid JSON %q reported as cut at %d", b, cut.Index)
			}
			if cut.Index != len(env.Data) {
				t.Fatalf("cut at %d after %d entries", cut.Index, len(env.Data))
			}
			for _, item := range env.Data {
				if !json.Valid(item) {
					t.Fatalf("entry before the cut is not valid JSON: %q", item)
				}
			}
		default:
			if !refList {
				t.Fatalf("accepted %q as a complete list; encoding/json: %v", b, refErr)
			}
			if env.Data == nil || len(env.Data) != len(*ref.Data) {
				t.Fatalf("split into %d entries, encoding/json %d", len(env.Data), len(*ref.Data))
			}
			for i := range env.Data {
				if !bytes.Equal(bytes.TrimSpace(env.Data[i]), bytes.TrimSpace((*ref.Data)[i])) {
					t.Fatalf("entry %d: %q, encoding/json %q", i, env.Data[i], (*ref.Data)[i])
				}
			}
		}
	})
}
