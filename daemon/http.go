package daemon

// The daemon's HTTP server in one place: the route table (every endpoint, its pattern and the
// path the README and the start-up log show), authentication, the health and snapshot
// handlers, and the limits on what one client can hold. Handlers of the other resources live
// with them: the live view in live.go, events in events.go.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stardetr/stardetr/camera"
	"github.com/stardetr/stardetr/internal/connlimit"
	"github.com/stardetr/stardetr/internal/secret"
	"github.com/stardetr/stardetr/pipeline"
)

// route is one endpoint of the daemon's HTTP server.
type route struct {
	// pattern is the net/http ServeMux pattern.
	pattern string
	// path is the endpoint as the README's command table and the start-up log write it,
	// with <placeholders> for the parts the client fills in.
	path    string
	handler http.Handler
}

// routes is the HTTP server's one route table: every endpoint the daemon serves, in the
// order the start-up log and the README list them. A new endpoint is added here and to the
// README's `stardetr run` line (TestRoutesAreDocumented checks both ways).
func (s *service) routes(reg *prometheus.Registry) []route {
	return []route{
		{"GET /{$}", "/", http.HandlerFunc(s.live.index)},
		{"GET /healthz", "/healthz", http.HandlerFunc(s.healthz)},
		{"GET /metrics", "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})},
		{"GET /snapshot/{file}", "/snapshot/<camera>.jpg", http.HandlerFunc(s.snapshot)},
		{"GET /stream/{file}", "/stream/<camera>.mjpeg", http.HandlerFunc(s.live.stream)},
		{"GET /api/cameras", "/api/cameras", http.HandlerFunc(s.live.cameras)},
		{"GET /api/events", "/api/events", http.HandlerFunc(s.apiEvents)},
		{"GET /events/{id}/snapshot.jpg", "/events/<id>/snapshot.jpg", http.HandlerFunc(s.eventSnapshot)},
	}
}

// endpointList is the routes' paths for the start-up log.
func endpointList(rs []route) string {
	paths := make([]string, len(rs))
	for i, r := range rs {
		paths[i] = r.path
	}
	return strings.Join(paths, " ")
}

// handler serves the route table (and the live view it holds), behind basic authentication
// when http.auth is set. Authentication wraps the whole mux, not each route: every route
// needs it, and a path outside the table answers 401 too, so that a client without the
// password learns nothing of which paths exist.
func (s *service) handler(reg *prometheus.Registry) (http.Handler, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.live = &liveView{pipe: s.pipe, maxViewers: s.cfg.HTTP.MaxViewers, health: s.health, ctx: ctx, cancel: cancel}
	mux := http.NewServeMux()
	for _, r := range s.routes(reg) {
		mux.Handle(r.pattern, r.handler)
	}
	a := s.cfg.HTTP.Auth
	if !a.enabled() {
		return mux, nil
	}
	pw, err := secret.Read(a.PasswordFile)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("http.auth.password_file: %w", err)
	}
	return basicAuth(mux, a.Username, pw), nil
}

// basicAuth wraps h so that every request needs the configured user and password. The
// comparison is in constant time over hashes, so neither length nor content leaks.
func basicAuth(h http.Handler, user, password string) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="stardetr", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type health struct {
	OK      bool           `json:"ok"`
	Model   string         `json:"model"`
	Queue   string         `json:"queue"`
	Cameras []cameraHealth `json:"cameras"`
}

type cameraHealth struct {
	Name      string  `json:"name"`
	OK        bool    `json:"ok"`
	State     string  `json:"state"`
	Since     string  `json:"since"`
	LastError string  `json:"last_error,omitempty"`
	FPS       float64 `json:"fps"`
	// The detect mode, the model's runs per second over the last 10 s, whether the newest
	// frame shows motion, and the frames motion gating kept from the model.
	Mode      string  `json:"mode"`
	DetectFPS float64 `json:"detections_per_s"`
	Motion    bool    `json:"motion"`
	Skipped   uint64  `json:"frames_skipped"`
}

// healthz answers 200 only when every camera streams or retries within its budget, the
// model runs and the MQTT queue keeps every message; the body says which part is not.
func (s *service) healthz(w http.ResponseWriter, r *http.Request) {
	h := s.health()
	w.Header().Set("Content-Type", "application/json")
	if !h.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}

func (s *service) health() health {
	h := health{OK: true, Model: "ok", Queue: "ok"}
	if s.pub == nil {
		h.Queue = "not started"
	} else if q := s.pub.QueueHealth(); q != "" {
		h.OK, h.Queue = false, q
	}
	if !s.pipe.Progressing(s.cfg.Watchdog.FrameTimeout) {
		h.OK, h.Model = false, "stuck: a frame has been processing longer than watchdog.frame_timeout"
	} else if e := s.pipe.ModelError(); e != "" {
		h.OK, h.Model = false, "failing: "+e
	}
	for _, c := range s.pipe.Stats().Cameras {
		ch := cameraHealth{Name: c.Name, State: string(c.State.Phase), LastError: c.State.LastError, FPS: c.FPS}
		ch.Mode, ch.DetectFPS, ch.Motion, ch.Skipped = c.Mode, c.DetectRate, c.Moving, c.Skipped
		if !c.State.Since.IsZero() {
			ch.Since = c.State.Since.UTC().Format(time.RFC3339)
		}
		switch c.State.Phase {
		case camera.PhaseStreaming:
			ch.OK = true
		case camera.PhaseConnecting, camera.PhaseRetrying:
			ch.OK = time.Since(c.LastFrame) < s.cfg.Watchdog.RetryBudget
		}
		if !ch.OK {
			h.OK = false
		}
		h.Cameras = append(h.Cameras, ch)
	}
	return h
}

func (s *service) snapshot(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".jpg")
	if !ok {
		http.Error(w, "use /snapshot/<camera>.jpg", http.StatusNotFound)
		return
	}
	jpg, err := s.pipe.Snapshot(name)
	switch {
	case errors.Is(err, pipeline.ErrNoCamera):
		http.Error(w, fmt.Sprintf("no camera named %q", name), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	case jpg == nil:
		http.Error(w, fmt.Sprintf("camera %q has no processed frame yet", name), http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(jpg)
	}
}

// httpLimits bound what one HTTP client can hold on to. Without them a connection could idle
// forever after any request (a 401 included), and 20,000 such connections took the process's
// file descriptors, and with them the MQTT queue's next segment file (issue 23).
type httpLimits struct {
	// ReadHeader bounds the wait for a request's headers, Read the whole request (a body sent
	// byte by byte included).
	ReadHeader, Read time.Duration
	// Write bounds the time from the end of the request's headers to the end of the response,
	// for every response but the live streams: each of those sets its own deadline per frame
	// (liveView.stream) and lifts the read deadline.
	Write time.Duration
	// Idle bounds a kept-alive connection's wait for its next request.
	Idle time.Duration
	// MaxConns is http.max_connections: connections above it are closed as soon as they are
	// accepted, and counted.
	MaxConns int
}

// defaultHTTPLimits are the daemon's limits; only the number of connections is a key.
func defaultHTTPLimits(maxConns int) httpLimits {
	return httpLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second, Idle: 30 * time.Second, MaxConns: maxConns}
}

// streamWriteDeadline is how long one live-stream frame may take to write: a viewer that
// stalls longer is dropped.
const streamWriteDeadline = 10 * time.Second

// maxHeaderBytes bounds a request's headers (net/http's default is 1 MiB): the API's requests
// carry a path, a query and a basic-auth header.
const maxHeaderBytes = 32 << 10

// httpServer is the daemon's HTTP server and the listener that bounds its connections.
type httpServer struct {
	*http.Server
	ln *connlimit.Listener
}

// newHTTPServer builds the server for h on ln with the limits; Serve starts it.
func newHTTPServer(ln net.Listener, h http.Handler, lim httpLimits, log *slog.Logger) *httpServer {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	log = log.With("component", "http")
	// net/http's own complaints (an accept that failed, a handler that wrote twice) go to
	// the daemon's log instead of a bare line on stderr.
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	return &httpServer{Server: srv, ln: connlimit.New(ln, lim.MaxConns, log)}
}

// Serve accepts connections until Shutdown.
func (s *httpServer) Serve() error { return s.Server.Serve(s.ln) }

var (
	descHTTPOpen = prometheus.NewDesc("stardetr_http_connections_open",
		"HTTP connections open now (at most http.max_connections).", nil, nil)
	descHTTPRefused = prometheus.NewDesc("stardetr_http_connections_refused_total",
		"HTTP connections closed as soon as accepted because http.max_connections were open.", nil, nil)
	descHTTPMax = prometheus.NewDesc("stardetr_http_connections_max",
		"http.max_connections.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *httpServer) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHTTPOpen
	ch <- descHTTPRefused
	ch <- descHTTPMax
}

// Collect implements prometheus.Collector.
func (s *httpServer) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descHTTPOpen, prometheus.GaugeValue, float64(s.ln.Open()))
	ch <- prometheus.MustNewConstMetric(descHTTPRefused, prometheus.CounterValue, float64(s.ln.Refused()))
	ch <- prometheus.MustNewConstMetric(descHTTPMax, prometheus.GaugeValue, float64(s.ln.Max()))
}
