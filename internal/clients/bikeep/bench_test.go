package bikeep

import (
	"bytes"
	"encoding/json"
	"testing"
)

// deviceListOf returns a device list of n copies of the fixture device,
// each with its own id.
func deviceListOf(b *testing.B, n int) []byte {
	b.Helper()
	var d map[string]any
	if err := json.Unmarshal(fixture(b, "device.json"), &d); err != nil {
		b.Fatal(err)
	}
	devs := make([]map[string]any, n)
	for i := range devs {
		c := make(map[string]any, len(d))
		for k, v := range d {
			c[k] = v
		}
		c["id"] = "dev-" + itoa(int64(i))
		devs[i] = c
	}
	out, err := json.Marshal(map[string]any{"data": devs})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkDecodeDeviceList measures a 1000-device list, ids checked and
// strings capped as the client does on every walk.
func BenchmarkDecodeDeviceList(b *testing.B) {
	body := deviceListOf(b, 1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		devs, err := decodeDeviceList(RouteLocationDevices, body, func(string) {})
		if err != nil || len(devs) != 1000 {
			b.Fatalf("%d devices, %v", len(devs), err)
		}
	}
}

// BenchmarkVetDevice is the share of the caps alone, per device.
func BenchmarkVetDevice(b *testing.B) {
	var d Device
	if err := json.NewDecoder(bytes.NewReader(fixture(b, "device.json"))).Decode(&d); err != nil {
		b.Fatal(err)
	}
	d.ID = "dev-1"
	b.ReportAllocs()
	for b.Loop() {
		c := d
		if err := vetDevice(&c, nil); err != nil {
			b.Fatal(err)
		}
	}
}
