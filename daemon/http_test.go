package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/internal/testenv"
)

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	e, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

// serveTest runs the daemon's HTTP server (newHTTPServer) with lim on a free loopback port:
// /ok answers a few bytes, /big writes until the write fails and sends the error on bigErr.
func serveTest(t *testing.T, lim httpLimits) (*httpServer, string, chan error) {
	t.Helper()
	bigErr := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 1024 { // 1 GiB: far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				bigErr <- err
				return
			}
		}
		bigErr <- nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(ln, mux, lim, slog.New(slog.NewTextHandler(io.Discard, nil)))
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String(), bigErr
}

// request sends GET path on c and reads the response; ok is false when the server closed the
// connection instead of answering. It fails the test on anything else, a timeout included.
func request(t *testing.T, c net.Conn, r *bufio.Reader, path string) (ok bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: stardetr\r\n\r\n"); err != nil {
		if closedByPeer(err) {
			return false
		}
		t.Fatalf("GET %s: %v", path, err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		if closedByPeer(err) {
			return false
		}
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return true
}

// closedByPeer says whether err means the other side closed the connection (not a timeout).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// waitClosedByServer blocks until the server closes c (a read returns EOF or a reset); a
// read that times out after limit fails the test.
func waitClosedByServer(t *testing.T, c net.Conn, r *bufio.Reader, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	if _, err := r.ReadByte(); !closedByPeer(err) {
		t.Fatalf("connection %s: read %v; want it closed by the server", c.LocalAddr(), err)
	}
}

type testConn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) testConn {
	t.Helper()
	c, ok := dialOrRefused(t, addr)
	if !ok {
		t.Fatalf("connecting to %s: reset by the server", addr)
	}
	return c
}

// dialOrRefused connects to addr; ok is false when the server reset the connection before
// connect returned (a connection refused above the bound can be).
func dialOrRefused(t *testing.T, addr string) (_ testConn, ok bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if closedByPeer(err) {
		return testConn{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return testConn{c, bufio.NewReader(c)}, true
}

// Idle connections do not stay: a kept-alive connection is closed IdleTimeout after its last
// response (issue 23: one that had made any request, a 401 included, stayed forever).
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	lim := httpLimits{ReadHeader: 5 * time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: 300 * time.Millisecond, MaxConns: 64}
	srv, addr, _ := serveTest(t, lim)
	const n = 50
	conns := make([]testConn, n)
	for i := range conns {
		conns[i] = dial(t, addr)
		if !request(t, conns[i], conns[i].r, "/ok") || !request(t, conns[i], conns[i].r, "/ok") {
			t.Fatalf("connection %d was closed while in use", i)
		}
	}
	t0 := time.Now()
	if got := srv.ln.Open(); got != n {
		t.Fatalf("%d connections open on the server, want %d", got, n)
	}
	for _, c := range conns {
		waitClosedByServer(t, c, c.r, 10*time.Second)
	}
	if d := time.Since(t0); d < lim.Idle/2 {
		t.Errorf("idle connections closed after %v: sooner than the idle timeout %v", d, lim.Idle)
	}
	testenv.WaitFor(t, 5*time.Second, "the server to count its connections closed", func() bool { return srv.ln.Open() == 0 })
}

// Above http.max_connections a connection is closed as soon as it is accepted and counted;
// the server's descriptors stay at the bound however many clients connect, and a slot freed
// is a slot for the next client.
func TestHTTPConnectionsCapped(t *testing.T) {
	lim := httpLimits{ReadHeader: 5 * time.Second, Read: 5 * time.Second, Write: 5 * time.Second, Idle: time.Minute, MaxConns: 20}
	srv, addr, _ := serveTest(t, lim)
	base := openFDs(t)
	held := make([]testConn, lim.MaxConns)
	for i := range held {
		held[i] = dial(t, addr)
		if !request(t, held[i], held[i].r, "/ok") {
			t.Fatalf("connection %d of %d was refused", i, lim.MaxConns)
		}
	}
	const extra = 500
	for i := range extra {
		c, ok := dialOrRefused(t, addr)
		if !ok {
			continue
		}
		if request(t, c, c.r, "/ok") {
			t.Fatalf("connection %d above max_connections %d was served", i+1, lim.MaxConns)
		}
		c.Close()
	}
	testenv.WaitFor(t, 5*time.Second, "every extra connection counted as refused", func() bool { return srv.ln.Refused() == extra })
	// This process holds both ends: the held connections' two descriptors each, and no more.
	if got, want := openFDs(t)-base, 2*lim.MaxConns; got > want+2 {
		t.Errorf("%d more descriptors open after %d connections (%d held), want at most %d", got, lim.MaxConns+extra, lim.MaxConns, want)
	}
	if got := srv.ln.Open(); got != lim.MaxConns {
		t.Errorf("server counts %d open connections, want %d", got, lim.MaxConns)
	}
	held[0].Close()
	testenv.WaitFor(t, 5*time.Second, "the closed connection's slot freed", func() bool { return srv.ln.Open() == lim.MaxConns-1 })
	c := dial(t, addr)
	if !request(t, c, c.r, "/ok") {
		t.Fatal("a connection after one was freed was refused")
	}
}

// A client that stops reading a response is dropped after the write timeout: it does not hold
// the handler, its goroutine and the connection forever.
func TestHTTPWriteDeadline(t *testing.T) {
	lim := httpLimits{ReadHeader: 5 * time.Second, Read: 5 * time.Second, Write: 500 * time.Millisecond, Idle: time.Minute, MaxConns: 8}
	srv, addr, bigErr := serveTest(t, lim)
	c := dial(t, addr)
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: stardetr\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Nothing is read: the server's writes fill the socket buffers and block.
	select {
	case err := <-bigErr:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("the handler's write to a client that reads nothing ended with %v, want a timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the handler still writes to a client that reads nothing 30 s after the request (write timeout %v)", lim.Write)
	}
	testenv.WaitFor(t, 5*time.Second, "the stalled connection closed", func() bool { return srv.ln.Open() == 0 })
}

// The packaged unit's LimitNOFILE is the one the config check names, and leaves room for the
// daemon's own files next to the most HTTP connections http.max_connections allows.
func TestUnitLimitNOFILE(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "packaging", "systemd", "stardetr.service"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("\nLimitNOFILE=%d\n", unitNOFILE)
	if !strings.Contains(string(b), want) {
		t.Errorf("stardetr.service lacks %q", strings.TrimSpace(want))
	}
	if maxHTTPConnections > unitNOFILE/2 {
		t.Errorf("max_connections may reach %d of the unit's %d descriptors: too few left for the daemon's own files", maxHTTPConnections, unitNOFILE)
	}
}

// Every route of the table is in the README's `stardetr run` line and nothing else is, and the
// path written there (its <placeholders> filled in) is one the route serves; the start-up log
// names them all (endpointList).
func TestRoutesAreDocumented(t *testing.T) {
	routes := (&service{}).routes(prometheus.NewRegistry())
	readme, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var runLine string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "| `stardetr run") {
			runLine = l
		}
	}
	if runLine == "" {
		t.Fatal("README.md has no `stardetr run` line in its Commands table")
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(/[^`]*)`").FindAllStringSubmatch(runLine, -1) {
		documented[m[1]] = true
	}
	mux := http.NewServeMux()
	inTable := map[string]bool{}
	for _, r := range routes {
		mux.Handle(r.pattern, r.handler)
		inTable[r.path] = true
	}
	fill := strings.NewReplacer("<camera>", "front", "<id>", "front-1-1")
	logged := strings.Fields(endpointList(routes))
	for i, r := range routes {
		if !documented[r.path] {
			t.Errorf("route %q: its path %s is not in README.md's `stardetr run` line", r.pattern, r.path)
		}
		if _, pattern := mux.Handler(httptest.NewRequest(http.MethodGet, fill.Replace(r.path), nil)); pattern != r.pattern {
			t.Errorf("route %q: the documented path %s is served by %q", r.pattern, r.path, pattern)
		}
		if i >= len(logged) || logged[i] != r.path {
			t.Errorf("route %q: the start-up log's endpoints %q do not name %s in table order", r.pattern, logged, r.path)
		}
	}
	for p := range documented {
		if !inTable[p] {
			t.Errorf("README.md's `stardetr run` line names %s, which no route serves", p)
		}
	}
}
