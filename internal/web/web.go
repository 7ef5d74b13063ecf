// Package web is fleetd's HTTP server: the metrics endpoint, the health and
// readiness probes, and the landing page, served through exporter-toolkit so
// TLS and basic auth come from --web.config.file.
package web

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	toolkit "github.com/prometheus/exporter-toolkit/web"
)

// Options configure a Server.
type Options struct {
	// Flags are exporter-toolkit's --web.listen-address, --web.config.file and
	// --web.systemd-socket.
	Flags         *toolkit.FlagConfig
	TelemetryPath string
	// Metrics serves the telemetry path; when nil, Gatherer is served
	// through promhttp.
	Metrics  http.Handler
	Gatherer prometheus.Gatherer
	// Registerer receives promhttp's own handler metrics; may be nil.
	Registerer prometheus.Registerer
	// Ready reports whether fleetd has completed its first device walk.
	Ready func() bool
	// ShutdownTimeout bounds the graceful shutdown (default 10s).
	ShutdownTimeout time.Duration
	// Routes registers additional handlers (APIs) on the mux.
	Routes func(mux *http.ServeMux)
	// Home serves "/" (the status page); when nil, a landing page with
	// links is served there.
	Home   http.Handler
	Logger *slog.Logger
}

// Server serves fleetd's HTTP endpoints.
type Server struct {
	opts      Options
	log       *slog.Logger
	srv       *http.Server
	listeners []net.Listener
}

// New builds the server and its routes. It does not listen yet.
func New(opts Options) (*Server, error) {
	if opts.Flags == nil || opts.Flags.WebListenAddresses == nil || len(*opts.Flags.WebListenAddresses) == 0 {
		return nil, errors.New("web: no listen address")
	}
	if opts.Gatherer == nil && opts.Metrics == nil {
		return nil, errors.New("web: Metrics or Gatherer is required")
	}
	if opts.TelemetryPath == "" {
		opts.TelemetryPath = "/metrics"
	}
	if opts.TelemetryPath[0] != '/' {
		return nil, fmt.Errorf("web: telemetry path %q must start with /", opts.TelemetryPath)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	if opts.Ready == nil {
		opts.Ready = func() bool { return true }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, log: opts.Logger}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	metrics := s.opts.Metrics
	if metrics == nil {
		metrics = promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
			ErrorHandling:     promhttp.ContinueOnError,
			EnableOpenMetrics: true,
			Timeout:           30 * time.Second,
		})
	}
	if s.opts.Registerer != nil {
		metrics = promhttp.InstrumentMetricHandler(s.opts.Registerer, metrics)
	}
	mux.Handle("GET "+s.opts.TelemetryPath, metrics)
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.opts.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "Not ready: the first device walk has not completed")
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	if s.opts.Routes != nil {
		s.opts.Routes(mux)
	}
	switch {
	case s.opts.TelemetryPath == "/":
	case s.opts.Home != nil:
		mux.Handle("/{$}", s.opts.Home)
	default:
		mux.HandleFunc("GET /{$}", s.landing)
	}
	return mux
}

var landingTmpl = template.Must(template.New("landing").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetd</title></head>
<body><h1>fleetd</h1>
<p>Watches Bikeep parking devices and COPRI rentals.</p>
<ul>
<li><a href="{{.Metrics}}">Metrics</a></li>
<li><a href="/-/healthy">Health</a></li>
<li><a href="/-/ready">Readiness</a></li>
</ul></body></html>
`))

func (s *Server) landing(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = landingTmpl.Execute(w, struct{ Metrics string }{s.opts.TelemetryPath})
}

// Handler returns the server's handler (for in-process tests).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Listen opens the listen addresses. Call it before starting the walks, so a
// taken port fails fleetd at once.
func (s *Server) Listen() error {
	if s.opts.Flags.WebSystemdSocket != nil && *s.opts.Flags.WebSystemdSocket {
		return nil // exporter-toolkit takes the sockets from systemd in Serve.
	}
	for _, addr := range *s.opts.Flags.WebListenAddresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		s.listeners = append(s.listeners, l)
	}
	return nil
}

// Addrs returns the bound addresses (after Listen).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
	s.listeners = nil
}

// Serve serves until ctx is done, then shuts down gracefully within the
// shutdown timeout.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		if s.listeners == nil {
			errc <- toolkit.ListenAndServe(s.srv, s.opts.Flags, s.log)
			return
		}
		errc <- toolkit.ServeMultiple(s.listeners, s.srv, s.opts.Flags, s.log)
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("http shutdown: %w", err)
	}
	<-errc
	return nil
}
