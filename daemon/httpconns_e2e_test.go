package daemon_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stardetr/stardetr/internal/testenv"
)

// procFDs counts the open file descriptors of process pid.
func procFDs(t testing.TB, pid int) int {
	t.Helper()
	e, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(e)
}

// peerClosed says whether err means the other side closed or reset the connection.
func peerClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// idleClient connects to addr, asks for /healthz and keeps the connection open without a
// further request, as a client that forgets its connections does. It returns the open
// connection, or nil when the daemon closed it instead of answering; anything else (a
// timeout included) is an error.
func idleClient(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if peerClosed(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: stardetr\r\n\r\n"); err != nil {
		c.Close()
		if peerClosed(err) {
			return nil, nil
		}
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		if peerClosed(err) {
			return nil, nil
		}
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Issue 23, finding 4: connections that idle after a request took one file descriptor each
// for ever, until the daemon had none left. Against the real daemon with its default
// http.max_connections (64): of 400 such clients 64 are served and kept, the rest closed at
// once and counted, and the daemon's descriptors grow by the 64 only.
func TestDaemonHTTPConnectionsBounded(t *testing.T) {
	const maxConns, clients = 64, 400
	bin := buildStardetr(t)
	broker := testenv.StartMosquitto(t, "")
	e := newStartupEnv(t, bin, broker, testenv.FreePort(t))
	ns := testenv.NewNotifySocket(t)
	d := startDaemon(t, bin, e.cfg, "NOTIFY_SOCKET="+ns.Path)
	ns.Expect(t, "READY=1", 60*time.Second)
	pid := d.cmd.Process.Pid
	addr := fmt.Sprintf("127.0.0.1:%d", e.httpPort)
	// No request before the clients below: each would leave a kept-alive connection.
	base := procFDs(t, pid)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range clients {
		c, err := idleClient(addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if c != nil {
			held = append(held, c)
		}
	}
	// The daemon opens and closes files of its own meanwhile (the clip, the queue): a margin.
	const margin = 16
	fds := procFDs(t, pid)
	t.Logf("%d clients: %d served and idle, daemon descriptors %d → %d", clients, len(held), base, fds)
	if len(held) != maxConns {
		t.Errorf("%d of %d idle clients kept their connection; want http.max_connections' default %d", len(held), clients, maxConns)
	}
	if fds > base+maxConns+margin {
		t.Errorf("the daemon's descriptors grew from %d to %d with %d idle clients; want at most %d more", base, fds, clients, maxConns+margin)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	var m []byte
	testenv.WaitFor(t, 10*time.Second, "the idle connections closed in the daemon", func() bool {
		_, m = getURL(t, fmt.Sprintf("http://%s/metrics", addr))
		return metric(t, m, "stardetr_http_connections_open") == 1
	})
	if got := metric(t, m, "stardetr_http_connections_refused_total"); got != clients-maxConns {
		t.Errorf("stardetr_http_connections_refused_total %v, want %d", got, clients-maxConns)
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
}
