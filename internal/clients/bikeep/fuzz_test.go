package bikeep

import (
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/fleetd/fleetd/internal/clients/limits"
)

func seedCorpus(f *testing.F, names ...string) {
	for _, n := range names {
		f.Add(fixture(f, n))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"data":null}`, `{"data":[null]}`, `{"data":[{"id":"a","has_camera":"yes"}]}`,
		`{"data":[{"state":{"changed_at":"2025-13-45T99:00:00Z"}}]}`, `{"data":[{"heartbeat_v2":null,"state":null}]}`,
		`{"state":{"timeout_at":12}}`, `{"events":[null,{"timestamp":""}]}`, `{"data":[1,"x",[],{}]}`,
	} {
		f.Add([]byte(s))
	}
}

func FuzzDecodeDevices(f *testing.F) {
	seedCorpus(f, "device_list.json", "device.json", "locations.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, err := decodeDeviceList(RouteLocationDevices, b, nil)
		var pe *PartialDecodeError
		var de *DecodeError
		switch {
		case err == nil:
		case errors.As(err, &pe):
			if len(pe.Bad) == 0 || len(devs)+len(pe.Bad) != pe.Total {
				t.Fatalf("partial: %d good + %d bad != %d", len(devs), len(pe.Bad), pe.Total)
			}
			_ = err.Error()
		case errors.As(err, &de):
			if devs != nil {
				t.Fatalf("devices returned with a DecodeError")
			}
			_ = err.Error()
		default:
			t.Fatalf("undocumented error type %T: %v", err, err)
		}
		for i := range devs {
			d := &devs[i]
			_, _, _, _ = d.Health(), d.StateValue(), d.LocationID(), d.Supports(CmdSyncDevice)
			if err := limits.ID(d.ID); err != nil {
				t.Fatalf("device with an unusable id returned: %v", err)
			}
			for _, s := range []string{d.Alias, d.Code, string(d.Type), d.Comment} {
				if len(s) > limits.MaxTextBytes || !utf8.ValidString(s) {
					t.Fatalf("display string of %d bytes (valid UTF-8: %v) returned", len(s), utf8.ValidString(s))
				}
			}
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	seedCorpus(f, "command.json", "error.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeCommand(RouteCommand, b, nil)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || cmd != nil {
				t.Fatalf("got %v, %T %v", cmd, err, err)
			}
			_ = err.Error()
			return
		}
		_ = cmd.State.Value.Terminal()
	})
}
