package bikeep

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/clients/httpx"
)

// nastyCase is one hostile server answer and what the client must make of it.
type nastyCase struct {
	name    string
	handler http.HandlerFunc
	// op runs the client call; it returns the error and a value to check.
	op    func(ctx context.Context, c *Client) (any, error)
	check func(t *testing.T, v any, err error, hits int64)
	opts  []Option
}

func getDevice(ctx context.Context, c *Client) (any, error) { return c.GetDevice(ctx, "dev-1") }
func listDevices(ctx context.Context, c *Client) (any, error) {
	return c.ListLocationDevices(ctx, "loc-1")
}
func sendSync(ctx context.Context, c *Client) (any, error) {
	return c.SendCommand(ctx, "dev-1", CommandRequest{Command: CmdSyncDevice})
}

func respond(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, status, body) }
}

// failThenOK answers with status/body for the first n requests, then ok.
func failThenOK(n int64, status int, body, ok string) http.HandlerFunc {
	var seen atomic.Int64
	return func(w http.ResponseWriter, _ *http.Request) {
		if seen.Add(1) <= n {
			writeJSON(w, status, body)
			return
		}
		writeJSON(w, 200, ok)
	}
}

func wantErrAs[T error](t *testing.T, err error) T {
	t.Helper()
	var target T
	if !errors.As(err, &target) {
		t.Fatalf("want %T, got %T: %v", target, err, err)
	}
	return target
}

func wantHits(t *testing.T, got, want int64) {
	t.Helper()
	if got != want {
		t.Errorf("server saw %d requests, want %d", got, want)
	}
}

func notAmbiguous(t *testing.T, err error) {
	t.Helper()
	var amb *AmbiguousSendError
	if errors.As(err, &amb) {
		t.Errorf("definite outcome reported as ambiguous: %v", err)
	}
}

// hang blocks until the client goes away. The body is consumed first:
// only then does the server notice a closed connection.
func hang(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// dropAfterRead reads the request and then kills the connection without an answer.
func dropAfterRead(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 1024)
	_, _ = r.Body.Read(buf)
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	_ = conn.Close()
}

// mustFixture is fixture for table builders that have no *testing.T.
func mustFixture(name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func nastyCases() []nastyCase {
	device := `{"id":"dev-1","type":"LOCKER","heartbeat_v2":{"health":"HEALTHY"}}`
	return []nastyCase{
		{
			name:    "truncated JSON",
			handler: respond(200, `{"id":"dev-1","type":"LOCK`),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				de := wantErrAs[*DecodeError](t, err)
				if de.Route != RouteDevice {
					t.Errorf("route %q", de.Route)
				}
			},
		},
		{
			name:    "wrong type in one device of a list",
			handler: respond(200, `{"data":[{"id":"a","has_camera":true},{"id":"b","has_camera":"yes"},{"id":"c"}],"uri":"u"}`),
			op:      listDevices,
			check: func(t *testing.T, v any, err error, _ int64) {
				pe := wantErrAs[*PartialDecodeError](t, err)
				if len(pe.Bad) != 1 || pe.Bad[0].Index != 1 || pe.Bad[0].ID != "b" || pe.Total != 3 {
					t.Errorf("bad items %+v total %d", pe.Bad, pe.Total)
				}
				if !strings.Contains(err.Error(), "item 1 (id b)") || !strings.Contains(err.Error(), RouteLocationDevices) {
					t.Errorf("Error() = %q", err)
				}
				devs := v.([]Device)
				if len(devs) != 2 || devs[0].ID != "a" || !devs[0].HasCamera || devs[1].ID != "c" {
					t.Errorf("good devices %+v", devs)
				}
			},
		},
		{
			name:    "null and non-object entries in a list",
			handler: respond(200, `{"data":[null,"x",{"id":"ok"},{"id":7}]}`),
			op:      listDevices,
			check: func(t *testing.T, v any, err error, _ int64) {
				pe := wantErrAs[*PartialDecodeError](t, err)
				if len(pe.Bad) != 3 || pe.Bad[0].Index != 0 || pe.Bad[1].Index != 1 || pe.Bad[2].Index != 3 {
					t.Errorf("bad items %+v", pe.Bad)
				}
				if devs := v.([]Device); len(devs) != 1 || devs[0].ID != "ok" {
					t.Errorf("good devices %+v", devs)
				}
			},
		},
		{
			name:    "list body wholly malformed",
			handler: respond(200, `{"data":{"id":"a"}}`),
			op:      listDevices,
			check: func(t *testing.T, v any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
				if devs := v.([]Device); devs != nil {
					t.Errorf("devices %+v", devs)
				}
			},
		},
		{
			name:    "list body is an array",
			handler: respond(200, `[{"id":"a"}]`),
			op:      listDevices,
			check: func(t *testing.T, _ any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
			},
		},
		{
			name:    "empty 200 body",
			handler: respond(200, ``),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
			},
		},
		{
			// Not an empty list: an answer without its list says nothing
			// about the devices (envelope_test.go has every variant).
			name:    "null data is a decode error",
			handler: respond(200, `{"data":null,"uri":"u"}`),
			op:      listDevices,
			check: func(t *testing.T, v any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
				if devs := v.([]Device); devs != nil {
					t.Errorf("devices %#v returned with a DecodeError", devs)
				}
			},
		},
		{
			name: "unknown enum values decode as they are",
			handler: respond(200, `{"id":"d","type":"HOVERCRAFT_DOCK","sleep_state":"HIBERNATE","power_save_strategy":"SOLAR",
				"lock_state":"HALF_OPEN","hardware_state":"ON_FIRE","state":{"value":"TELEPORTING"},"heartbeat_v2":{"health":"ZOMBIE"}}`),
			op: getDevice,
			check: func(t *testing.T, v any, err error, _ int64) {
				if err != nil {
					t.Fatal(err)
				}
				d := v.(*Device)
				if d.Type != "HOVERCRAFT_DOCK" || d.Type.Known() || d.SleepState != "HIBERNATE" || d.SleepState.Known() ||
					d.PowerSaveStrategy != "SOLAR" || d.PowerSaveStrategy.Known() || d.LockState != "HALF_OPEN" ||
					d.LockState.Known() || d.HardwareState != "ON_FIRE" || d.HardwareState.Known() ||
					d.StateValue() != "TELEPORTING" || d.StateValue().Known() || d.Health() != "ZOMBIE" || d.Health().Known() {
					t.Errorf("unknown enums mangled: %+v", d)
				}
			},
		},
		{
			name: "null objects, heartbeat_v2 null, empty strings",
			handler: respond(200, `{"id":"d","state":null,"heartbeat_v2":null,"user":null,"location":null,"settings":null,
				"price_list":null,"commands":null,"tags":null,"wifi_rssi":null,"heartbeat_latency":null,"sleep_state":"",
				"alias":"","code":""}`),
			op: getDevice,
			check: func(t *testing.T, v any, err error, _ int64) {
				if err != nil {
					t.Fatal(err)
				}
				d := v.(*Device)
				if d.State != nil || d.HeartbeatV2 != nil || d.User != nil || d.Location != nil || d.WifiRSSI != nil {
					t.Errorf("nulls not nil: %+v", d)
				}
				if d.Health() != "" || d.StateValue() != "" || d.LocationID() != "" || d.Supports(CmdSyncDevice) {
					t.Error("helpers on nulls")
				}
			},
		},
		{
			name: "nulls and empty strings inside objects, missing fields",
			handler: respond(200, `{"id":"d","state":{"value":"","changed_at":"","timeout_at":null},
				"heartbeat_v2":{"health":"","dead_since":null,"sent_at":"","latency_millis":null}}`),
			op: getDevice,
			check: func(t *testing.T, v any, err error, _ int64) {
				if err != nil {
					t.Fatal(err)
				}
				d := v.(*Device)
				if !d.State.ChangedAt.IsZero() || !d.State.TimeoutAt.IsZero() || !d.HeartbeatV2.DeadSince.IsZero() ||
					d.HeartbeatV2.LatencyMillis != nil || d.Type != "" {
					t.Errorf("got %+v", d)
				}
			},
		},
		{
			name:    "device body null",
			handler: respond(200, `null`),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
			},
		},
		{
			name:    "bad timestamp",
			handler: respond(200, `{"id":"d","state":{"changed_at":"yesterday"}}`),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				wantErrAs[*DecodeError](t, err)
			},
		},
		{
			name: "HTML 502 page from nginx, retried then APIError",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(502)
				_, _ = w.Write([]byte(mustFixture("error_502.html")))
			},
			op: getDevice,
			check: func(t *testing.T, _ any, err error, hits int64) {
				ae := wantErrAs[*APIError](t, err)
				if ae.StatusCode != 502 || ae.ErrorCode != "" || !strings.HasPrefix(ae.Body, "<html> <head><title>502 Bad Gateway") ||
					strings.ContainsAny(ae.Body, "\r\n") || len(ae.Body) > 256 {
					t.Errorf("got %+v", ae)
				}
				if strings.Contains(err.Error(), "<html>") {
					t.Errorf("Error() carries the body: %q", err)
				}
				wantHits(t, hits, 4)
			},
		},
		{
			name: "429 with Retry-After seconds",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "7")
				writeJSON(w, 429, `{"error_code":"ERRORS.RATE_LIMITED","status_code":429,"correlation_id":"c-429"}`)
			},
			op: getDevice,
			check: func(t *testing.T, _ any, err error, hits int64) {
				rl := wantErrAs[*RateLimitError](t, err)
				if rl.RetryAfter != 7*time.Second || rl.ErrorCode != "ERRORS.RATE_LIMITED" || rl.CorrelationID != "c-429" {
					t.Errorf("got %+v", rl)
				}
				if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 429 {
					t.Errorf("unwrapped APIError %+v", ae)
				}
				wantHits(t, hits, 4) // waits capped at maxWait, so this is fast
			},
		},
		{
			name: "429 with Retry-After HTTP date",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
				writeJSON(w, 429, `{"error_code":"ERRORS.RATE_LIMITED"}`)
			},
			op: getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				rl := wantErrAs[*RateLimitError](t, err)
				if rl.RetryAfter < 80*time.Second || rl.RetryAfter > 90*time.Second {
					t.Errorf("RetryAfter = %s", rl.RetryAfter)
				}
			},
		},
		{
			name:    "429 without Retry-After (lock throttle)",
			handler: respond(429, `{"error_code":"ERRORS.LOCK_COMMAND_THROTTLED","error_message":"too soon","status_code":429,"correlation_id":"c-1"}`),
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, hits int64) {
				rl := wantErrAs[*RateLimitError](t, err)
				if rl.RetryAfter != 0 || rl.ErrorCode != "ERRORS.LOCK_COMMAND_THROTTLED" {
					t.Errorf("got %+v", rl)
				}
				const want = "bikeep: POST /device/v1/devices/{id}/commands: HTTP 429 ERRORS.LOCK_COMMAND_THROTTLED (correlation_id c-1)"
				if err.Error() != want {
					t.Errorf("Error() = %q", err)
				}
				notAmbiguous(t, err)
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "500 then success",
			handler: failThenOK(1, 500, `{"error_code":"ERRORS.INTERNAL"}`, `{"id":"dev-1"}`),
			op:      getDevice,
			check: func(t *testing.T, v any, err error, hits int64) {
				if err != nil {
					t.Fatal(err)
				}
				if v.(*Device).ID != "dev-1" {
					t.Errorf("got %+v", v)
				}
				wantHits(t, hits, 2)
			},
		},
		{
			name:    "400 is not retried",
			handler: respond(400, `{"error_code":"ERRORS.BAD_REQUEST"}`),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, hits int64) {
				if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 400 {
					t.Errorf("got %+v", ae)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "404 is IsNotFound",
			handler: respond(404, `{"error_code":"ERRORS.NOT_FOUND","error_message":"no such device","status_code":404,"correlation_id":"c-404"}`),
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, hits int64) {
				if !IsNotFound(err) {
					t.Errorf("IsNotFound(%v) = false", err)
				}
				const want = "bikeep: GET /device/v1/devices/{id}: HTTP 404 ERRORS.NOT_FOUND (correlation_id c-404)"
				if err.Error() != want {
					t.Errorf("Error() = %q", err)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "hanging server, ctx deadline",
			handler: hang,
			op: func(ctx context.Context, c *Client) (any, error) {
				ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				start := time.Now()
				d, err := c.GetDevice(ctx, "dev-1")
				if time.Since(start) > 2*time.Second {
					return d, errors.New("took too long")
				}
				return d, err
			},
			check: func(t *testing.T, _ any, err error, _ int64) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("want deadline exceeded, got %v", err)
				}
			},
		},
		{
			name: "Retry-After longer than the deadline: ctx stops the wait",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "30")
				writeJSON(w, 503, `{}`)
			},
			opts: []Option{WithRetry(4, time.Millisecond, time.Minute)},
			op: func(ctx context.Context, c *Client) (any, error) {
				ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				start := time.Now()
				d, err := c.GetDevice(ctx, "dev-1")
				if time.Since(start) > 2*time.Second {
					return d, errors.New("took too long")
				}
				return d, err
			},
			check: func(t *testing.T, _ any, err error, hits int64) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("want deadline exceeded, got %v", err)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "oversized body with Content-Length",
			handler: respond(200, `{"id":"`+strings.Repeat("x", 4096)+`"}`),
			opts:    []Option{WithMaxBodyBytes(1024)},
			op:      getDevice,
			check: func(t *testing.T, _ any, err error, _ int64) {
				if be := wantErrAs[*BodyTooLargeError](t, err); be.Limit != 1024 || be.Route != RouteDevice {
					t.Errorf("got %+v", be)
				}
			},
		},
		{
			name: "oversized streamed body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				_, _ = w.Write([]byte(`{"data":[`))
				chunk := []byte(strings.Repeat(`{"id":"x"},`, 1000))
				for i := 0; i < 10000 && r.Context().Err() == nil; i++ { // up to ~100 MB
					if _, err := w.Write(chunk); err != nil {
						return
					}
					w.(http.Flusher).Flush()
				}
			},
			opts: []Option{WithMaxBodyBytes(64 << 10)},
			op:   listDevices,
			check: func(t *testing.T, _ any, err error, _ int64) {
				wantErrAs[*BodyTooLargeError](t, err)
			},
		},
		{
			name:    "POST 500 is ambiguous and sent exactly once",
			handler: respond(500, `{"error_code":"ERRORS.INTERNAL","correlation_id":"c-500"}`),
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, hits int64) {
				amb := wantErrAs[*AmbiguousSendError](t, err)
				if amb.DeviceID != "dev-1" || amb.Command != CmdSyncDevice {
					t.Errorf("got %+v", amb)
				}
				if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 500 || ae.CorrelationID != "c-500" {
					t.Errorf("cause %+v", ae)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "POST connection dropped after read is ambiguous",
			handler: dropAfterRead,
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, hits int64) {
				wantErrAs[*AmbiguousSendError](t, err)
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "POST hanging server is ambiguous",
			handler: hang,
			op: func(ctx context.Context, c *Client) (any, error) {
				ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
				return sendSync(ctx, c)
			},
			check: func(t *testing.T, _ any, err error, hits int64) {
				wantErrAs[*AmbiguousSendError](t, err)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("cause lost: %v", err)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "POST 2xx with garbage body is ambiguous",
			handler: respond(200, `<html>`),
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, hits int64) {
				wantErrAs[*AmbiguousSendError](t, err)
				wantErrAs[*DecodeError](t, err)
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "POST 400 is a definite refusal",
			handler: respond(400, `{"error_code":"ERRORS.COMMAND_NOT_SUPPORTED"}`),
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, hits int64) {
				if ae := wantErrAs[*APIError](t, err); ae.ErrorCode != "ERRORS.COMMAND_NOT_SUPPORTED" {
					t.Errorf("got %+v", ae)
				}
				notAmbiguous(t, err)
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "POST 404 is IsNotFound, not ambiguous",
			handler: respond(404, `{"error_code":"ERRORS.NOT_FOUND"}`),
			op:      sendSync,
			check: func(t *testing.T, _ any, err error, _ int64) {
				if !IsNotFound(err) {
					t.Errorf("IsNotFound(%v) = false", err)
				}
				notAmbiguous(t, err)
			},
		},
		{
			name:    "POST success",
			handler: respond(200, `{"id":"cmd-9","name":"sync-device","state":{"value":"SENT"},"device":{"id":"dev-1"}}`),
			op:      sendSync,
			check: func(t *testing.T, v any, err error, hits int64) {
				if err != nil {
					t.Fatal(err)
				}
				cmd := v.(*Command)
				if cmd.ID != "cmd-9" || cmd.State.Value != CommandSent || cmd.Device.ID != "dev-1" {
					t.Errorf("got %+v", cmd)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name: "redirect is not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			op: getDevice,
			check: func(t *testing.T, _ any, err error, hits int64) {
				if ae := wantErrAs[*APIError](t, err); ae.StatusCode != 302 {
					t.Errorf("got %+v", ae)
				}
				wantHits(t, hits, 1)
			},
		},
		{
			name:    "list with a device that is fine",
			handler: respond(200, `{"data":[`+device+`],"uri":"u"}`),
			op:      listDevices,
			check: func(t *testing.T, v any, err error, _ int64) {
				if err != nil {
					t.Fatal(err)
				}
				if devs := v.([]Device); len(devs) != 1 || devs[0].Health() != HealthHealthy {
					t.Errorf("got %+v", devs)
				}
			},
		},
	}
}

func TestNastyInputs(t *testing.T) {
	for _, tc := range nastyCases() {
		t.Run(tc.name, func(t *testing.T) {
			c, hits, _ := newTestClient(t, tc.handler, tc.opts...)
			v, err := tc.op(context.Background(), c)
			tc.check(t, v, err, hits.Load())
		})
	}
}

func TestPostNotSentIsRetriedAndDefinite(t *testing.T) {
	// A port nobody listens on: the dial fails, so the POST provably never left.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	rec := &recorder{}
	c, err := NewClient("http://"+addr, WithRetry(3, time.Millisecond, 2*time.Millisecond),
		WithStaticToken(testStaticToken), WithInstrumenter(rec))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendCommand(context.Background(), "dev-1", CommandRequest{Command: CmdSyncDevice})
	if err == nil {
		t.Fatal("want an error")
	}
	notAmbiguous(t, err)
	if !httpx.IsDialError(err) {
		t.Errorf("want a dial error, got %v", err)
	}
	if strings.Contains(err.Error(), "http://") {
		t.Errorf("Error() carries the URL: %q", err)
	}
	reqs, retries := rec.snapshot()
	if len(reqs) != 3 || len(retries) != 2 || reqs[0].Code != 0 || reqs[0].Route != RouteDeviceCommands {
		t.Errorf("requests %+v retries %+v", reqs, retries)
	}
}

func TestInvalidArguments(t *testing.T) {
	c, hits, _ := newTestClient(t, respond(200, `{}`))
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"empty device id":  func() error { _, err := c.GetDevice(ctx, ""); return err },
		"dot-dot location": func() error { _, err := c.ListLocationDevices(ctx, ".."); return err },
		"empty command id": func() error { _, err := c.GetCommand(ctx, ""); return err },
		"empty command": func() error {
			_, err := c.SendCommand(ctx, "d", CommandRequest{})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if f() == nil {
				t.Error("want an error")
			}
		})
	}
	wantHits(t, hits.Load(), 0)
}

func TestPathEscaping(t *testing.T) {
	var raw string
	c, _, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		raw = r.URL.EscapedPath()
		writeJSON(w, 200, `{"id":"x"}`)
	})
	if _, err := c.GetDevice(context.Background(), "a/b?c=d#e f"); err != nil {
		t.Fatal(err)
	}
	if want := "/device/v1/devices/a%2Fb%3Fc=d%23e%20f"; raw != want {
		t.Errorf("path %q, want %q", raw, want)
	}
}

func TestBasePathPrefixAndHeaders(t *testing.T) {
	var path, ua, accept string
	_, _, srv := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		path, ua, accept = r.URL.Path, r.UserAgent(), r.Header.Get("Accept")
		writeJSON(w, 200, `{"data":[]}`)
	})
	c2, err := NewClient(srv.URL+"/bikeep/", WithHTTPClient(srv.Client()), WithUserAgent("fleetd/test"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.ListLocations(context.Background()); err != nil {
		t.Fatal(err)
	}
	if path != "/bikeep/location/v1/locations" || ua != "fleetd/test" || accept != "application/json" {
		t.Errorf("path %q ua %q accept %q", path, ua, accept)
	}
}

func TestNewClientValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		base string
		opts []Option
	}{
		"relative base":        {base: "/api"},
		"ftp base":             {base: "ftp://x"},
		"query in base":        {base: "https://x/?token=1"},
		"two auth options":     {base: "https://x", opts: []Option{WithStaticToken("a"), WithTokenFile("/f")}},
		"zero attempts":        {base: "https://x", opts: []Option{WithRetry(0, 0, 0)}},
		"max wait below min":   {base: "https://x", opts: []Option{WithRetry(2, time.Second, time.Millisecond)}},
		"negative body cap":    {base: "https://x", opts: []Option{WithMaxBodyBytes(-1)}},
		"empty static token":   {base: "https://x", opts: []Option{WithStaticToken("")}},
		"bad token URL":        {base: "https://x", opts: []Option{WithClientCredentials("auth.bikeep.com", "id", "s")}},
		"missing client creds": {base: "https://x", opts: []Option{WithClientCredentials("https://a/t", "", "")}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewClient(tc.base, tc.opts...); err == nil {
				t.Error("want an error")
			}
		})
	}
}
