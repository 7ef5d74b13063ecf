package exporter

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
)

func handlerRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := RegisterBuildInfo(reg, "1.0.0", "abc"); err != nil {
		t.Fatal(err)
	}
	return reg
}

func serve(t *testing.T, h http.Handler, accept string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	return w, w.Header().Get("Content-Type")
}

// The handler must serve exactly what a registry carrying both the daemon
// metrics and the Collector would serve.
func TestHandlerMatchesRegistry(t *testing.T) {
	src := &staticSource{testSnapshot()}
	h := NewHandler(handlerRegistry(t), src, true, nil)
	w, ctype := serve(t, h, "text/plain")
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("content type %q", ctype)
	}
	want := handlerRegistry(t)
	want.MustRegister(NewCollector(src, true))
	got := w.Body.Bytes()
	var names []string
	mfs, _ := want.Gather()
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	var wantText bytes.Buffer
	for _, mf := range mfs {
		_ = writeText(&wantText, mf)
	}
	if err := testutil.GatherAndCompare(want, bytes.NewReader(got), names...); err != nil {
		t.Fatal(err)
	}
	if len(got) != wantText.Len() {
		t.Fatalf("body is %d bytes, the registry's exposition %d", len(got), wantText.Len())
	}
	// Every family once: the text parser rejects a second TYPE line.
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(bytes.NewReader(got)); err != nil {
		t.Fatal(err)
	}
}

func TestHandlerFormats(t *testing.T) {
	h := NewHandler(handlerRegistry(t), &staticSource{testSnapshot()}, false, nil)
	t.Run("openmetrics ends with one EOF", func(t *testing.T) {
		w, ctype := serve(t, h, "application/openmetrics-text;version=1.0.0")
		if !strings.HasPrefix(ctype, "application/openmetrics-text") {
			t.Fatalf("content type %q", ctype)
		}
		body := w.Body.String()
		if strings.Count(body, "# EOF") != 1 || !strings.HasSuffix(body, "# EOF\n") {
			t.Fatalf("EOF misplaced:\n%s", body[len(body)-200:])
		}
		if !strings.Contains(body, "fleet_device_faults{") || !strings.Contains(body, "fleetd_build_info{") {
			t.Fatal("a part is missing")
		}
	})
	t.Run("protobuf", func(t *testing.T) {
		w, _ := serve(t, h, "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
		r := bytes.NewReader(w.Body.Bytes())
		names := map[string]bool{}
		for r.Len() > 0 {
			var mf dto.MetricFamily
			if err := protodelim.UnmarshalFrom(r, &mf); err != nil {
				t.Fatal(err)
			}
			if names[mf.GetName()] {
				t.Fatalf("family %s twice", mf.GetName())
			}
			names[mf.GetName()] = true
		}
		if !names["fleet_devices"] || !names["fleetd_build_info"] {
			t.Fatalf("families = %v", names)
		}
	})
}

func TestHandlerFollowsSnapshots(t *testing.T) {
	src := &staticSource{testSnapshot()}
	h := NewHandler(handlerRegistry(t), src, false, nil)
	w, _ := serve(t, h, "")
	if !strings.Contains(w.Body.String(), `fault="dead"`) {
		t.Fatal("dead fault missing")
	}
	next := testSnapshot()
	next.Faults = nil
	src.snap = next
	w, _ = serve(t, h, "")
	if strings.Contains(w.Body.String(), "fleet_device_fault_since_timestamp_seconds{") {
		t.Fatal("cached exposition of an old snapshot served")
	}
}

func TestHandlerEncodesOncePerSnapshotAndFormat(t *testing.T) {
	src := &staticSource{testSnapshot()}
	h := NewHandler(handlerRegistry(t), src, false, nil)
	text := expfmt.NewFormat(expfmt.TypeTextPlain)
	first, err := h.fleetEncoded(text)
	if err != nil {
		t.Fatal(err)
	}
	if second, _ := h.fleetEncoded(text); &first[0] != &second[0] {
		t.Fatal("fleet metrics re-encoded for the same snapshot")
	}
	src.snap = testSnapshot()
	if third, _ := h.fleetEncoded(text); &first[0] == &third[0] {
		t.Fatal("fleet metrics not re-encoded for a new snapshot")
	}
	warmed := testSnapshot()
	h.Warm(warmed)
	src.snap = warmed
	before, _ := h.fleetEncoded(text)
	if again, _ := h.fleetEncoded(text); &before[0] != &again[0] {
		t.Fatal("a warmed snapshot was encoded again on scrape")
	}
}

// Prometheus scrapes OpenMetrics, people and tests text: a walk's snapshot
// is gathered once for both, and each encoding is what that format alone
// would give.
func TestHandlerWarmGathersOnceForEveryFormat(t *testing.T) {
	src := &staticSource{testSnapshot()}
	h := NewHandler(handlerRegistry(t), src, false, nil)
	text := expfmt.NewFormat(expfmt.TypeTextPlain)
	om := expfmt.NewFormat(expfmt.TypeOpenMetrics)
	for _, f := range []expfmt.Format{text, om} {
		if _, err := h.fleetEncoded(f); err != nil {
			t.Fatal(err)
		}
	}
	next := testSnapshot()
	before := h.gathers
	h.Warm(next)
	if got := h.gathers - before; got != 1 {
		t.Fatalf("Warm gathered %d times for two formats, want 1", got)
	}
	src.snap = next
	for _, f := range []expfmt.Format{text, om} {
		warm, _ := h.fleetEncoded(f)
		alone, err := NewHandler(handlerRegistry(t), &staticSource{next}, false, nil).fleetEncoded(f)
		if err != nil {
			t.Fatal(err)
		}
		if string(warm) != string(alone) {
			t.Errorf("%s: warmed encoding differs from one made for that format alone", f)
		}
	}
	if h.gathers-before != 1 {
		t.Fatalf("scrapes after Warm gathered again (%d)", h.gathers-before)
	}
}

func TestHandlerSetPerDevice(t *testing.T) {
	h := NewHandler(handlerRegistry(t), &staticSource{testSnapshot()}, false, nil)
	has := func() bool {
		w, _ := serve(t, h, "")
		return strings.Contains(w.Body.String(), "fleet_device_info{")
	}
	if has() {
		t.Fatal("per-device series without per_device")
	}
	h.SetPerDevice(true)
	if !has() {
		t.Fatal("per_device switched on, but the cached exposition was served")
	}
	h.SetPerDevice(false)
	if has() {
		t.Fatal("per_device switched off, but the series stayed")
	}
}

// With several replicas only the holder of the COPRI slot reports copri_*;
// the others keep every other series, and a change of holder shows on the
// next scrape.
func TestHandlerReportCopri(t *testing.T) {
	h := NewHandler(handlerRegistry(t), &staticSource{testSnapshot()}, false, nil)
	holder := false
	h.ReportCopri(func() bool { return holder })
	for _, want := range []bool{false, true, false} {
		holder = want
		w, _ := serve(t, h, "")
		body := w.Body.String()
		for _, name := range []string{"copri_rentals{", "copri_bikes{", "copri_rental_fault_since_timestamp_seconds{"} {
			if got := strings.Contains(body, name); got != want {
				t.Errorf("holder %v: %s present = %v", want, name, got)
			}
		}
		if !strings.Contains(body, "fleet_devices{") || !strings.Contains(body, `fleetd_source_up{source="copri/freiburg"}`) {
			t.Errorf("holder %v: fleet or source series missing", want)
		}
	}
}

// prometheusAccept is what Prometheus 3 sends with its default scrape
// protocols.
const prometheusAccept = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5," +
	"application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3," +
	"text/plain;version=0.0.4;q=0.2,*/*;q=0.1"

// Warm encodes the formats scrapers negotiated, and only those: each costs
// a fifth of a CPU-second per walk at 100,000 devices. A format nobody asked
// for within formatIdle is no longer encoded ahead.
func TestHandlerWarmsOnlyWhatIsScraped(t *testing.T) {
	src := &staticSource{testSnapshot()}
	h := NewHandler(handlerRegistry(t), src, false, nil)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	warmed := func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		var got []string
		for f := range h.encoded {
			got = append(got, string(f))
		}
		slices.Sort(got)
		return got
	}

	_, promFormat := serve(t, h, prometheusAccept)
	next := testSnapshot()
	h.Warm(next)
	if got := warmed(); !slices.Equal(got, []string{promFormat}) {
		t.Fatalf("after Prometheus's scrape Warm encoded %q, want only %q", got, promFormat)
	}
	src.snap = next
	before := h.gathers
	serve(t, h, prometheusAccept)
	if h.gathers != before {
		t.Fatal("the scrape after Warm encoded again")
	}

	_, textFormat := serve(t, h, "") // a person's curl
	now = now.Add(formatIdle - time.Second)
	h.Warm(testSnapshot())
	if got, want := warmed(), []string{promFormat, textFormat}; !slices.Equal(got, want) {
		t.Fatalf("with a person looking Warm encoded %q, want %q", got, want)
	}
	serve(t, h, prometheusAccept)
	now = now.Add(2 * time.Second) // the person left formatIdle ago
	h.Warm(testSnapshot())
	if got := warmed(); !slices.Equal(got, []string{promFormat}) {
		t.Fatalf("once the text format went unasked for %v Warm encoded %q, want only %q", formatIdle, got, promFormat)
	}
}
