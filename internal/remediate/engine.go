package remediate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/fleetd/fleetd/internal/clients/bikeep"
	"github.com/fleetd/fleetd/internal/cluster"
	"github.com/fleetd/fleetd/internal/config"
	"github.com/fleetd/fleetd/internal/health"
	"github.com/fleetd/fleetd/internal/record"
	"github.com/fleetd/fleetd/internal/remediate/policy"
	"github.com/fleetd/fleetd/internal/remediate/store"
	"github.com/fleetd/fleetd/internal/scrape"
)

// Commander is the part of *bikeep.Client the engine uses.
type Commander interface {
	SendCommand(ctx context.Context, deviceID string, req bikeep.CommandRequest) (*bikeep.Command, error)
	GetCommand(ctx context.Context, commandID string) (*bikeep.Command, error)
}

// DefaultPollInterval is how often an in-flight command is polled.
const DefaultPollInterval = 2 * time.Second

// Options configure an Engine.
type Options struct {
	// Policy is the remediation: config section.
	Policy    config.Remediation
	Commander Commander
	// Ledger is opened by the caller (OpenLedger) and outlives the engine.
	Ledger store.Store
	// Registerer receives the fleetd_remediation_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock of every gate, timeout and ledger timestamp; default
	// time.Now.
	Now func() time.Time
	// PollInterval is the GetCommand polling period; default 2s.
	PollInterval time.Duration
	// Owns, with several replicas, says which locations this one
	// remediates (the slots it holds); nil means all. See Resync.
	Owns func(locationID string) bool
	// Fleet, with several replicas, shares the fleet-wide storm ratio;
	// nil measures this engine's snapshot alone.
	Fleet FleetCounter
	// MaySend, with several replicas, is asked right before every POST
	// whether this replica still holds the location's slot lease; nil
	// always sends.
	MaySend func(locationID string) bool
}

// Request is one remediation request from the Alertmanager webhook.
type Request struct {
	DeviceID   string           `json:"device_id"`
	LocationID string           `json:"location_id,omitempty"`
	Fault      health.FaultKind `json:"fault"`
	// Source names the requester in decisions; default "alertmanager".
	Source string `json:"source,omitempty"`
}

// Decision sources.
const (
	SourceWalk         = policy.SourceWalk
	SourceAlertmanager = policy.SourceAlertmanager
)

// Decision outcomes.
const (
	OutcomeSent    = policy.OutcomeSent
	OutcomeSkipped = policy.OutcomeSkipped
	OutcomeDryRun  = policy.OutcomeDryRun
)

// Skip reasons: the reason label of fleetd_remediation_skipped_total. The
// gates, their order and their conditions are policy.Gates.
const (
	ReasonDisabled       = policy.ReasonDisabled
	ReasonTrigger        = policy.ReasonTrigger
	ReasonPaused         = policy.ReasonPaused
	ReasonBlackout       = policy.ReasonBlackout
	ReasonExcluded       = policy.ReasonExcluded
	ReasonNotActive      = policy.ReasonNotActive
	ReasonNotRecoverable = policy.ReasonNotRecoverable
	ReasonUnsupported    = policy.ReasonUnsupported
	ReasonTooYoung       = policy.ReasonTooYoung
	ReasonStorm          = policy.ReasonStorm
	ReasonInFlight       = policy.ReasonInFlight
	ReasonCooldown       = policy.ReasonCooldown
	ReasonExhausted      = policy.ReasonExhausted
	ReasonMaxInFlight    = policy.ReasonMaxInFlight
	ReasonStopped        = policy.ReasonStopped
	ReasonThrottled      = policy.ReasonThrottled
	ReasonRateLimited    = policy.ReasonRateLimited
	ReasonDryRun         = policy.ReasonDryRun
	ReasonLedgerError    = policy.ReasonLedgerError
)

// SkipReasons returns every skip reason, in gate order (a fresh slice).
func SkipReasons() []string { return policy.SkipReasons() }

// Command results (fleetd_remediation_commands_total) and verification
// results (fleetd_remediation_verified_total).
const (
	ResultSuccess    = "success"
	ResultError      = "error"
	ResultTimeout    = "timeout"
	ResultSendFailed = "send_failed"
	// ResultUnknown: the command reported a state the API does not document
	// and reached no documented end before its timeout.
	ResultUnknown  = "unknown"
	ResultFixed    = "fixed"
	ResultNotFixed = "not_fixed"
)

// Decision is the outcome of one fault passing through the gates.
type Decision struct {
	Time       time.Time        `json:"time"`
	DeviceID   string           `json:"device_id"`
	Alias      string           `json:"alias,omitempty"`
	LocationID string           `json:"location_id,omitempty"`
	Fault      health.FaultKind `json:"fault"`
	Source     string           `json:"source"`
	Outcome    string           `json:"outcome"`
	// Reason is the skip reason ("" when sent or dry_run).
	Reason string `json:"reason,omitempty"`
	// Attempt is the attempt sent (or that would be sent, for dry_run);
	// for a skip, the attempts used so far in the episode.
	Attempt    int  `json:"attempt"`
	PowerCycle bool `json:"power_cycle"`
	// CommandID, Result and CorrelationID are filled in on the recorded
	// decision as the command progresses.
	CommandID     string `json:"command_id,omitempty"`
	Result        string `json:"result,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`

	seq uint64
}

// faultKey identifies an active fault of a device.
type faultKey struct {
	DeviceID string
	Fault    health.FaultKind
}

type sigKey struct {
	faultKey
	source string
}

// sig is the last (outcome, reason) logged for a fault, so that unchanged
// skips are logged at DEBUG and kept out of the decision ring.
type sig struct {
	outcome, reason string
	gen             uint64
}

// command is the in-memory side of a commandRecord.
type command struct {
	rec commandRecord
	key string
	seq uint64 // the decision that sent it, for ring updates
	// polling is set once a poller runs for it (guarded by Engine.mu).
	polling bool
	// prevAttempt and prevSend are the episode's last attempt and the
	// device's last send before this one, to give them back if the vendor
	// throttles the POST.
	prevAttempt, prevSend time.Time
	// odd: the latest state the vendor reported is undocumented; oddLogged:
	// an undocumented state of this command has been logged.
	odd, oddLogged bool
}

// storm is one scope's storm state, stepped by policy.Storm.Step.
type storm = policy.Storm

const ringSize = 100

// fleetScope is the storm scope label of the fleet-wide storm; a location
// storm's scope is its location id.
const fleetScope = policy.FleetScope

// Engine is the remediation engine. All methods are safe for concurrent use.
type Engine struct {
	cmd          Commander
	ledger       store.Store
	log          *slog.Logger
	now          func() time.Time
	pollInterval time.Duration
	m            *metrics
	owns         func(locationID string) bool
	fleet        FleetCounter
	maySend      func(locationID string) bool
	locCounts    map[string]cluster.Count // scratch for fleet, per location

	// ctx bounds every POST and poll; cancelled when Run ends.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards everything below. It is never held across network I/O;
	// it is held across ledger writes, which are local and must be ordered
	// with the decisions they record.
	mu         sync.Mutex
	policy     config.Remediation
	rules      *policy.Rules // compiled from policy
	gates      policy.Table
	limiter    *rate.Limiter
	pause      pauseRecord
	fleetStorm *storm
	storms     map[string]*storm // by location id
	episodes   map[faultKey]*episodeRecord
	// backoffUntil: no POST before this, after the vendor throttled one;
	// throttles counts consecutive throttled POSTs.
	backoffUntil time.Time
	throttles    int
	devices      map[string]time.Time // device id → last send
	commands     map[string]*command  // by record key: in flight or awaiting verification
	inflight     map[string]*command  // by device id
	snap         *scrape.Snapshot
	active       map[faultKey]*health.Fault // faults of Up locations in snap
	faulty       map[string]int             // scratch: faulty devices per location
	sigs         map[sigKey]sig
	gen          uint64
	ring         [ringSize]Decision
	ringLen      int
	ringNext     int
	seq          uint64
	running      bool
	stopped      bool
	// in is the gates' scratch input, reused by every decision so that a
	// pass allocates nothing.
	in policy.Input
}

// New builds an engine and loads its state from the ledger. It performs no
// network I/O and starts no goroutines; Run resumes polling.
func New(opts Options) (*Engine, error) {
	if opts.Commander == nil {
		return nil, errors.New("remediate: no Commander")
	}
	if opts.Ledger == nil {
		return nil, errors.New("remediate: no Ledger")
	}
	compiled, err := CompilePolicy(opts.Policy)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	st, err := opts.Ledger.Load(context.Background())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cmd:          opts.Commander,
		ledger:       opts.Ledger,
		log:          opts.Logger,
		now:          opts.Now,
		pollInterval: opts.PollInterval,
		ctx:          ctx,
		cancel:       cancel,
		policy:       opts.Policy,
		rules:        compiled.rules,
		gates:        policy.NewTable(),
		limiter:      rate.NewLimiter(opts.Policy.Rate.Limit(), burst(opts.Policy)),
		storms:       map[string]*storm{},
		devices:      map[string]time.Time{},
		commands:     map[string]*command{},
		inflight:     map[string]*command{},
		active:       map[faultKey]*health.Fault{},
		faulty:       map[string]int{},
		sigs:         map[sigKey]sig{},
		owns:         opts.Owns,
		fleet:        opts.Fleet,
		maySend:      opts.MaySend,
		locCounts:    map[string]cluster.Count{},
	}
	if err := e.restore(st); err != nil {
		cancel()
		return nil, err
	}
	e.dropUnownedLocked()
	e.m = newMetrics(e)
	if opts.Registerer != nil {
		if err := e.m.register(opts.Registerer); err != nil {
			cancel()
			return nil, err
		}
	}
	return e, nil
}

func checkPolicy(p config.Remediation) error {
	switch p.Trigger {
	case config.TriggerInternal, config.TriggerAlertmanager, config.TriggerBoth:
	default:
		return fmt.Errorf("remediate: invalid trigger %q", p.Trigger)
	}
	if p.MaxAttempts < 1 || p.MaxInFlight < 1 {
		return errors.New("remediate: max_attempts and max_in_flight must be at least 1")
	}
	return nil
}

// burst is the token bucket's depth: at most one rate period's worth, and
// never more than max_in_flight, so a fresh (full) bucket after a start or
// reload cannot release a bigger wave than the in-flight cap allows anyway;
// at least 1 so the bucket can release anything at all.
func burst(p config.Remediation) int {
	return max(1, min(p.Rate.Count, p.MaxInFlight))
}

// Run resumes polling the in-flight commands found in the ledger, then
// serves until ctx ends. It returns once every POST and poller it or the
// decisions started has stopped; commands still in flight stay in the
// ledger for the next start.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running || e.stopped {
		e.mu.Unlock()
		return errors.New("remediate: Run called twice")
	}
	e.running = true
	resumed := 0
	for _, c := range e.commands {
		if c.rec.Phase == phasePolling {
			e.startPollLocked(c)
			resumed++
		}
	}
	e.mu.Unlock()
	if resumed > 0 {
		e.log.Info("resumed polling in-flight remediation commands", "commands", resumed)
	}
	<-ctx.Done()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
	return nil
}

// goLocked starts f tracked by the wait group, unless the engine stopped.
func (e *Engine) goLocked(f func()) bool {
	if e.stopped {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// Observe is called after every device walk: it verifies finished
// commands, ends episodes whose fault cleared, tracks storms and, with
// trigger internal or both, makes one decision per fault of an Up location.
func (e *Engine) Observe(ctx context.Context, snap *scrape.Snapshot) {
	if snap == nil {
		return
	}
	e.refreshPause(ctx)
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gen++
	e.snap = snap
	e.indexLocked(snap)
	// With replicas: records of a location given up since the last pass
	// must not be judged on a snapshot that no longer walks it.
	e.dropUnownedLocked()

	var ops []store.Op
	ops = e.verifyLocked(ctx, snap, ops)
	ops = e.expireLocked(ctx, now, ops)
	ops = e.endEpisodesLocked(ctx, now, snap, ops)
	ops = e.stormsLocked(ctx, now, snap, ops)
	if err := e.write(ops...); err != nil {
		e.log.Error("remediation ledger update failed", "err", err)
	}

	if e.policy.Trigger != config.TriggerAlertmanager {
		pc := e.passLocked(now)
		var lk locCache
		for i := range snap.Faults {
			f := &snap.Faults[i]
			loc := lk.get(snap, f.LocationID)
			if loc == nil || !loc.Up || !e.owned(f.LocationID) {
				continue // stale data is never acted on, nor another replica's
			}
			e.decideLocked(ctx, &pc, f, findDevice(loc, f.DeviceID), f.DeviceID, f.LocationID, f.Kind, SourceWalk)
		}
	}
	for k, s := range e.sigs {
		if s.gen != e.gen && e.active[k.faultKey] == nil {
			delete(e.sigs, k)
		}
	}
}

// Request decides one remediation request from the Alertmanager webhook,
// through the same gates as a walk's decisions, against the latest
// snapshot Observe saw.
func (e *Engine) Request(ctx context.Context, r Request) Decision {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	source := r.Source
	if source == "" {
		source = SourceAlertmanager
	}
	f := e.active[faultKey{r.DeviceID, r.Fault}]
	if f != nil && r.LocationID != "" && f.LocationID != r.LocationID {
		f = nil // the alert is about a device we see elsewhere: not this fault
	}
	var dev *record.Device
	loc := r.LocationID
	if f != nil {
		loc = f.LocationID
		if l := findLocation(e.snap, loc); l != nil {
			dev = findDevice(l, f.DeviceID)
		}
	}
	pc := e.passLocked(now)
	return e.decideLocked(ctx, &pc, f, dev, r.DeviceID, loc, r.Fault, source)
}

// passCtx holds what is the same for every decision of one pass.
type passCtx struct {
	now      time.Time
	blackout bool
	// tokens are the limiter's tokens at now, less those this pass spent.
	tokens float64
}

// passLocked starts a pass: what is the same for every decision of it,
// evaluated once (the blackout windows against the compiled rules).
func (e *Engine) passLocked(now time.Time) passCtx {
	return passCtx{now: now, blackout: e.rules.BlackoutAt(now), tokens: e.limiter.TokensAt(now)}
}

// decideLocked runs the gates for one fault and acts on the outcome. f is
// nil when the fault is not active in the latest snapshot; dev is nil when
// the device is not in it.
func (e *Engine) decideLocked(ctx context.Context, pc *passCtx, f *health.Fault, dev *record.Device,
	deviceID, locationID string, kind health.FaultKind, source string) Decision {
	d := Decision{Time: pc.now, DeviceID: deviceID, LocationID: locationID, Fault: kind, Source: source}
	switch {
	case dev != nil:
		d.Alias = dev.Alias
	case f != nil:
		d.Alias = f.Alias
	}
	ep := e.episodes[faultKey{deviceID, kind}]
	if ep != nil {
		d.Attempt = ep.Attempts
	}
	v := e.gates.Decide(e.inputLocked(pc, f, dev, ep, &d))
	switch v.Outcome {
	case OutcomeSent:
		// Decide saw a token: spend it.
		if !e.limiter.AllowN(pc.now, 1) {
			d.Outcome, d.Reason = OutcomeSkipped, ReasonRateLimited
			e.m.skip(d.Reason)
			break
		}
		pc.tokens--
		d = e.sendLocked(ctx, pc.now, f, ep, d)
	case OutcomeDryRun:
		// A dry run spends no token: it only asks whether one is there.
		d.Outcome, d.Attempt, d.PowerCycle = OutcomeDryRun, v.Attempt, v.PowerCycle
		e.m.skip(ReasonDryRun)
	default:
		d.Outcome, d.Reason = OutcomeSkipped, v.Reason
		e.m.skip(v.Reason)
	}
	e.auditLocked(ctx, d)
	return d
}

// inputLocked fills the gates' input for the fault of d from the engine's
// state; the gates themselves are policy.Gates.
func (e *Engine) inputLocked(pc *passCtx, f *health.Fault, dev *record.Device, ep *episodeRecord, d *Decision) *policy.Input {
	in := &e.in
	*in = policy.Input{
		Rules: e.rules, Now: pc.now, Source: d.Source, Kind: d.Fault, LocationID: d.LocationID,
		Fault: f, Device: dev, Paused: e.pause.Paused, Blackout: pc.blackout,
		Storm:   e.fleetStorm != nil || e.storms[d.LocationID] != nil,
		Stopped: e.stopped, BackoffUntil: e.backoffUntil, Tokens: pc.tokens,
		Shared: policy.Shared{DeviceInFlight: e.inflight[d.DeviceID] != nil, LastSend: e.devices[d.DeviceID], InFlight: len(e.inflight)},
	}
	if ep != nil {
		in.Shared.Attempts = ep.Attempts
	}
	return in
}

// sendLocked records the attempt through the ledger's Reserve, which
// re-checks the shared gates, then starts the POST in a goroutine. The
// token has been spent by the rate gate.
func (e *Engine) sendLocked(ctx context.Context, now time.Time, f *health.Fault, ep *episodeRecord, d Decision) Decision {
	// The ledger finds the episode by device and fault and keeps the
	// first-seen time it started with; a new one starts at the fault's.
	// prevAttempt is kept to give the attempt back if the POST is throttled.
	var prevAttempt time.Time
	if ep != nil {
		prevAttempt = ep.LastAttempt
	}
	// Write-ahead: the attempt, the cooldown and the in-flight entry are
	// durable before anything leaves, so a crash can never cause a re-send.
	res, err := e.ledger.Reserve(ctx, store.Reservation{
		Episode: episodeRecord{DeviceID: d.DeviceID, Alias: d.Alias, LocationID: d.LocationID, Fault: d.Fault, FirstSeen: f.FirstSeen},
		Source:  d.Source, Now: now, Limits: e.rules.Limits,
	})
	switch {
	case err != nil:
		e.log.Error("remediation write-ahead failed; not sending", "device_id", d.DeviceID, "err", err)
		d.Outcome, d.Reason = OutcomeSkipped, ReasonLedgerError
		e.m.skip(d.Reason)
		return d
	case res.Refused != "":
		// The ledger knows of an attempt this engine's memory does not.
		d.Outcome, d.Reason = OutcomeSkipped, res.Refused
		e.m.skip(d.Reason)
		return d
	}
	next, rec := res.Episode, res.Command
	e.episodes[faultKey{next.DeviceID, next.Fault}] = &next
	prevSend := e.devices[d.DeviceID]
	e.devices[d.DeviceID] = now
	e.seq++
	c := &command{rec: rec, key: rec.Key(), seq: e.seq, prevAttempt: prevAttempt, prevSend: prevSend}
	e.commands[c.key] = c
	e.inflight[d.DeviceID] = c
	d.Outcome, d.Attempt, d.PowerCycle, d.seq = OutcomeSent, rec.Attempt, rec.PowerCycle, c.seq
	if !e.goLocked(func() { e.send(c) }) {
		// Unreachable: the stopped gate refuses first. Keep the device
		// blocked as unknown rather than pretend.
		c.rec.Phase = phaseUnknown
	}
	return d
}

// auditLocked logs a decision — INFO when it differs from the last one for
// this fault and source (or is a send), DEBUG otherwise — and keeps changed
// decisions in the ring.
func (e *Engine) auditLocked(ctx context.Context, d Decision) {
	k := sigKey{faultKey{d.DeviceID, d.Fault}, d.Source}
	prev, seen := e.sigs[k]
	changed := !seen || prev.outcome != d.Outcome || prev.reason != d.Reason || d.Outcome == OutcomeSent
	e.sigs[k] = sig{d.Outcome, d.Reason, e.gen}
	level := slog.LevelDebug
	if changed {
		level = slog.LevelInfo
		if d.seq == 0 {
			e.seq++
			d.seq = e.seq
		}
		e.ring[e.ringNext] = d
		e.ringNext = (e.ringNext + 1) % ringSize
		e.ringLen = min(e.ringLen+1, ringSize)
	}
	if e.log.Enabled(ctx, level) {
		e.log.LogAttrs(ctx, level, "remediation decision", decisionAttrs(d)...)
	}
}

func decisionAttrs(d Decision) []slog.Attr {
	return []slog.Attr{
		slog.String("device_id", d.DeviceID), slog.String("alias", d.Alias),
		slog.String("location_id", d.LocationID), slog.String("fault", string(d.Fault)),
		slog.String("source", d.Source), slog.Int("attempt", d.Attempt),
		slog.Bool("power_cycle", d.PowerCycle), slog.String("outcome", d.Outcome),
		slog.String("reason", d.Reason), slog.String("command_id", d.CommandID),
		slog.String("result", d.Result), slog.String("correlation_id", d.CorrelationID),
	}
}

// updateRingLocked fills in a recorded decision's command fields.
func (e *Engine) updateRingLocked(seq uint64, f func(*Decision)) {
	if seq == 0 {
		return
	}
	for i := range e.ring[:e.ringLen] {
		if e.ring[i].seq == seq {
			f(&e.ring[i])
			return
		}
	}
}

// indexLocked rebuilds the active-fault index over the Up locations.
func (e *Engine) indexLocked(snap *scrape.Snapshot) {
	clear(e.active)
	var lk locCache
	for i := range snap.Faults {
		f := &snap.Faults[i]
		if loc := lk.get(snap, f.LocationID); loc != nil && loc.Up {
			e.active[faultKey{f.DeviceID, f.Kind}] = f
		}
	}
}

// locCache remembers the last location looked up: faults come sorted by
// location, so most lookups hit.
type locCache struct {
	id  string
	loc *scrape.LocationStatus
	ok  bool
}

func (c *locCache) get(snap *scrape.Snapshot, id string) *scrape.LocationStatus {
	if c.ok && c.id == id {
		return c.loc
	}
	c.id, c.loc, c.ok = id, findLocation(snap, id), true
	return c.loc
}

func findLocation(snap *scrape.Snapshot, id string) *scrape.LocationStatus {
	if snap == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(snap.Locations, id, func(l scrape.LocationStatus, id string) int {
		return strings.Compare(l.ID, id)
	})
	if !ok {
		return nil
	}
	return &snap.Locations[i]
}

func findDevice(loc *scrape.LocationStatus, id string) *record.Device {
	for i := range loc.Devices {
		if loc.Devices[i].ID == id {
			return &loc.Devices[i]
		}
	}
	return nil
}

// walkStart is when the walk that last succeeded for loc started: the
// walks of all locations run together, so it is the location's last success
// minus the device walk's duration.
func walkStart(snap *scrape.Snapshot, loc *scrape.LocationStatus) time.Time {
	if src, ok := snap.Source(scrape.SourceBikeep); ok {
		return loc.LastSuccess.Add(-src.LastDuration)
	}
	return loc.LastSuccess
}

// verifyLocked verifies each finished command once, on the first walk of
// its location that started after the command ended.
func (e *Engine) verifyLocked(ctx context.Context, snap *scrape.Snapshot, ops []store.Op) []store.Op {
	for key, c := range e.commands {
		if c.rec.Phase != phaseDone {
			continue
		}
		loc := findLocation(snap, c.rec.LocationID)
		if loc == nil || !loc.Up || !walkStart(snap, loc).After(c.rec.EndedAt) {
			continue
		}
		result := ResultFixed
		switch {
		case e.active[faultKey{c.rec.DeviceID, c.rec.Fault}] != nil:
			result = ResultNotFixed
		case findDevice(loc, c.rec.DeviceID) == nil:
			// Absence is not a cure: wait for the device to be seen.
			ops = e.dropUnverifiableLocked(ctx, key, c, loc, ops)
			continue
		}
		e.m.verified.WithLabelValues(string(c.rec.Fault), result).Inc()
		delete(e.commands, key)
		ops = append(ops, store.DeleteCommand(key))
		e.log.LogAttrs(ctx, slog.LevelInfo, "remediation verified", append(commandAttrs(&c.rec), slog.String("verified", result))...)
	}
	return ops
}

// expireLocked drops unknown-outcome entries and device last-send times
// once the cooldown after their send has passed.
func (e *Engine) expireLocked(ctx context.Context, now time.Time, ops []store.Op) []store.Op {
	cd := e.policy.Cooldown
	for key, c := range e.commands {
		if c.rec.Phase == phaseUnknown && now.Sub(c.rec.SentAt) >= cd {
			delete(e.commands, key)
			if e.inflight[c.rec.DeviceID] == c {
				delete(e.inflight, c.rec.DeviceID)
			}
			ops = append(ops, store.DeleteCommand(key))
			e.log.LogAttrs(ctx, slog.LevelInfo, "remediation command with unknown outcome released after cooldown", commandAttrs(&c.rec)...)
		}
	}
	for id, last := range e.devices {
		if now.Sub(last) >= cd && e.inflight[id] == nil {
			delete(e.devices, id)
			// With replicas another one may have sent to the device since
			// this memory last saw its row: the row stays (one per device,
			// and an old last send blocks nothing).
			if e.owns == nil {
				ops = append(ops, store.DeleteDevice(id))
			}
		}
	}
	return ops
}

// stormsLocked measures the faulty ratio per Up location and fleet-wide and
// steps the storm state machines.
func (e *Engine) stormsLocked(ctx context.Context, now time.Time, snap *scrape.Snapshot, ops []store.Op) []store.Op {
	clear(e.faulty)
	var prevLoc, prevDev string
	for i := range snap.Faults {
		f := &snap.Faults[i]
		if f.DeviceID == prevDev && f.LocationID == prevLoc {
			continue // faults are sorted by location, device: count devices once
		}
		prevLoc, prevDev = f.LocationID, f.DeviceID
		e.faulty[f.LocationID]++
	}
	fleetDevices, fleetFaulty := 0, 0
	seen := 0
	for i := range snap.Locations {
		loc := &snap.Locations[i]
		if !loc.Up {
			continue // not measured: the storm state stays as it is
		}
		// Carried devices (a partial list lacked them) still count: their
		// last known faults are among the faulty.
		n, bad := len(loc.Devices)+len(loc.Carried), e.faulty[loc.ID]
		fleetDevices += n
		fleetFaulty += bad
		if e.fleet != nil {
			e.locCounts[loc.ID] = cluster.Count{Devices: n, Faulty: bad}
		}
		if e.storms[loc.ID] != nil {
			seen++
		}
		ops = e.stepStormLocked(ctx, now, loc.ID, policy.Measure{Faulty: bad, Devices: n}, ops)
	}
	if seen < len(e.storms) {
		// A location gone from the snapshot has no faults to measure: its
		// storm winds down through the normal hold-below period.
		for id := range e.storms {
			if findLocation(snap, id) == nil {
				ops = e.stepStormLocked(ctx, now, id, policy.Measure{}, ops)
			}
		}
	}
	if e.fleet != nil {
		c := e.fleetCountsLocked(ctx, cluster.Count{Devices: fleetDevices, Faulty: fleetFaulty})
		clear(e.locCounts)
		fleetDevices, fleetFaulty = c.Devices, c.Faulty
	}
	return e.stepStormLocked(ctx, now, "", policy.Measure{Faulty: fleetFaulty, Devices: fleetDevices}, ops)
}

// stepStormLocked advances one scope's storm ("" = fleet).
func (e *Engine) stepStormLocked(ctx context.Context, now time.Time, locationID string, m policy.Measure, ops []store.Op) []store.Op {
	s, scope := e.fleetStorm, fleetScope
	if locationID != "" {
		s, scope = e.storms[locationID], locationID
	}
	// The ledger key is built only on a transition: this runs for every
	// location on every walk.
	key := func() string {
		if locationID == "" {
			return fleetScope
		}
		return store.LocationScope(locationID)
	}
	var cur storm
	if s != nil {
		cur = *s
	}
	next, ev := cur.Step(now, m, e.policy.Storm)
	switch ev {
	case policy.StormStarted:
		started := next // only a new storm is allocated: this runs per location per walk
		e.setStormLocked(locationID, &started)
		k := key()
		ops = append(ops, store.PutStorm(stormRecord{Scope: k, Since: now}))
		e.log.LogAttrs(ctx, slog.LevelWarn, "remediation storm started: no new commands in this scope",
			slog.String("scope", scope), slog.Int("faulty_devices", m.Faulty), slog.Int("devices", m.Devices),
			slog.Float64("max_faulty_ratio", e.policy.Storm.MaxFaultyRatio))
	case policy.StormEnded:
		ops = e.endStormLocked(ctx, now, cur, locationID, scope, key(), ops)
	default:
		if s != nil {
			*s = next
		}
	}
	return ops
}

func (e *Engine) setStormLocked(locationID string, s *storm) {
	switch {
	case locationID == "":
		e.fleetStorm = s
	case s == nil:
		delete(e.storms, locationID)
	default:
		e.storms[locationID] = s
	}
}

func (e *Engine) endStormLocked(ctx context.Context, now time.Time, s storm, locationID, scope, key string, ops []store.Op) []store.Op {
	e.setStormLocked(locationID, nil)
	e.log.LogAttrs(ctx, slog.LevelInfo, "remediation storm ended", slog.String("scope", scope),
		slog.Time("since", s.Since), slog.Duration("duration", now.Sub(s.Since)))
	return append(ops, store.DeleteStorm(key))
}

// Pause stops all new commands until Resume; persisted in the ledger.
func (e *Engine) Pause(reason string) error {
	return e.setPaused(true, reason)
}

// Resume lifts a Pause; persisted in the ledger.
func (e *Engine) Resume(reason string) error {
	return e.setPaused(false, reason)
}

func (e *Engine) setPaused(paused bool, reason string) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return errors.New("remediate: a reason is required")
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pause.Paused == paused {
		return nil
	}
	rec := pauseRecord{Paused: paused, Reason: reason, Since: now}
	if err := e.write(store.SetPause(rec)); err != nil {
		return err
	}
	e.pause = rec
	if paused {
		e.log.Warn("remediation paused", "reason", reason)
	} else {
		e.log.Info("remediation resumed", "reason", reason)
	}
	return nil
}

// SetPolicy compiles and applies a reloaded remediation: section
// (CompilePolicy, ApplyPolicy). The ledger path cannot change while
// running. The rate limiter keeps its tokens.
func (e *Engine) SetPolicy(p config.Remediation) error {
	pol, err := CompilePolicy(p)
	if err != nil {
		return err
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.Ledger != e.policy.Ledger {
		return fmt.Errorf("remediate: remediation.ledger cannot change on reload (%q → %q); restart fleetd", e.policy.Ledger, p.Ledger)
	}
	e.applyPolicyLocked(now, pol)
	e.log.Info("remediation policy reloaded", "enabled", p.Enabled, "dry_run", p.DryRun, "trigger", p.Trigger)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
