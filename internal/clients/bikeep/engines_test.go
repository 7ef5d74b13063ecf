package bikeep_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
)

// BenchmarkEngines compares ways to decode one 50-device location body (the
// simulator's, ~2 KB per device) on the same input: the ListDecoder (its
// hand-written fast path), the full decoder (encoding/json into
// bikeep.Device), an encoding/json token walk, a jsontext token walk and a
// jsontext skip of the whole body (the floor of any decoder built on
// github.com/go-json-experiment/json, which the ListDecoder was first built
// on), and utf8.Valid + a quote scan (the floor of a hand-written scanner).
func BenchmarkEngines(b *testing.B) {
	body := simBodies(b, 2, 50)[0]
	ld := bikeep.NewListDecoder(0, nil)
	prev, _ := ld.DecodeBytes(body, nil)
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
	run("stream", func() { ld.DecodeBytes(body, prev) })
	run("full-encoding-json", func() { bikeep.DecodeDeviceList(bikeep.RouteLocationDevices, body) })
	run("tokens-encoding-json", func() {
		dec := json.NewDecoder(bytes.NewReader(body))
		for {
			if _, err := dec.Token(); err != nil {
				break
			}
		}
	})
	var dec jsontext.Decoder
	var rd bytes.Reader
	run("tokens-jsontext", func() {
		rd.Reset(body)
		dec.Reset(&rd)
		for {
			if _, err := dec.ReadToken(); err != nil {
				break
			}
		}
	})
	run("skip-jsontext", func() {
		rd.Reset(body)
		dec.Reset(&rd)
		dec.SkipValue()
	})
	run("floor-handrolled", func() {
		_ = utf8.Valid(body)
		n := 0
		for i := 0; i < len(body); {
			j := bytes.IndexByte(body[i:], '"')
			if j < 0 {
				break
			}
			n++
			i += j + 1
		}
	})
}
