package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fleetd/fleetd/internal/pgtest"
	"github.com/fleetd/fleetd/internal/sim"
)

// Several fleetd processes share one real PostgreSQL ledger (pgtest: skipped
// under plain go test without PostgreSQL, failing under
// FLEETD_REQUIRE_REAL=1) and split the simulator's fleet by slot leases.
// Every replica talks to the simulator through its own front, so that each
// command can be traced to the replica that sent it.

const (
	replicaSlots    = 16
	replicaLeaseTTL = 3 * time.Second
	// commandStep is the simulator's delay between command states: a
	// command is in flight for three steps.
	commandStep = 500 * time.Millisecond
)

const replicaConfigTmpl = `
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  concurrency: 8
  request_timeout: 2s
copri:
  - name: demo
    primary_url: SIM
    operator_url: SIM
    merchant_id: "12345678"
    user_id: demo@example.org
    password: demo-password
    hw_id: fleetd-test-monitor-0001
    bikes_all: true
schedule:
  devices: "@every 1s"
  rentals: "@every 1s"
health:
  lock_mismatch_grace: 1s
  transition_grace: 1m
  stale_after: 1m
remediation:
  enabled: true
  min_fault_age: 1s
  cooldown: 3s
  max_attempts: 3
  power_cycle_from_attempt: 3
  rate: 50/s
  max_in_flight: 50
  command_timeout: 1m
  storm: {max_faulty_ratio: 0.9, min_devices: 8, cooldown: 10s}
  ledger: DSN
  ledger_password_file: PWFILE
cluster:
  slots: SLOTS
  lease_ttl: 3s
  renew_every: 1s
  replica_id: REPLICA
`

// send is one command POST the simulator accepted.
type send struct {
	replica int
	device  string
	at      time.Time
}

// sendLog records the command POSTs of every replica.
type sendLog struct {
	mu    sync.Mutex
	sends []send
}

func (l *sendLog) front(t *testing.T, replica int, h http.Handler) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/commands") && rec.Code < 300 {
			dev := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/device/v1/devices/"), "/commands")
			l.mu.Lock()
			l.sends = append(l.sends, send{replica, dev, time.Now()})
			l.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// sentBy is how many commands replica i has sent.
func (l *sendLog) sentBy(i int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.sends {
		if s.replica == i {
			n++
		}
	}
	return n
}

func (l *sendLog) all() []send {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sends)
}

// checkNoOverlap fails if a device got a command while an earlier one was
// still in flight at the simulator (three steps), or more than max.
func (l *sendLog) checkNoOverlap(t *testing.T, max int) {
	t.Helper()
	by := map[string][]send{}
	for _, s := range l.all() {
		by[s.device] = append(by[s.device], s)
	}
	for dev, ss := range by {
		if len(ss) > max {
			t.Errorf("device %s got %d commands, more than max_attempts %d", dev, len(ss), max)
		}
		for i := 1; i < len(ss); i++ {
			if gap := ss[i].at.Sub(ss[i-1].at); gap < 3*commandStep {
				t.Errorf("device %s got a command from replica %d %s after one from replica %d, while that one was in flight",
					dev, ss[i].replica, gap, ss[i-1].replica)
			}
		}
	}
}

type replicaProc struct {
	id   string
	base string
	out  *lockedBuffer
	cmd  *exec.Cmd
}

type replicaBed struct {
	t    *testing.T
	sim  *sim.Sim
	pg   *pgtest.Cluster
	log  *sendLog
	dsn  string // with the password, for the test's own queries
	reps []*replicaProc
	// cfgs are the replicas' config files, to restart one.
	cfgs []string
}

// newReplicaBed starts PostgreSQL, a simulator of locations×perLoc devices
// (setup may inject faults) and n fleetd replicas on one ledger.
func newReplicaBed(t *testing.T, n, locations, perLoc int, setup func(*sim.Sim)) *replicaBed {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL and several fleetd processes")
	}
	b := &replicaBed{t: t, pg: pgtest.Start(t), log: &sendLog{}}
	dsn := b.pg.NewDatabase(t)
	b.dsn = dsn
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "pgpassword")
	write(t, pwfile, b.pg.Password()+"\n")
	// The password comes from the file; the DSN in the config has none.
	dsn = strings.Replace(dsn, ":"+b.pg.Password()+"@", "@", 1)

	opts := sim.DefaultOptions()
	opts.Locations, opts.DevicesPerLocation, opts.Latency, opts.Seed = locations, perLoc, 0, 11
	opts.FaultRate, opts.CureRate, opts.ErrorRate = 0, 0, 0
	opts.CommandStepDelay, opts.CommandTimeout = commandStep, time.Minute
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.sim = s
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := s.Start(ctx, "127.0.0.1:0"); err != nil { // runs the command ticker
		t.Fatal(err)
	}
	for i := range n {
		front := b.log.front(t, i, s.Handler())
		cfg := filepath.Join(dir, fmt.Sprintf("fleetd-%d.yml", i))
		write(t, cfg, strings.NewReplacer("SIM", front, "DSN", dsn, "PWFILE", pwfile,
			"SLOTS", strconv.Itoa(replicaSlots), "REPLICA", fmt.Sprintf("r%d", i)).Replace(replicaConfigTmpl))
		b.cfgs = append(b.cfgs, cfg)
		b.reps = append(b.reps, b.start(i))
	}
	return b
}

func (b *replicaBed) start(i int) *replicaProc {
	b.t.Helper()
	base, out, cmd := fleetdProcess(b.t, "run", "--config", b.cfgs[i], "--log.level", "debug")
	waitReadyOr(b.t, base, out)
	return &replicaProc{id: fmt.Sprintf("r%d", i), base: base, out: out, cmd: cmd}
}

var slotsHeldRe = regexp.MustCompile(`(?m)^fleetd_cluster_slots_held (\S+)$`)

// held returns the slots each live replica holds (-1 if unreachable).
func (b *replicaBed) held(live []int) []int {
	var out []int
	for _, i := range live {
		out = append(out, int(scrapeValue(b.reps[i].base, slotsHeldRe)))
	}
	return out
}

func scrapeValue(base string, re *regexp.Regexp) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	m := re.FindStringSubmatch(sb.String())
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// balanced waits until the live replicas hold every slot between them, none
// more than its fair share.
func (b *replicaBed) balanced(live []int, limit time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	share := (replicaSlots + len(live) - 1) / len(live)
	for {
		h := b.held(live)
		sum, ok := 0, true
		for _, n := range h {
			sum += n
			ok = ok && n >= 0 && n <= share
		}
		if ok && sum == replicaSlots {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			b.t.Fatalf("slots not balanced over replicas %v within %s: held %v", live, limit, h)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	locationUpRe  = regexp.MustCompile(`(?m)^fleet_location_up\{location_id="([^"]+)"\} 1$`)
	fleetDevRe    = regexp.MustCompile(`(?m)^fleet_devices\{[^}]*\} (\S+)$`)
	copriRentalRe = regexp.MustCompile(`(?m)^copri_(rentals|bikes)\{`)
)

// fleetView is what one replica's /metrics reports of the fleet.
type fleetView struct {
	locations []string
	devices   int
	copri     bool
}

func (b *replicaBed) view(i int) fleetView {
	body := fetch(b.t, b.reps[i].base+"/metrics")
	var v fleetView
	for _, m := range locationUpRe.FindAllStringSubmatch(body, -1) {
		v.locations = append(v.locations, m[1])
	}
	for _, m := range fleetDevRe.FindAllStringSubmatch(body, -1) {
		n, _ := strconv.ParseFloat(m[1], 64)
		v.devices += int(n)
	}
	v.copri = copriRentalRe.MatchString(body)
	return v
}

// partitioned waits until the live replicas report every location exactly
// once between them and their fleet_devices add up to the simulator's.
func (b *replicaBed) partitioned(live []int, locations, devices int) {
	b.t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		seen := map[string][]string{}
		total, copri := 0, 0
		for _, i := range live {
			v := b.view(i)
			for _, id := range v.locations {
				seen[id] = append(seen[id], b.reps[i].id)
			}
			total += v.devices
			if v.copri {
				copri++
			}
		}
		var twice []string
		for id, by := range seen {
			if len(by) > 1 {
				twice = append(twice, id+" by "+strings.Join(by, ","))
			}
		}
		if len(seen) == locations && len(twice) == 0 && total == devices && copri == 1 {
			return
		}
		last = fmt.Sprintf("%d of %d locations reported, %d twice %v; fleet_devices sum %d of %d; %d replicas report copri_*",
			len(seen), locations, len(twice), twice, total, devices, copri)
		time.Sleep(200 * time.Millisecond)
	}
	b.t.Fatalf("fleet not partitioned over replicas %v: %s", live, last)
}

// Three replicas split 200 locations: each is walked and reported by
// exactly one, fleet_devices adds up to the simulator's count, copri_*
// comes from one replica, and no replica logs the database password.
func TestReplicasShareTheFleet(t *testing.T) {
	const locations, perLoc = 200, 5
	b := newReplicaBed(t, 3, locations, perLoc, nil)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	b.partitioned(all, locations, locations*perLoc)
	t.Run("alerts and dashboards use only cluster names a replica exposes", func(t *testing.T) {
		checkClusterNames(t, exposedNames(fetch(t, b.reps[0].base+"/metrics")))
	})
	for _, r := range b.reps {
		if strings.Contains(r.out.String(), b.pg.Password()) {
			t.Errorf("replica %s logged the database password", r.id)
		}
	}
	// Each location is walked by one replica: the simulator served each
	// location's device list about once per walk, not three times.
	before := b.sim.Stats().Requests["GET /device/v1/locations/{id}/devices"]
	time.Sleep(3 * time.Second)
	perWalk := float64(b.sim.Stats().Requests["GET /device/v1/locations/{id}/devices"]-before) / 3
	if perWalk > 1.5*locations {
		t.Errorf("%.0f device-list requests per second for %d locations walked every second: locations walked more than once", perWalk, locations)
	}
}

// stubbornFaults makes n syncable devices, spread over the locations,
// unhealthy and stubborn: each gets exactly max_attempts commands.
func stubbornFaults(t *testing.T, n int) (func(*sim.Sim), *[]string) {
	var ids []string
	return func(s *sim.Sim) {
		locs := s.Locations()
		for i := 0; len(ids) < n && i < len(locs); i++ {
			for _, d := range s.Devices(locs[i].ID) {
				if d.CanSync() && s.SetFault(d.ID, sim.FaultUnhealthy) == nil {
					if err := s.SetStubborn(d.ID, true); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, d.ID)
					break
				}
			}
		}
		if len(ids) < n {
			t.Fatalf("only %d syncable devices", len(ids))
		}
	}, &ids
}

// exhaustWithin bounds the wait for every stubborn device to use its three
// attempts. Three cooldowns of 3 s need about 10 s; a command caught by a
// SIGSTOP or a lost connection blocks its device until a resync (every
// 15 s) and a cooldown pass, and a loaded CI machine stretches every step.
// An attempt recorded but never sent (the lease lost or given up before the
// POST) is given back, so every device does get its three commands.
const exhaustWithin = 2 * time.Minute

// waitExhausted waits until every device has used its max_attempts and
// then a little longer, to see that none gets more. A device has used them
// when the simulator received that many commands — or when the ledger
// counts them all and the missing POSTs are attempts of unknown outcome: a
// replica killed between recording an attempt and its POST's answer leaves
// exactly that, and the attempt rightly counts, since nobody can tell
// whether the POST left.
func (b *replicaBed) waitExhausted(ids []string, attempts int, limit time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		st := b.sim.Stats()
		var short, unknown []string
		var ledger map[string]ledgerAttempts
		for _, id := range ids {
			n := st.Commands[id]["sync-device"]
			if n >= int64(attempts) {
				continue
			}
			if ledger == nil {
				ledger = b.ledgerAttempts()
			}
			if l := ledger[id]; l.counted >= attempts && n+int64(l.unknown) >= int64(attempts) {
				unknown = append(unknown, fmt.Sprintf("%s:%d", id, n))
				continue
			}
			short = append(short, fmt.Sprintf("%s:%d (ledger %+v)", id, n, ledger[id]))
		}
		if len(short) == 0 {
			if len(unknown) > 0 {
				b.t.Logf("devices with fewer POSTs, the rest attempts of unknown outcome: %v", unknown)
			}
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%d of %d devices used their %d attempts within %s; short: %v", len(ids)-len(short), len(ids), attempts, limit, short)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // longer than the cooldown: a fourth attempt would show
}

// ledgerAttempts is what the shared ledger says of a device's
// sync-device attempts for its unhealthy fault.
type ledgerAttempts struct {
	counted int // attempts its episode counts
	unknown int // of them, attempts whose outcome is unknown
}

func (b *replicaBed) ledgerAttempts() map[string]ledgerAttempts {
	b.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close(ctx)
	out := map[string]ledgerAttempts{}
	// per runs a query of (device id, count) rows into out.
	per := func(query string, set func(*ledgerAttempts, int)) {
		rows, err := conn.Query(ctx, query)
		if err != nil {
			b.t.Fatal(err)
		}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				b.t.Fatal(err)
			}
			l := out[id]
			set(&l, n)
			out[id] = l
		}
		if err := rows.Err(); err != nil {
			b.t.Fatal(err)
		}
	}
	per(`SELECT device_id, max(attempts) FROM remediation_episodes WHERE fault = 'unhealthy' GROUP BY device_id`,
		func(l *ledgerAttempts, n int) { l.counted = n })
	// An attempt whose command was never seen created (no polling or done
	// record, ever) has an unknown outcome: recorded, then the replica died
	// or the POST's answer was lost. (An attempt given back and made again
	// has its number's later records.)
	per(`SELECT device_id, count(*) FROM (
		SELECT device_id, attempt FROM remediation_history WHERE fault = 'unhealthy'
		GROUP BY device_id, attempt HAVING bool_and(phase NOT IN ('polling', 'done'))) a GROUP BY device_id`,
		func(l *ledgerAttempts, n int) { l.unknown = n })
	return out
}

// kill -9 of a replica with commands in flight: its slots are taken over
// within lease_ttl and a walk, its in-flight commands are polled to the end
// by the new owners, and no device gets two commands in flight at once or
// more than max_attempts.
func TestReplicaKilledWithCommandsInFlight(t *testing.T) {
	setup, ids := stubbornFaults(t, 30)
	b := newReplicaBed(t, 3, 60, 4, setup)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	// Wait until replica 0 has commands in flight, then kill it.
	waitUntil(t, "replica 0 sends commands", func() bool { return b.log.sentBy(0) >= 2 })
	b.reps[0].cmd.Process.Signal(syscall.SIGKILL)
	b.reps[0].cmd.Wait()
	killed := time.Now()
	took := b.balanced([]int{1, 2}, replicaLeaseTTL+5*time.Second)
	t.Logf("slots taken over %s after kill -9 (lease_ttl %s)", took, replicaLeaseTTL)
	b.partitioned([]int{1, 2}, 60, 240)
	t.Logf("every location reported again %s after kill -9", time.Since(killed))
	b.waitExhausted(*ids, 3, exhaustWithin)
	b.log.checkNoOverlap(t, 3)
	resumed := 0
	for _, i := range []int{1, 2} {
		if strings.Contains(b.reps[i].out.String(), "remediation state taken over for the locations now owned") {
			resumed++
		}
	}
	if resumed == 0 {
		t.Errorf("no replica took over the killed replica's remediation state")
	}
	if v := metricValue(t, b.reps[1].base, `fleetd_remediation_commands_total\{fault="unhealthy",result="success"\}`) +
		metricValue(t, b.reps[2].base, `fleetd_remediation_commands_total\{fault="unhealthy",result="success"\}`); v <= 0 {
		t.Errorf("the survivors polled no command to its end")
	}
}

// A replica paused (SIGSTOP) for 2×lease_ttl loses its slots; woken, it
// sends nothing for them — the lease fences it — gives them up and
// rejoins.
func TestReplicaPausedSendsNothingAfterWaking(t *testing.T) {
	setup, ids := stubbornFaults(t, 30)
	b := newReplicaBed(t, 3, 60, 4, setup)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	waitUntil(t, "replica 0 sends commands", func() bool { return b.log.sentBy(0) >= 1 })
	p := b.reps[0].cmd.Process
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * replicaLeaseTTL)
	woke := time.Now()
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// It rejoins and the slots spread over three again.
	b.balanced(all, 20*time.Second)
	b.waitExhausted(*ids, 3, exhaustWithin)
	for _, s := range b.log.all() {
		// A POST it had started before the pause may complete just after
		// waking; nothing may start later.
		if s.replica == 0 && s.at.After(woke.Add(200*time.Millisecond)) && s.at.Before(woke.Add(2*time.Second)) {
			t.Errorf("the paused replica sent a command for %s %s after waking, before it rejoined", s.device, s.at.Sub(woke))
		}
	}
	b.log.checkNoOverlap(t, 3)
	if !strings.Contains(b.reps[0].out.String(), "cluster slot given up or lost") {
		t.Errorf("the woken replica did not give up the slots it lost")
	}
}

// The database stopped for 30 s: no command is sent while it is down,
// every replica keeps reporting the locations it held (degraded), and once
// it is back leases are re-acquired and nothing is sent twice.
func TestReplicasSurviveDatabaseLoss(t *testing.T) {
	setup, ids := stubbornFaults(t, 20)
	b := newReplicaBed(t, 3, 60, 4, setup)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	waitUntil(t, "commands sent", func() bool { return len(b.log.all()) >= 5 })
	b.pg.Stop()
	down := time.Now()
	degradedRe := regexp.MustCompile(`(?m)^fleetd_cluster_degraded (\S+)$`)
	waitUntil(t, "every replica degraded", func() bool {
		for _, r := range b.reps {
			if scrapeValue(r.base, degradedRe) != 1 {
				return false
			}
		}
		return true
	})
	// Monitoring goes on: the locations are still reported, once each.
	b.partitioned(all, 60, 240)
	time.Sleep(30*time.Second - time.Since(down))
	b.pg.Restart()
	up := time.Now()
	for _, s := range b.log.all() {
		// A POST already past its fence when the database went away may
		// land just after; nothing may start while it is down.
		if s.at.After(down.Add(2*time.Second)) && s.at.Before(up) {
			t.Errorf("replica %d sent a command for %s %s into the database outage", s.replica, s.device, s.at.Sub(down))
		}
	}
	b.balanced(all, 20*time.Second)
	b.waitExhausted(*ids, 3, exhaustWithin)
	b.log.checkNoOverlap(t, 3)
	for _, r := range b.reps {
		if v := scrapeValue(r.base, degradedRe); v != 0 {
			t.Errorf("replica %s still degraded after the database came back", r.id)
		}
	}
}

// TestMeasureReplicas records the figures of docs/performance.md
// ("Replicas on PostgreSQL"): per-replica CPU, database transactions per
// walk and failover time, on three replicas and 200 locations. It asserts
// nothing about time and runs only with FLEETD_MEASURE=1.
func TestMeasureReplicas(t *testing.T) {
	if os.Getenv("FLEETD_MEASURE") != "1" {
		t.Skip("set FLEETD_MEASURE=1 to measure")
	}
	const locations, perLoc = 200, 5
	b := newReplicaBed(t, 3, locations, perLoc, nil)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	b.partitioned(all, locations, locations*perLoc)
	cpuRe := regexp.MustCompile(`(?m)^process_cpu_seconds_total (\S+)$`)
	walksRe := regexp.MustCompile(`(?m)^fleetd_source_walks_total\{source="bikeep"\} (\S+)$`)
	xacts := func() float64 {
		conn, err := pgx.Connect(context.Background(), b.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n float64
		if err := conn.QueryRow(context.Background(), `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const window = 30 * time.Second
	cpu0, walks0 := make([]float64, 3), make([]float64, 3)
	for _, i := range all {
		cpu0[i], walks0[i] = scrapeValue(b.reps[i].base, cpuRe), scrapeValue(b.reps[i].base, walksRe)
	}
	x0 := xacts()
	time.Sleep(window)
	x1 := xacts()
	walks := 0.0
	for _, i := range all {
		cpu := scrapeValue(b.reps[i].base, cpuRe) - cpu0[i]
		w := scrapeValue(b.reps[i].base, walksRe) - walks0[i]
		walks += w
		t.Logf("replica %s: %.3f CPU-s in %s (%.1f %% of a core), %.0f walks", b.reps[i].id, cpu, window, 100*cpu/window.Seconds(), w)
	}
	// pg_stat_database counts the measuring connections' own transactions too (2).
	t.Logf("database: %.0f transactions in %s (%.1f/s), %.1f per replica walk", x1-x0-2, window, (x1-x0-2)/window.Seconds(), (x1-x0-2)/walks)
	for i := range 3 {
		b.reps[0].cmd.Process.Signal(syscall.SIGKILL)
		b.reps[0].cmd.Wait()
		took := b.balanced([]int{1, 2}, 20*time.Second)
		start := time.Now()
		b.partitioned([]int{1, 2}, locations, locations*perLoc)
		t.Logf("failover %d: slots taken %s after kill -9, every location reported again %s later", i+1, took, time.Since(start))
		b.reps[0] = b.start(0)
		b.balanced(all, 20*time.Second)
	}
}

// The database drops every replica's connections (pg_terminate_backend),
// again and again while commands are being recorded: the pools reconnect,
// monitoring goes on, and no device gets a duplicate or an extra attempt.
func TestReplicasSurviveTerminatedConnections(t *testing.T) {
	setup, ids := stubbornFaults(t, 20)
	b := newReplicaBed(t, 3, 60, 4, setup)
	all := []int{0, 1, 2}
	b.balanced(all, 20*time.Second)
	waitUntil(t, "commands sent", func() bool { return len(b.log.all()) >= 3 })
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	killed := 0
	for range 5 {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		killed += n
		time.Sleep(time.Second)
	}
	if killed == 0 {
		t.Fatal("no replica connection was terminated; the test tested nothing")
	}
	t.Logf("terminated %d connections", killed)
	b.partitioned(all, 60, 240)
	b.waitExhausted(*ids, 3, exhaustWithin)
	b.log.checkNoOverlap(t, 3)
}
