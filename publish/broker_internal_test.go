package publish

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// The embedded broker's records in stardetr's conventions: warnings kept with "err" as the key,
// info dropped, and a read failing because the broker closed the connection itself dropped.
func TestEmbeddedBrokerLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil)).With("component", "mqtt")
	blog := embeddedLogger(log)
	blog.Info("client connected", "client", "a")
	blog.Warn("", "listener", "tcp", "error", fmt.Errorf("read tcp 127.0.0.1:1->127.0.0.1:2: %w", net.ErrClosed))
	blog.Warn("", "listener", "tcp", "error", "read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection")
	blog.Warn("client packet error", "client", "b", "error", "malformed packet")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("want only the malformed-packet warning, got:\n%s", buf.String())
	}
	for _, want := range []string{"component=mqtt", "broker=embedded", "client=b", `err="malformed packet"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("%q lacks %s", lines[0], want)
		}
	}
	if strings.Contains(lines[0], "error=") || strings.Count(lines[0], "component=") != 1 {
		t.Errorf("%q: want one component and the key err", lines[0])
	}
}
