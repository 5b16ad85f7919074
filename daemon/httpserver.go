package daemon

import (
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/internal/connlimit"
)

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
