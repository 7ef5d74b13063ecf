package bikeep_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
)

// class is what a decoder made of one element or of the whole location.
type class string

const (
	good        class = "good"
	undecodable class = "device undecodable"
	failed      class = "location failed"
)

// outcome is a decoder's verdict on one body: failed, or one class per
// element with the records of the good ones.
type outcome struct {
	list    class
	classes []class
	devices []record.Device
	// full are the reference's bikeep.Devices behind devices.
	full []bikeep.Device
}

// reference decodes body with the full decoder (decodeDeviceList) and
// compacts its devices with Device.Record: what the walk must get.
func reference(body []byte) outcome {
	devs, err := bikeep.DecodeDeviceList(bikeep.RouteLocationDevices, body)
	var pe *bikeep.PartialDecodeError
	switch {
	case err == nil:
	case errors.As(err, &pe):
	default:
		return outcome{list: failed}
	}
	out := outcome{list: good}
	total := len(devs)
	if pe != nil {
		total = pe.Total
	}
	out.classes = make([]class, total)
	for i := range out.classes {
		out.classes[i] = good
	}
	if pe != nil {
		for _, b := range pe.Bad {
			out.classes[b.Index] = undecodable
		}
	}
	for _, d := range devs {
		out.devices = append(out.devices, d.Record())
		out.full = append(out.full, d)
	}
	return out
}

// streamed decodes body with the ListDecoder.
func streamed(ld *bikeep.ListDecoder, body []byte, prev []record.Device) (outcome, error) {
	devs, err := ld.Decode(strings.NewReader(string(body)), prev)
	var pe *bikeep.PartialDecodeError
	var de *bikeep.DecodeError
	switch {
	case err == nil:
		out := outcome{list: good, devices: devs}
		for range devs {
			out.classes = append(out.classes, good)
		}
		return out, nil
	case errors.As(err, &pe):
		if len(devs)+len(pe.Bad) != pe.Total {
			return outcome{}, fmt.Errorf("partial: %d good + %d bad != total %d", len(devs), len(pe.Bad), pe.Total)
		}
		out := outcome{list: good, devices: devs, classes: make([]class, pe.Total)}
		for i := range out.classes {
			out.classes[i] = good
		}
		for _, b := range pe.Bad {
			if b.Index < 0 || b.Index >= pe.Total || out.classes[b.Index] != good {
				return outcome{}, fmt.Errorf("bad index %d of %d", b.Index, pe.Total)
			}
			out.classes[b.Index] = undecodable
		}
		return out, nil
	case errors.As(err, &de):
		if devs != nil {
			return outcome{}, errors.New("devices returned with a DecodeError")
		}
		return outcome{list: failed}, nil
	}
	return outcome{}, fmt.Errorf("undocumented error %T: %v", err, err)
}

// diff describes how two outcomes differ, "" when they agree.
func diff(want, got outcome) string {
	if want.list != got.list {
		return fmt.Sprintf("location: reference %s, stream %s", want.list, got.list)
	}
	if len(want.classes) != len(got.classes) {
		return fmt.Sprintf("elements: reference %d, stream %d", len(want.classes), len(got.classes))
	}
	for i := range want.classes {
		if want.classes[i] != got.classes[i] {
			return fmt.Sprintf("element %d: reference %s, stream %s", i, want.classes[i], got.classes[i])
		}
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := health.Params{LockMismatchGrace: time.Minute, TransitionGrace: time.Minute, RentalMaxDuration: time.Hour}
	for i := range want.devices {
		a, b := health.ClassifyDevice(&want.full[i], now, p), health.Classify(&got.devices[i], now, p)
		if !sameConditions(a, b) || health.CanSync(&want.devices[i]) != health.CanSync(&got.devices[i]) {
			return fmt.Sprintf("device %d classified differently:\nreference %+v\nstream    %+v", i, a, b)
		}
		if !want.devices[i].Equal(&got.devices[i]) {
			return fmt.Sprintf("device %d:\nreference %+v %+v\nstream    %+v %+v", i,
				want.devices[i], want.devices[i].Undocumented(), got.devices[i], got.devices[i].Undocumented())
		}
	}
	return ""
}

// sameConditions compares classifications; onsets as instants (the record
// keeps UTC, the full device the offset it was sent with).
func sameConditions(a, b []health.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Kind != y.Kind || x.Grace != y.Grace || x.Detail != y.Detail || !x.Onset.Equal(y.Onset) {
			return false
		}
	}
	return true
}
