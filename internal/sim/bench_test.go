package sim

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"
)

func benchSim(b *testing.B, locations, perLocation int) *Sim {
	b.Helper()
	o := DefaultOptions()
	o.Latency = 0
	o.Locations, o.DevicesPerLocation = locations, perLocation
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkServeLocation serves one 50-device location's list from the
// cache through the full handler (routing, auth, write).
func BenchmarkServeLocation(b *testing.B) {
	s := benchSim(b, 20, 50)
	h := s.Handler()
	tok := "bench-token"
	s.tokens[tok] = time.Now().Add(24 * time.Hour)
	loc := s.Locations()[0]
	req := httptest.NewRequest(http.MethodGet, "/device/v1/locations/"+loc.ID+"/devices", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatalf("status %d", w.Code)
	}
	b.SetBytes(int64(w.Body.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
	}
}

// BenchmarkBuildLocation is the cost of a cache miss: serializing one
// 50-device location after a change.
func BenchmarkBuildLocation(b *testing.B) {
	s := benchSim(b, 1, 50)
	l := s.fleet.locations[0]
	b.ReportAllocs()
	for b.Loop() {
		l.cache.Store(nil)
		s.locationBody(l, "http://127.0.0.1:8080")
	}
}

// BenchmarkStep is one second of fault evolution and cures over the full
// benchmark fleet (2,000 × 50) at 1 %/min faults and 10 %/min cures.
func BenchmarkStep(b *testing.B) {
	s := benchSim(b, 2000, 50)
	s.opts.FaultRate, s.opts.CureRate = 0.01, 0.1
	now := time.Now()
	s.Step(now)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		s.Step(now)
	}
}

// BenchmarkGenerateAndWarm builds the benchmark fleet (2,000 × 50) and fills
// every device-list cache, reporting the heap each part holds.
func BenchmarkGenerateAndWarm(b *testing.B) {
	for b.Loop() {
		var m0, m1, m2 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		s := benchSim(b, 2000, 50)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		s.Warm("http://127.0.0.1:8080")
		runtime.GC()
		runtime.ReadMemStats(&m2)
		runtime.KeepAlive(s)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/(1<<20), "fleet-MiB")
		b.ReportMetric(float64(m2.HeapAlloc-m1.HeapAlloc)/(1<<20), "cache-MiB")
	}
}
