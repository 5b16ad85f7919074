package daemon

import (
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks systemd's notify protocol (Type=notify). Outside systemd NOTIFY_SOCKET is
// unset and every call is a no-op.
type notifier struct {
	log *slog.Logger
}

func (n notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Warn("systemd notify failed", "state", state, "err", err)
	}
}

func (n notifier) ready()     { n.send(sd.SdNotifyReady) }
func (n notifier) stopping()  { n.send(sd.SdNotifyStopping) }
func (n notifier) reloading() { n.send(sd.SdNotifyReloading) }
func (n notifier) watchdog()  { n.send(sd.SdNotifyWatchdog) }
func (n notifier) status(format string, args ...any) {
	n.send("STATUS=" + fmt.Sprintf(format, args...))
}

// watchdogInterval returns how often to ping the systemd watchdog (half its timeout), or 0
// when the watchdog is off.
func watchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}
