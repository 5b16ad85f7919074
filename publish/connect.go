package publish

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stardetr/stardetr/internal/backoff"
)

// writeTimeout bounds one packet write (and paho's hand-off to its writer).
const writeTimeout = 2 * time.Second

// link is one MQTT connection; lost is closed when it ends.
type link struct {
	lost     chan struct{}
	lostOnce sync.Once
}

func (l *link) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

func (p *Publisher) clientOptions() *mqtt.ClientOptions {
	o := mqtt.NewClientOptions()
	for _, b := range p.brokers {
		o.AddBroker(b)
	}
	o.SetClientID(p.cfg.ClientID)
	o.SetUsername(p.cfg.Username)
	o.SetPassword(p.passwd)
	if p.tls != nil {
		o.SetTLSConfig(p.tls)
	}
	o.SetKeepAlive(p.cfg.Keepalive)
	o.SetPingTimeout(min(p.cfg.Keepalive, 10*time.Second))
	o.SetConnectTimeout(p.cfg.ConnectTimeout)
	// paho's Publish waits for its writer up to WriteTimeout (30 s when unset), also on a
	// connection that has just died: bound it so that a shutdown during an outage stays
	// within the daemon's few seconds.
	o.SetWriteTimeout(writeTimeout)
	o.SetProtocolVersion(4) // no silent fallback to 3.1, which hides the real CONNACK error
	// Our queue is the store of record; paho reconnecting on its own and
	// keeping a session would resend messages behind our back.
	o.SetCleanSession(true)
	o.SetAutoReconnect(false)
	o.SetConnectRetry(false)
	o.SetStore(mqtt.NewMemoryStore())
	o.SetWill(p.statusTopic, "offline", byte(p.cfg.StatusQoS), true)
	o.SetConnectionAttemptHandler(func(broker *url.URL, c *tls.Config) *tls.Config {
		p.mu.Lock()
		p.attempting = broker.Redacted()
		p.mu.Unlock()
		return c
	})
	o.SetConnectionNotificationHandler(func(_ mqtt.Client, n mqtt.ConnectionNotification) {
		if f, ok := n.(mqtt.ConnectionNotificationBrokerFailed); ok {
			p.log.Debug("broker attempt failed", "broker", f.Broker.Redacted(), "err", p.explain(f.Reason, f.Broker.Redacted()))
		}
	})
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		p.mu.Lock()
		l := p.conn
		p.mu.Unlock()
		if l != nil { // always set by then: paho calls this only after a connect
			p.log.Warn("connection lost", "err", err)
			l.markLost()
		}
	})
	return o
}

func (p *Publisher) setLink(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.link = l
	close(p.linkChanged)
	p.linkChanged = make(chan struct{})
}

func (p *Publisher) currentLink() (*link, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.link, p.linkChanged
}

// connectLoop owns the connection, in the shape of a camera's Source.Run: an attempt, then
// one wait (backoff.Wait) for the retry or ctx. The wait follows internal/backoff's one rule
// for both: a failed connect, or a connection lost soon after it was made, waits out the next
// step of the schedule; one that was up backoff.ResetAfter starts the schedule over and waits
// its first step (about a second: the broker that dropped it is rarely back sooner).
func (p *Publisher) connectLoop(ctx context.Context) {
	defer p.wg.Done()
	bo := backoff.New(p.retry, 0, uint64(time.Now().UnixNano()))
	failures := 0
	for {
		up, err := p.attempt(ctx)
		if ctx.Err() != nil {
			return
		}
		wait, reset := bo.After(up)
		switch {
		case err != nil:
			failures++
			p.log.Warn("cannot connect to any broker", "brokers", p.brokers, "err", err, "retry_in", wait, "failures", failures)
		case reset:
			failures = 0
			p.log.Info("reconnecting", "after", up.Round(time.Second), "retry_in", wait.Round(time.Millisecond))
		default:
			// Lost soon after it was made (a broker that drops this client for another with the
			// same client id, say): reconnect on the schedule, not in a tight loop.
			p.log.Warn("connection lost soon after it was made", "after", up.Round(time.Millisecond), "retry_in", wait, "client_id", p.cfg.ClientID)
		}
		if !backoff.Wait(ctx, wait) {
			return
		}
	}
}

// attempt connects to a broker and, once connected, publishes the retained "online" status,
// hands the connection to the sender and holds it until it is lost or ctx is done. It returns
// why the connect failed, or how long the connection that worked was up.
func (p *Publisher) attempt(ctx context.Context) (up time.Duration, err error) {
	// The link exists before Connect, so the connection-lost handler always has this
	// connection's link to mark: paho calls it (in a goroutine of its own) only for a
	// connection that was up, possibly before Connect's token is seen here.
	l := &link{lost: make(chan struct{})}
	p.mu.Lock()
	p.conn = l
	p.mu.Unlock()
	p.connectAttempts.Add(1)
	tok := p.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// Give the attempt a moment to settle so that Close sees a settled client, but
		// not its whole connect timeout: a broker that accepted TCP and never answers
		// (one shutting down, say) must not hold up a shutdown past its deadline.
		tok.WaitTimeout(time.Second)
		return 0, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		p.connectFailures.Add(1)
		p.mu.Lock()
		err = p.explain(err, p.attempting)
		p.lastErr = fmt.Errorf("connect to %v: %w", p.brokers, err)
		p.mu.Unlock()
		return 0, err
	}
	// A connection that paho dropped while it was still marking it up completes the token
	// without the lost handler; once paho has it up, only the handler (or our Disconnect)
	// takes it down. One look now covers the first case.
	if !p.client.IsConnectionOpen() {
		l.markLost()
	}
	p.mu.Lock()
	p.lastErr = nil
	p.connectedTo = p.attempting
	broker := p.connectedTo
	p.mu.Unlock()
	p.log.Info("connected", "broker", broker, "client_id", p.cfg.ClientID)
	p.client.Publish(p.statusTopic, byte(p.cfg.StatusQoS), true, "online")
	p.setLink(l)
	since := time.Now()
	select {
	case <-l.lost:
	case <-ctx.Done():
	}
	p.setLink(nil)
	return time.Since(since), nil
}
