package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

const embeddedListenerID = "tcp"

// startEmbedded runs a mochi MQTT broker in the process on listen, letting
// every client in (it is meant for 127.0.0.1 or a trusted network). It
// returns the address it actually listens on.
func startEmbedded(listen string, log *slog.Logger) (*mochi.Server, string, error) {
	srv := mochi.New(&mochi.Options{Logger: embeddedLogger(log), InlineClient: false})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return nil, "", fmt.Errorf("mqtt.embedded: add auth hook: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: embeddedListenerID, Address: listen})
	if err := srv.AddListener(l); err != nil {
		return nil, "", fmt.Errorf("mqtt.embedded.listen: cannot listen on %s: %w", listen, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, "", fmt.Errorf("mqtt.embedded: start broker: %w", err)
	}
	log.Info("embedded MQTT broker listening", "addr", l.Address())
	return srv, l.Address(), nil
}

// embeddedLogger is the mochi broker's logger: log's attributes plus broker=embedded, warnings
// and above, in stardetr's conventions (minLevel).
func embeddedLogger(log *slog.Logger) *slog.Logger {
	return slog.New(minLevel{h: log.With("broker", "embedded").Handler(), min: slog.LevelWarn})
}

// stopEmbedded stops srv without mochi's Server.Close path that closes the
// listener's clients: Clients.GetByListener takes its read lock twice and
// deadlocks when a client disconnects at the same moment (mochi v2.7.9).
// Closing the listener with a no-op first makes Close skip that path.
func stopEmbedded(srv *mochi.Server) error {
	srv.Listeners.Close(embeddedListenerID, func(string) {})
	for _, cl := range srv.Clients.GetAll() {
		if !cl.Closed() && !cl.Net.Inline {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	return srv.Close()
}

// minLevel drops records below min (the broker logs every client at info) and puts mochi's
// records into stardetr's conventions: its "error" key becomes "err", and a client's read that
// failed because the broker itself is stopping ("use of closed network connection") is dropped.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	drop := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			a.Key = "err"
			if err, ok := a.Value.Any().(error); ok && errors.Is(err, net.ErrClosed) {
				drop = true
			} else if strings.Contains(a.Value.String(), "use of closed network connection") {
				drop = true
			}
		}
		out.AddAttrs(a)
		return true
	})
	if drop {
		return nil
	}
	return m.h.Handle(ctx, out)
}
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(a), min: m.min}
}
func (m minLevel) WithGroup(n string) slog.Handler { return minLevel{h: m.h.WithGroup(n), min: m.min} }
