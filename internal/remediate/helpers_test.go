package remediate

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
)

// t0 is the fake clock's start.
var t0 = time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// sendCall is one recorded SendCommand.
type sendCall struct {
	DeviceID string
	Req      bikeep.CommandRequest
	At       time.Time
}

// fakeCommander records calls and answers from a script: sendErr (per
// device) decides the POST, states (per command id) what GetCommand says.
type fakeCommander struct {
	mu       sync.Mutex
	clock    func() time.Time
	sends    []sendCall
	gets     map[string]int
	sendErr  map[string]error
	states   map[string]bikeep.CommandStateValue
	getErr   map[string]error
	timeouts map[string]time.Time
	n        int
	// block, if set, holds every SendCommand until closed.
	block chan struct{}
}

func newCommander(clock func() time.Time) *fakeCommander {
	return &fakeCommander{clock: clock, gets: map[string]int{}, sendErr: map[string]error{},
		states: map[string]bikeep.CommandStateValue{}, getErr: map[string]error{}, timeouts: map[string]time.Time{}}
}

func (f *fakeCommander) SendCommand(ctx context.Context, deviceID string, req bikeep.CommandRequest) (*bikeep.Command, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, &bikeep.AmbiguousSendError{DeviceID: deviceID, Command: req.Command, Err: ctx.Err()}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends = append(f.sends, sendCall{deviceID, req, f.clock()})
	if err := f.sendErr[deviceID]; err != nil {
		return nil, err
	}
	f.n++
	id := fmt.Sprintf("cmd-%d", f.n)
	f.states[id] = bikeep.CommandNotSent
	c := &bikeep.Command{Name: req.Command, ID: id, State: bikeep.CommandState{Value: bikeep.CommandNotSent}}
	if t, ok := f.timeouts[deviceID]; ok {
		c.State.TimeoutAt = bikeep.Time{Time: t}
		f.timeouts[id] = t
	}
	return c, nil
}

func (f *fakeCommander) GetCommand(_ context.Context, id string) (*bikeep.Command, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[id]++
	if err := f.getErr[id]; err != nil {
		return nil, err
	}
	st, ok := f.states[id]
	if !ok {
		return nil, &bikeep.APIError{StatusCode: 404, ErrorCode: "ERRORS.NOT_FOUND"}
	}
	c := &bikeep.Command{ID: id, State: bikeep.CommandState{Value: st}}
	if t, ok := f.timeouts[id]; ok {
		c.State.TimeoutAt = bikeep.Time{Time: t}
	}
	return c, nil
}

func (f *fakeCommander) Sends() []sendCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sendCall(nil), f.sends...)
}

func (f *fakeCommander) Gets(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[id]
}

func (f *fakeCommander) SetState(id string, v bikeep.CommandStateValue) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[id] = v
}

// testPolicy is the default policy with its ledger in dir.
func testPolicy(dir string) config.Remediation {
	p := config.Default().Remediation
	p.Ledger = filepath.Join(dir, "remediation.db")
	return p
}

type env struct {
	t      *testing.T
	p      config.Remediation
	logs   *logBuffer
	e      *Engine
	ledger *store.Bolt
	clock  *fakeClock
	cmd    *fakeCommander
	reg    *prometheus.Registry
	stop   func()
}

// newEnv builds an engine over a fresh ledger in a temp dir, running.
// openTestLedger opens the bbolt ledger at path, closed when t ends.
func openTestLedger(t testing.TB, path string) *store.Bolt {
	t.Helper()
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// runEngine runs e until the returned stop is called or t ends, and
// returns the context it runs in.
func runEngine(t testing.TB, e *Engine) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return ctx, stop
}

func newEnv(t *testing.T, mutate func(*config.Remediation)) *env {
	t.Helper()
	p := testPolicy(t.TempDir())
	if mutate != nil {
		mutate(&p)
	}
	clock := newClock()
	return startEnv(t, p, clock, newCommander(clock.Now))
}

func startEnv(t *testing.T, p config.Remediation, clock *fakeClock, cmd *fakeCommander) *env {
	t.Helper()
	l, err := OpenLedger(p.Ledger)
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	logs := &logBuffer{}
	e, err := New(Options{Policy: p, Commander: cmd, Ledger: l, Registerer: reg, Logger: bufferLogger(t, logs),
		Now: clock.Now, PollInterval: time.Millisecond})
	if err != nil {
		_ = l.Close()
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &env{t: t, p: p, logs: logs, e: e, ledger: l, clock: clock, cmd: cmd, reg: reg, stop: stop}
}

// restart stops the engine, closes the ledger and starts a new engine over
// the reopened ledger, with the same clock and vendor: what a crash or a
// restart of fleetd does.
func (v *env) restart() {
	v.t.Helper()
	v.quiet()
	v.stop()
	*v = *startEnv(v.t, v.p, v.clock, v.cmd)
}

// logBuffer collects an engine's log lines for tests that read them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Lines returns the lines whose message is msg.
func (b *logBuffer) Lines(msg string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, "msg="+strconv.Quote(msg)) {
			out = append(out, l)
		}
	}
	return out
}

// bufferLogger logs at DEBUG into b (and to the test log with -v).
func bufferLogger(t *testing.T, b *logBuffer) *slog.Logger {
	var w io.Writer = b
	if testing.Verbose() {
		w = io.MultiWriter(b, tWriter{t})
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// waitFor polls cond until it holds or 5 s pass: the engine POSTs and
// polls in goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// quiet waits until no POST is under way.
func (v *env) quiet() {
	v.t.Helper()
	waitFor(v.t, "POSTs to finish", func() bool {
		v.e.mu.Lock()
		defer v.e.mu.Unlock()
		for _, c := range v.e.commands {
			if c.rec.Phase == phaseSending {
				return false
			}
		}
		return true
	})
}

// device returns a syncable locker.
func device(id, loc string) bikeep.Device {
	return bikeep.Device{
		ID: id, Alias: "A-" + id, Type: bikeep.TypeLocker,
		Commands: map[string]string{bikeep.CmdSyncDevice: "/c", bikeep.CmdLock: "/c"},
		Location: &bikeep.Ref{ID: loc},
	}
}

// fleet describes a snapshot: locations with n devices each, named
// <loc>-d<i>.
type fleet struct {
	locs    []*locSpec
	walkDur time.Duration
}

type locSpec struct {
	id      string
	up      bool
	devices []bikeep.Device
	// hidden devices are left out of the list (a glitch or a removal);
	// undecodable makes the list partial.
	hidden      map[string]bool
	undecodable int
	faults      []health.Fault
	// lastSuccess overrides the walk end (default: now).
	lastSuccess time.Time
}

func newFleet(locs map[string]int) *fleet {
	f := &fleet{}
	ids := make([]string, 0, len(locs))
	for id := range locs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		l := &locSpec{id: id, up: true}
		for i := range locs[id] {
			l.devices = append(l.devices, device(fmt.Sprintf("%s-d%d", id, i), id))
		}
		f.locs = append(f.locs, l)
	}
	return f
}

func (f *fleet) loc(id string) *locSpec {
	for _, l := range f.locs {
		if l.id == id {
			return l
		}
	}
	panic("no location " + id)
}

func (f *fleet) dev(loc string, i int) *bikeep.Device { return &f.loc(loc).devices[i] }

// fault adds a recoverable fault to device i of loc.
func (f *fleet) fault(loc string, i int, kind health.FaultKind, firstSeen time.Time, walks int) *health.Fault {
	l := f.loc(loc)
	d := &l.devices[i]
	l.faults = append(l.faults, health.Fault{Kind: kind, DeviceID: d.ID, Alias: d.Alias, LocationID: loc,
		DeviceType: d.Type, Recoverable: kind.RecoverableKind(), Since: firstSeen, FirstSeen: firstSeen, Walks: walks})
	return &l.faults[len(l.faults)-1]
}

func (f *fleet) clearFaults(loc string) { f.loc(loc).faults = nil }

// snap builds the snapshot of a walk that ended at now.
func (f *fleet) snap(now time.Time) *scrape.Snapshot {
	s := &scrape.Snapshot{Taken: now,
		Sources: []scrape.SourceStatus{{Name: scrape.SourceBikeep, Up: true, Walked: true, LastSuccess: now, LastDuration: f.walkDur}}}
	for _, l := range f.locs {
		ls := scrape.LocationStatus{ID: l.id, Up: l.up, Undecodable: l.undecodable}
		for _, d := range l.devices {
			if !l.hidden[d.ID] {
				ls.Devices = append(ls.Devices, d.Record())
			}
		}
		if l.up {
			ls.LastSuccess = now
			if !l.lastSuccess.IsZero() {
				ls.LastSuccess = l.lastSuccess
			}
		}
		s.Locations = append(s.Locations, ls)
		s.Faults = append(s.Faults, l.faults...)
	}
	return s
}

// lastDecision returns the newest recorded decision for a device.
func (v *env) lastDecision(deviceID string) Decision {
	v.t.Helper()
	for _, d := range v.e.Status().Decisions {
		if d.DeviceID == deviceID {
			return d
		}
	}
	v.t.Fatalf("no decision recorded for %s", deviceID)
	return Decision{}
}
