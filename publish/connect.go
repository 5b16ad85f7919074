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

const (
	// linkCheck is how often the connection loop double-checks that paho still has a connection.
	linkCheck = time.Second
	// writeTimeout bounds one packet write (and paho's hand-off to its writer).
	writeTimeout = 2 * time.Second
)

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
		l := p.link
		p.mu.Unlock()
		if l != nil {
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

// connectLoop owns the connection: connect, wait until it is lost, back off, again.
func (p *Publisher) connectLoop(ctx context.Context) {
	defer p.wg.Done()
	failures := 0
	retry := backoff.New(p.retry, uint64(time.Now().UnixNano()))
	for {
		p.connectAttempts.Add(1)
		tok := p.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			// Give the attempt a moment to settle so that Close sees a settled client, but
			// not its whole connect timeout: a broker that accepted TCP and never answers
			// (one shutting down, say) must not hold up a shutdown past its deadline.
			tok.WaitTimeout(time.Second)
			return
		}
		if err := tok.Error(); err != nil {
			failures++
			p.connectFailures.Add(1)
			p.mu.Lock()
			err = p.explain(err, p.attempting)
			p.lastErr = fmt.Errorf("connect to %v: %w", p.brokers, err)
			p.mu.Unlock()
			delay := retry.Next()
			p.log.Warn("cannot connect to any broker", "brokers", p.brokers, "err", err, "retry_in", delay, "failures", failures)
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
				return
			}
		}
		failures = 0
		retry.Reset()
		p.mu.Lock()
		p.lastErr = nil
		p.connectedTo = p.attempting
		broker := p.connectedTo
		p.mu.Unlock()
		p.log.Info("connected", "broker", broker, "client_id", p.cfg.ClientID)
		p.client.Publish(p.statusTopic, byte(p.cfg.StatusQoS), true, "online")
		l := &link{lost: make(chan struct{})}
		p.setLink(l)
		p.waitLost(ctx, l)
		p.setLink(nil)
		if ctx.Err() != nil {
			return
		}
	}
}

// waitLost returns when l is lost or ctx is done. paho reports a lost
// connection through a callback that may race with setLink, so the state is
// also polled.
func (p *Publisher) waitLost(ctx context.Context, l *link) {
	t := time.NewTicker(linkCheck)
	defer t.Stop()
	for {
		select {
		case <-l.lost:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if !p.client.IsConnectionOpen() {
				l.markLost()
				return
			}
		}
	}
}
