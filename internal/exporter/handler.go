package exporter

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/fleetd/fleetd/internal/scrape"
)

// Handler serves /metrics: the daemon's registry (Go, process, API metrics)
// gathered and encoded on every scrape, followed by the fleet metrics of the
// current snapshot, which are gathered and encoded once per snapshot and
// format. A 100,000-device fleet is tens of thousands of series that change
// only once per walk; re-checking, sorting and encoding them on every scrape
// would cost over 100 ms (docs/performance.md), splicing them costs a copy.
//
// Responses are not compressed: compressing megabytes per scrape would cost
// more than the copy saves on the local networks Prometheus scrapes over.
type Handler struct {
	reg prometheus.Gatherer
	src SnapshotSource
	log *slog.Logger

	mu        sync.Mutex
	perDevice bool
	// copri, if set, says whether this replica reports the copri_* series
	// (it holds the cluster's COPRI slot); nil reports them.
	copri    func() bool
	copriWas bool
	forSnap  *scrape.Snapshot
	encoded  map[expfmt.Format][]byte
	// formats are those scrapers asked for, as negotiated, with when each
	// was last asked for; Warm encodes ahead those asked for within
	// formatIdle. Each costs a fifth of a CPU-second per walk at 100,000
	// devices, so only what is scraped is encoded: Prometheus's
	// OpenMetrics, and a person's text while they look.
	formats map[expfmt.Format]time.Time
	now     func() time.Time
	// gathers counts how often fleet families were gathered, so that tests
	// can hold encode to once per snapshot.
	gathers int
}

// NewHandler returns the /metrics handler. reg must not also carry the fleet
// Collector, or its families would appear twice.
func NewHandler(reg prometheus.Gatherer, src SnapshotSource, perDevice bool, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{reg: reg, src: src, perDevice: perDevice, log: log,
		formats: map[expfmt.Format]time.Time{}, now: time.Now}
}

// formatIdle is how long a format nobody asks for is still encoded ahead:
// longer than any sane scrape interval.
const formatIdle = 10 * time.Minute

// Warm encodes snap in every format scraped within formatIdle, so that the
// first scrape after a walk does not pay for it. Call it when a snapshot is
// published. (The first scrape of a format pays once: seeding one ahead
// cost every walk the encoding of a format no scraper negotiates, as the
// negotiated ones carry an escaping parameter.)
func (h *Handler) Warm(snap *scrape.Snapshot) {
	h.mu.Lock()
	formats := make([]expfmt.Format, 0, len(h.formats))
	for f, last := range h.formats {
		if h.now().Sub(last) > formatIdle {
			delete(h.formats, f)
			continue
		}
		formats = append(formats, f)
	}
	h.mu.Unlock()
	if _, err := h.encode(snap, formats...); err != nil {
		h.log.Error("fleet metrics unavailable", "err", err)
	}
}

// fleetEncoded returns the fleet metrics of the current snapshot in format.
func (h *Handler) fleetEncoded(format expfmt.Format) ([]byte, error) {
	h.mu.Lock()
	h.formats[format] = h.now()
	h.mu.Unlock()
	return h.encode(h.src.Snapshot(), format)
}

// encode returns snap's fleet metrics in the first of formats, encoding
// each of formats not yet encoded for snap. The families are gathered once
// for all of them (Prometheus asks for OpenMetrics, people and tests for
// text) and not kept: held between walks they would add a third to the
// live heap.
func (h *Handler) encode(snap *scrape.Snapshot, formats ...expfmt.Format) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	copri := h.copri == nil || h.copri()
	if snap != h.forSnap || copri != h.copriWas {
		h.forSnap, h.encoded, h.copriWas = snap, map[expfmt.Format][]byte{}, copri
	}
	var mfs []*dto.MetricFamily
	for _, format := range formats {
		if _, ok := h.encoded[format]; ok {
			continue
		}
		if mfs == nil {
			var err error
			if mfs, err = h.gather(snap, copri); err != nil {
				return nil, err
			}
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				return nil, fmt.Errorf("encode %s: %w", mf.GetName(), err)
			}
		}
		// No Close: OpenMetrics' "# EOF" is written once, after the whole body.
		h.encoded[format] = buf.Bytes()
	}
	if len(formats) == 0 {
		return nil, nil
	}
	return h.encoded[formats[0]], nil
}

// gather returns the fleet families of snap: a private registry checks and
// sorts them.
func (h *Handler) gather(snap *scrape.Snapshot, copri bool) ([]*dto.MetricFamily, error) {
	h.gathers++
	if !copri && snap != nil {
		// Every replica walks the operators (rental_lock_mismatch needs
		// them for its own devices); one reports them.
		s := *snap
		s.Operators, s.RentalFaults = nil, nil
		snap = &s
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(fixedSource{snap}, h.perDevice)); err != nil {
		return nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather fleet metrics: %w", err)
	}
	return mfs, nil
}

// SetPerDevice switches the per-device series on or off (config reload);
// the next scrape re-encodes the current snapshot.
func (h *Handler) SetPerDevice(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perDevice != on {
		h.perDevice, h.forSnap, h.encoded = on, nil, nil
	}
}

// ReportCopri makes the copri_* series depend on f (nil: always reported):
// with several replicas only the holder of the COPRI slot reports them.
func (h *Handler) ReportCopri(f func() bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.copri, h.forSnap, h.encoded = f, nil, nil
}

type fixedSource struct{ snap *scrape.Snapshot }

func (f fixedSource) Snapshot() *scrape.Snapshot { return f.snap }

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	fleet, err := h.fleetEncoded(format)
	if err != nil {
		h.log.Error("fleet metrics unavailable", "err", err)
		http.Error(w, "fleet metrics unavailable: "+err.Error(), http.StatusInternalServerError)
		return
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		// Like promhttp's ContinueOnError: serve what was gathered.
		h.log.Error("error gathering metrics", "err", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			h.log.Error("error encoding metric family", "family", mf.GetName(), "err", err)
		}
	}
	n := buf.Len()
	if c, ok := enc.(expfmt.Closer); ok {
		_ = c.Close() // OpenMetrics' "# EOF": goes after the fleet part
	}
	head, tail := buf.Bytes()[:n], buf.Bytes()[n:]
	w.Header().Set("Content-Type", string(format))
	w.Header().Set("Content-Length", fmt.Sprint(len(head)+len(fleet)+len(tail)))
	for _, part := range [][]byte{head, fleet, tail} {
		if _, err := w.Write(part); err != nil {
			return // the scraper went away
		}
	}
}
