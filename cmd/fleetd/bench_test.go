package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/config"
)

// BenchmarkWalk measures one device walk of the DESIGN.md target fleet:
// 2,000 locations × 50 devices, 20 ms per request, concurrency 32. The
// simulator runs in a separate process so the CPU time and peak RSS reported
// are fleetd's alone. Reported per walk: wall seconds, the ratio to the
// latency bound (2,000 × 20 ms / 32 = 1.25 s), CPU seconds (user+system of
// this process), the simulator's own CPU seconds (it shares the two cores),
// the peak RSS of the process so far and the live heap after a GC.
func BenchmarkWalk(b *testing.B) {
	const locations, perLoc, concurrency = 2000, 50, 32
	latency := 20 * time.Millisecond
	url, simPID := startSimProcess(b, locations, perLoc, latency)
	// The benchmark function runs more than once in one process (b.N = 1,
	// then 3 …): the previous run's scraper is garbage now, and must not
	// count in this run's peak.
	resetPeakRSS(b)

	dir := b.TempDir()
	yml := strings.NewReplacer("SIM", url, "LEDGER", filepath.Join(dir, "l.db")).Replace(`
bikeep:
  base_url: SIM
  token_url: SIM/oauth2/token
  client_id: fleetd-demo
  client_secret: fleetd-demo-secret
  concurrency: 32
  request_timeout: 30s
remediation:
  ledger: LEDGER
`)
	cfg, err := config.Parse([]byte(yml), dir)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := newScraper(cfg, slog.New(slog.DiscardHandler), scraperDeps{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := sc.WalkDevices(ctx); err != nil { // warm-up: token, discovery, connections
		b.Fatal(err)
	}
	if n := sc.Snapshot().DeviceCount(); n != locations*perLoc {
		b.Fatalf("walked %d devices, want %d", n, locations*perLoc)
	}
	measureWalks(b, simPID, time.Duration(locations)*latency/concurrency, func() {
		if err := sc.WalkDevices(ctx); err != nil {
			b.Fatal(err)
		}
	})
	b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MiB")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")
	runtime.KeepAlive(sc)
}

// BenchmarkWalkFloor is the wall-time floor BenchmarkWalk is measured
// against: a client that only reads every location's body and throws it
// away, over the same pooled transport, at the same concurrency, against
// the same simulator. No decoder can make a walk faster than this on the
// machine at hand; what it reports beyond 1 × the latency bound is the
// simulator's, the loopback's and the host's. Run it beside BenchmarkWalk.
func BenchmarkWalkFloor(b *testing.B) {
	const locations, perLoc, concurrency = 2000, 50, 32
	latency := 20 * time.Millisecond
	url, simPID := startSimProcess(b, locations, perLoc, latency)
	ctx := context.Background()
	client := pooledClient(concurrency)
	form := strings.NewReader("grant_type=client_credentials&client_id=fleetd-demo&client_secret=fleetd-demo-secret")
	resp, err := client.Post(url+"/oauth2/token", "application/x-www-form-urlencoded", form)
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	get := func(path string, into any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		if into != nil {
			return json.NewDecoder(resp.Body).Decode(into)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := get("/location/v1/locations?limit=10000", &list); err != nil {
		b.Fatal(err)
	}
	if len(list.Data) != locations {
		b.Fatalf("%d locations, want %d", len(list.Data), locations)
	}
	walk := func() {
		work := make(chan string)
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				for id := range work {
					if err := get("/device/v1/locations/"+id+"/devices", nil); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for _, l := range list.Data {
			work <- l.ID
		}
		close(work)
		wg.Wait()
	}
	walk() // warm-up: connections, the simulator's body cache
	measureWalks(b, simPID, time.Duration(locations)*latency/concurrency, walk)
}

// measureWalks runs walk b.N times and reports per walk its wall time, the
// ratio to the latency bound, this process's CPU time and the simulator's
// (process simPID), which shares the cores.
func measureWalks(b *testing.B, simPID int, bound time.Duration, walk func()) {
	b.ResetTimer()
	start, cpu0, simCPU0 := time.Now(), cpuTime(), procCPUTime(b, simPID)
	for range b.N {
		walk()
	}
	wall := time.Since(start) / time.Duration(b.N)
	cpu := (cpuTime() - cpu0) / time.Duration(b.N)
	simCPU := (procCPUTime(b, simPID) - simCPU0) / time.Duration(b.N)
	b.StopTimer()
	b.ReportMetric(wall.Seconds(), "wall-s/walk")
	b.ReportMetric(wall.Seconds()/bound.Seconds(), "x-latency-bound")
	b.ReportMetric(cpu.Seconds(), "cpu-s/walk")
	b.ReportMetric(simCPU.Seconds(), "sim-cpu-s/walk")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS collects the garbage, returns it to the OS and resets the
// kernel's high-water mark of the resident set (/proc/self/clear_refs 5).
func resetPeakRSS(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS (%v): it includes earlier runs", err)
	}
}

// peakRSS is the process's high-water resident set in bytes since
// resetPeakRSS (VmHWM), or since the start (getrusage) where /proc has none.
func peakRSS() int64 {
	if raw, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kib int64
				if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib); err == nil {
					return kib * 1024
				}
			}
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss * 1024
}

// procCPUTime is the user+system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func procCPUTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may contain spaces; fields follow its ')'.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// startSimProcess runs `fleetd sim` (this test binary re-executed) and
// returns its base URL once it answers, and its process id.
func startSimProcess(b *testing.B, locations, perLoc int, latency time.Duration) (string, int) {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(os.Args[0], "sim", "--listen", addr,
		"--locations", fmt.Sprint(locations), "--devices-per-location", fmt.Sprint(perLoc),
		"--latency", latency.String(), "--fault-rate", "0", "--error-rate", "0", "--log.level", "error")
	// The simulator holds ~200 MB of pre-encoded bodies: a GOMEMLIMIT meant
	// for fleetd (GOMEMLIMIT=60MiB go test -bench Walk) must not throttle it.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") })
	cmd.Env = append(env, "FLEETD_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	url := "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url + "/sim/v1/stats"); err == nil {
			resp.Body.Close()
			return url, cmd.Process.Pid
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("simulator did not start:\n%s", stderr.String())
	return "", 0
}
