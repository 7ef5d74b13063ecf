package scrape

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/secret"
)

// deviceJSON is one device of a list as the vendor writes it; extra is
// spliced in as further fields.
func deviceJSON(id, healthValue, hardware, extra string) string {
	return fmt.Sprintf(`{"id":%q,"alias":"A-%s","type":"LOCKER","hardware_state":%q,"lock_state":"LOCKED",`+
		`"state":{"value":"LOCKED"},"heartbeat_v2":{"health":%q}%s}`, id, id, hardware, healthValue, extra)
}

var (
	devOK      = deviceJSON("ok", "HEALTHY", "NORMAL", "")
	devSick    = deviceJSON("sick", "UNHEALTHY", "NORMAL", "")
	devBroken  = deviceJSON("broken", "HEALTHY", "ERROR", "")
	goodList   = `{"data":[` + devOK + `,` + devSick + `,` + devBroken + `],"uri":"u"}`
	glitchBody = map[string]string{
		"data null":         `{"data":null,"uri":"u"}`,
		"data missing":      `{"uri":"u"}`,
		"empty object":      `{}`,
		"data not an array": `{"data":{"ok":` + devOK + `}}`,
		// sick's has_camera has the wrong type.
		"one wrong-typed device": `{"data":[` + devOK + `,` + deviceJSON("sick", "UNHEALTHY", "NORMAL", `,"has_camera":"yes"`) + `,` + devBroken + `]}`,
		// The body breaks off inside broken.
		"one truncated device": `{"data":[` + devOK + `,` + devSick + `,` + devBroken[:40],
		// sick's record is cut down to its id: valid JSON that says nothing.
		"one device cut to its id": `{"data":[` + devOK + `,{"id":"sick"},` + devBroken + `]}`,
	}
)

// listServer serves one location's device list, whatever body is current.
type listServer struct {
	body atomic.Pointer[string]
}

func (l *listServer) set(b string) { l.body.Store(&b) }

func newListServer(t *testing.T) (*listServer, *bikeep.Client) {
	t.Helper()
	ls := &listServer{}
	ls.set(goodList)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/device/v1/locations/L/devices" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(*ls.body.Load()))
	}))
	t.Cleanup(srv.Close)
	c, err := bikeep.NewClient(srv.URL, bikeep.WithHTTPClient(srv.Client()),
		bikeep.WithStaticToken(secret.String("t")), bikeep.WithRetry(1, time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return ls, c
}

func faultEpisodes(fs []health.Fault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s/%s since %s", f.DeviceID, f.Kind, f.FirstSeen.Format(time.TimeOnly)))
	}
	return out
}

func deviceIDs(ds []record.Device) []string {
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

// Every glitch of the vendor's device list leaves the location failed or
// partial, never "complete with fewer devices": the faults of devices the
// glitch hides stay, with the episode they had, through the glitch and the
// recovery.
func TestListGlitchesKeepLastKnownFaults(t *testing.T) {
	for _, tc := range []struct {
		glitch string
		// want partial (else failed); read and carried are the device ids
		// of the partial list.
		partial       bool
		read, carried []string
		decodeErr     string
	}{
		{glitch: "data null"},
		{glitch: "data missing"},
		{glitch: "empty object"},
		{glitch: "data not an array"},
		{glitch: "one wrong-typed device", partial: true, read: []string{"ok", "broken"}, carried: []string{"sick"}, decodeErr: "id sick"},
		{glitch: "one truncated device", partial: true, read: []string{"ok", "sick"}, carried: []string{"broken"}, decodeErr: "breaks off"},
		{glitch: "one device cut to its id", partial: true, read: []string{"ok", "broken"}, carried: []string{"sick"}, decodeErr: `id "sick"`},
	} {
		t.Run(tc.glitch, func(t *testing.T) {
			ls, client := newListServer(t)
			clk := newClock()
			s := newScraper(t, Options{Devices: client, LocationIDs: []string{"L"}, Now: clk.Now, ForgetAfter: 24 * time.Hour})
			walk := func() LocationStatus {
				t.Helper()
				_ = s.WalkDevices(context.Background())
				clk.Add(30 * time.Second)
				return location(t, s.Snapshot(), "L")
			}
			walk()
			walk()
			before := faultEpisodes(s.Snapshot().Faults)
			if want := []string{"broken/hardware_error since 12:00:00", "sick/unhealthy since 12:00:00"}; !slices.Equal(before, want) {
				t.Fatalf("faults before the glitch = %v, want %v", before, want)
			}

			ls.set(glitchBody[tc.glitch])
			for range 3 {
				l := walk()
				if tc.partial {
					if !l.Up || l.Complete() || l.Undecodable != 1 || l.LastError != "" || !strings.Contains(l.DecodeError, tc.decodeErr) {
						t.Fatalf("location = up %v complete %v undecodable %d last error %q decode error %q; want up, partial with 1 undecodable entry (%q)",
							l.Up, l.Complete(), l.Undecodable, l.LastError, l.DecodeError, tc.decodeErr)
					}
					if got := deviceIDs(l.Devices); !slices.Equal(got, tc.read) {
						t.Errorf("Devices = %v, want those read: %v", got, tc.read)
					}
					if got := deviceIDs(l.Carried); !slices.Equal(got, tc.carried) {
						t.Errorf("Carried = %v, want %v", got, tc.carried)
					}
				} else {
					if l.Up || l.Complete() || l.LastError == "" || l.Undecodable != 0 || len(l.Devices) != 3 {
						t.Fatalf("location = up %v last error %q undecodable %d devices %d; want failed with its last good 3 devices",
							l.Up, l.LastError, l.Undecodable, len(l.Devices))
					}
				}
				if got := faultEpisodes(s.Snapshot().Faults); !slices.Equal(got, before) {
					t.Fatalf("faults during the glitch = %v, want the same episodes %v", got, before)
				}
			}
			if tc.partial {
				if l := location(t, s.Snapshot(), "L"); l.UndecodableTotal != 3 {
					t.Errorf("UndecodableTotal = %d after 3 partial walks, want 3", l.UndecodableTotal)
				}
				if n := s.Snapshot().DeviceCount(); n != 3 {
					t.Errorf("DeviceCount = %d, want 3 (read and carried)", n)
				}
			}

			ls.set(goodList)
			l := walk()
			if !l.Complete() || l.Carried != nil || l.DecodeError != "" || len(l.Devices) != 3 {
				t.Fatalf("after recovery: complete %v carried %v decode error %q devices %d", l.Complete(), l.Carried, l.DecodeError, len(l.Devices))
			}
			if got := faultEpisodes(s.Snapshot().Faults); !slices.Equal(got, before) {
				t.Fatalf("faults after recovery = %v, want the same episodes %v", got, before)
			}
		})
	}
}

// A complete list is evidence: a device it lacks is gone, carried or not.
func TestCompleteListEndsCarrying(t *testing.T) {
	ls, client := newListServer(t)
	clk := newClock()
	s := newScraper(t, Options{Devices: client, LocationIDs: []string{"L"}, Now: clk.Now})
	_ = s.WalkDevices(context.Background())
	ls.set(glitchBody["one wrong-typed device"])
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	if l := location(t, s.Snapshot(), "L"); len(l.Carried) != 1 {
		t.Fatalf("Carried = %v, want sick", deviceIDs(l.Carried))
	}
	ls.set(`{"data":[` + devOK + `,` + devBroken + `]}`)
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	l := location(t, s.Snapshot(), "L")
	if !l.Complete() || l.Carried != nil {
		t.Fatalf("location = %+v, want complete and nothing carried", l)
	}
	if got := faultEpisodes(s.Snapshot().Faults); !slices.Equal(got, []string{"broken/hardware_error since 12:00:00"}) {
		t.Fatalf("faults = %v, want sick's gone", got)
	}
}

// A device unread for longer than ForgetAfter is no longer carried, even if
// every list since was partial; one read within it is.
func TestCarriedDevicesExpireAfterForgetAfter(t *testing.T) {
	ls, client := newListServer(t)
	clk := newClock()
	s := newScraper(t, Options{Devices: client, LocationIDs: []string{"L"}, Now: clk.Now, ForgetAfter: time.Hour})
	_ = s.WalkDevices(context.Background())
	ls.set(glitchBody["one wrong-typed device"])
	for _, step := range []struct {
		advance time.Duration
		carried []string
	}{
		{30 * time.Minute, []string{"sick"}},
		{30 * time.Minute, []string{"sick"}}, // exactly ForgetAfter since read
		{time.Second, []string{}},
	} {
		clk.Add(step.advance)
		_ = s.WalkDevices(context.Background())
		l := location(t, s.Snapshot(), "L")
		if got := deviceIDs(l.Carried); !slices.Equal(got, step.carried) {
			t.Fatalf("after %s: Carried = %v, want %v", clk.Now().Sub(newClock().Now()), got, step.carried)
		}
		wantFaults := 1 + len(step.carried)
		if n := len(s.Snapshot().Faults); n != wantFaults {
			t.Fatalf("faults = %v, want %d", faultEpisodes(s.Snapshot().Faults), wantFaults)
		}
	}
}

// A location that fails after a partial walk keeps what it had, carried
// devices included, until stale_after drops everything.
func TestFailureAfterPartialKeepsCarriedUntilStale(t *testing.T) {
	ls, client := newListServer(t)
	clk := newClock()
	s := newScraper(t, Options{Devices: client, LocationIDs: []string{"L"}, Now: clk.Now, StaleAfter: 5 * time.Minute})
	_ = s.WalkDevices(context.Background())
	ls.set(glitchBody["one wrong-typed device"])
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	ls.set(glitchBody["data null"])
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	l := location(t, s.Snapshot(), "L")
	if l.Up || len(l.Carried) != 1 || len(l.Devices) != 2 || len(s.Snapshot().Faults) != 2 {
		t.Fatalf("failed location = up %v carried %v devices %v faults %v; want the partial walk's data kept",
			l.Up, deviceIDs(l.Carried), deviceIDs(l.Devices), faultEpisodes(s.Snapshot().Faults))
	}
	clk.Add(5 * time.Minute)
	_ = s.WalkDevices(context.Background())
	l = location(t, s.Snapshot(), "L")
	if !l.Stale || l.Carried != nil || l.Devices != nil || len(s.Snapshot().Faults) != 0 {
		t.Fatalf("stale location = %+v, want nothing reported", l)
	}
}

// partialDevices answers loc-0 with a partial list lacking loc-0-d2, which
// shows up in loc-1's list in the same walk: it moved, and is not carried.
type partialDevices struct{ *fakeDevices }

func (p partialDevices) ListLocationDevices(ctx context.Context, id string) ([]bikeep.Device, error) {
	devs, err := p.fakeDevices.ListLocationDevices(ctx, id)
	if id == "loc-0" && err == nil {
		return devs[:1], &bikeep.PartialDecodeError{Route: bikeep.RouteLocationDevices, Total: 2,
			Bad: []bikeep.ItemError{{Index: 1, Err: fmt.Errorf("wrong type")}}}
	}
	return devs, err
}

func TestDeviceReadElsewhereIsNotCarried(t *testing.T) {
	fleet := newFleet(2)
	clk := newClock()
	s := newScraper(t, Options{Devices: fleet, Now: clk.Now})
	_ = s.WalkDevices(context.Background())

	moved := fleet.devices["loc-0"][1] // unhealthy
	moved.Location = &bikeep.Ref{ID: "loc-1"}
	fleet.devices["loc-1"] = append(fleet.devices["loc-1"], moved)
	opts := *s.options()
	opts.Devices = partialDevices{fleet}
	if err := s.Reconfigure(opts); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Minute)
	_ = s.WalkDevices(context.Background())
	snap := s.Snapshot()
	if l := location(t, snap, "loc-0"); l.Complete() || l.Carried != nil || !strings.Contains(l.DecodeError, "wrong type") {
		t.Fatalf("loc-0 = complete %v carried %v decode error %q; want partial, nothing carried",
			l.Complete(), deviceIDs(l.Carried), l.DecodeError)
	}
	var where []string
	for _, f := range snap.Faults {
		if f.DeviceID == moved.ID {
			where = append(where, f.LocationID)
		}
	}
	if !slices.Equal(where, []string{"loc-1"}) {
		t.Fatalf("fault of the moved device reported in %v, want only loc-1", where)
	}
}
