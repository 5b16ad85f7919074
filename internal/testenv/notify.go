package testenv

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NotifySocket is a fake systemd: a unixgram socket collecting sd_notify datagrams. Point
// NOTIFY_SOCKET at Path.
type NotifySocket struct {
	Path string
	msgs chan string
}

// NewNotifySocket listens on a socket in a temporary folder until the test ends.
func NewNotifySocket(t testing.TB) *NotifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ns := &NotifySocket{Path: path, msgs: make(chan string, 4096)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	return ns
}

// Next returns the next datagram, or "" after the timeout.
func (ns *NotifySocket) Next(timeout time.Duration) string {
	select {
	case m := <-ns.msgs:
		return m
	case <-time.After(timeout):
		return ""
	}
}

// Expect waits for a datagram equal to want (or starting with it when want ends in '='),
// failing the test after timeout; it returns the datagrams that came before it.
func (ns *NotifySocket) Expect(t testing.TB, want string, timeout time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case m := <-ns.msgs:
			if m == want || (strings.HasSuffix(want, "=") && strings.HasPrefix(m, want)) {
				return seen
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("no %q from the daemon in %s; got %q", want, timeout, seen)
		}
	}
}
