// Package connlimit bounds the connections a server holds open at once. Every accepted
// connection costs a file descriptor and a goroutine until it closes; without a bound, idle
// clients can hold them until the process runs out of descriptors, and then every file the
// process opens fails (the MQTT queue, the message counters, event snapshots). The Listener
// closes a connection above the bound as soon as it is accepted, and counts it.
package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// logEvery is the most often a refusal is logged: a flood of connections must not flood the
// journal too.
const logEvery = 10 * time.Second

// Listener is a net.Listener that holds at most Max connections open; one above it is closed
// at once (with a reset, so that it leaves no TIME_WAIT socket behind) and counted.
type Listener struct {
	net.Listener
	max     int
	slots   chan struct{}
	log     *slog.Logger
	refused atomic.Uint64
	open    atomic.Int64

	logMu     sync.Mutex
	lastLog   time.Time
	refusedAt uint64 // refused at the last log line
}

// New wraps l so that at most max connections are open at once; refusals are logged (at most
// one line per 10 s, with the count) to log when it is not nil.
func New(l net.Listener, max int, log *slog.Logger) *Listener {
	return &Listener{Listener: l, max: max, slots: make(chan struct{}, max), log: log}
}

// Accept returns the next connection for which a slot is free. Connections that find every
// slot taken are closed and counted, and Accept goes on waiting.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			l.open.Add(1)
			return &conn{Conn: c, l: l}, nil
		default:
			l.refuse(c)
		}
	}
}

func (l *Listener) refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	n := l.refused.Add(1)
	if l.log == nil {
		return
	}
	l.logMu.Lock()
	defer l.logMu.Unlock()
	now := time.Now()
	if !l.lastLog.IsZero() && now.Sub(l.lastLog) < logEvery {
		return
	}
	l.log.Warn("connections refused: the most connections allowed are open", "max_connections", l.max,
		"refused_since_last_line", n-l.refusedAt, "refused_total", n, "last_from", c.RemoteAddr().String())
	l.lastLog, l.refusedAt = now, n
}

// Open is the number of connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused is the number of connections closed because every slot was taken.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

// Max is the bound.
func (l *Listener) Max() int { return l.max }

// conn gives its slot back when it is closed (once, however often Close is called).
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.slots
	})
	return err
}

// CloseWrite keeps the half-close that net/http uses on TCP connections (closeWriteAndWait).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
