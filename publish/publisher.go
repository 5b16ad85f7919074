package publish

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/stardetr/stardetr/internal/backoff"
	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/secret"
	"github.com/stardetr/stardetr/publish/internal/diskqueue"
)

// ErrClosed is returned by Publish* after Close.
var ErrClosed = errors.New("publish: publisher is closed")

// Options are the publisher's inputs that do not come from the mqtt: section.
type Options struct {
	DeviceID string       // one topic level; the daemon defaults it to the hostname
	StateDir string       // holds mqtt-queue/ and mqtt-seq.json
	Logger   *slog.Logger // nil: slog.Default()
	// Stats, when set, is called every Config.StatsInterval and its result published on …/stats.
	Stats func() Stats
	// RetryDelays between failed connection attempts, jittered ±20%; the last one repeats.
	// Nil: backoff.Default (1s, 1s, 2s, 5s, 10s, 20s, 30s), the cameras' schedule too.
	RetryDelays []time.Duration
}

const (
	// window is how many queued messages may await their PUBACK at once.
	window = 64
	// syncInterval is the batch fsync period of the disk queue.
	syncInterval = 200 * time.Millisecond
	// linkCheck is how often the connection loop double-checks that paho still has a connection.
	linkCheck = time.Second
	// writeTimeout bounds one packet write (and paho's hand-off to its writer).
	writeTimeout = 2 * time.Second
)

// Publisher sends detections and stats to an MQTT broker without losing
// detections: see the package documentation.
type Publisher struct {
	cfg     Config
	log     *slog.Logger
	device  string
	stats   func() Stats
	retry   []time.Duration
	brokers []string
	tls     *tls.Config
	passwd  string

	statusTopic string
	statsTopic  string
	camPrefix   string // <prefix>/<device>/

	queue *diskqueue.Queue
	seqs  *seqCounters
	encMu sync.Mutex // keeps seq order == queue order per camera

	client   mqtt.Client
	embedded *mochi.Server
	embAddr  string

	mu          sync.Mutex
	started     bool
	closed      bool
	link        *link         // nil while disconnected
	linkChanged chan struct{} // closed and replaced on every change of link
	lastErr     error
	attempting  string // broker of the current connection attempt
	connectedTo string
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	start       time.Time

	published       atomic.Uint64
	queued          atomic.Uint64
	dropped         atomic.Uint64
	corrupt         atomic.Uint64 // queued messages lost to corrupt records
	droppedLogged   atomic.Uint64 // dropped at the last drop log line
	fullDropsSeen   atomic.Uint64 // the queue's DroppedNoSpace at the last drop
	lastDrop        atomic.Int64  // unix ns of the last drop; 0: none
	lastDiskFull    atomic.Int64  // unix ns of the last drop on a full file system
	dropLog         logLimiter
	syncLog         logLimiter
	statsPublished  atomic.Uint64
	statsSkipped    atomic.Uint64
	connectAttempts atomic.Uint64
	connectFailures atomic.Uint64
	publishErrors   atomic.Uint64
}

// link is one MQTT connection; lost is closed when it ends.
type link struct {
	lost     chan struct{}
	lostOnce sync.Once
}

func (l *link) markLost() { l.lostOnce.Do(func() { close(l.lost) }) }

// New validates cfg, opens the disk queue and the message counters in
// opts.StateDir (loading what a previous run left there) and returns a
// publisher that accepts messages but does not connect until Start. A
// publisher returned by New must be closed with Close.
func New(cfg Config, opts Options) (*Publisher, error) {
	if err := confcheck.In("mqtt", cfg.Validate()); err != nil {
		return nil, err
	}
	if err := checkTopicLevel("device id", opts.DeviceID); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if opts.StateDir == "" {
		return nil, errors.New("publish: state directory is empty: set state_dir")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Publisher{
		cfg:         cfg,
		log:         log.With("component", "mqtt"),
		device:      opts.DeviceID,
		stats:       opts.Stats,
		retry:       opts.RetryDelays,
		linkChanged: make(chan struct{}),
	}
	base := cfg.TopicPrefix + "/" + opts.DeviceID + "/"
	p.statusTopic, p.statsTopic, p.camPrefix = base+"status", base+"stats", base
	if p.cfg.ClientID == "" {
		p.cfg.ClientID = "stardetr-" + opts.DeviceID
	}
	for _, b := range cfg.Brokers {
		u, _ := brokerURL(b) // validated above
		p.brokers = append(p.brokers, u.String())
	}
	var err error
	if p.tls, err = cfg.tlsConfig(); err != nil {
		return nil, err
	}
	if p.tls != nil && p.tls.InsecureSkipVerify {
		p.log.Warn("TLS certificate verification is OFF (mqtt.tls.insecure_skip_verify): anyone on the path can read and forge messages")
	}
	p.passwd = cfg.Password
	if cfg.PasswordFile != "" {
		if p.passwd, err = secret.Read(cfg.PasswordFile); err != nil {
			return nil, fmt.Errorf("mqtt.password_file: %w", err)
		}
	}
	qdir := filepath.Join(opts.StateDir, queueDir)
	if st, err := os.Stat(qdir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("publish: %s is a file where stardetr keeps its MQTT queue folder: move it away (or set state_dir to another folder)", qdir)
	}
	now := time.Now()
	var seqRec *seqRecovery
	if p.seqs, seqRec, err = openSeqCounters(opts.StateDir, now); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if seqRec != nil {
		p.log.Warn("message counters were corrupt: moved aside; numbering continues above any number used before",
			"file", filepath.Join(opts.StateDir, seqFile), "moved_to", seqRec.MovedTo, "next_seq", seqRec.Floor, "reason", seqRec.Reason)
		if now.Before(plausibleClock) {
			p.log.Warn("the wall clock looks unset: numbers after the corrupt counters may repeat earlier ones; set the clock (NTP/RTC)", "now", now)
		}
	}
	if p.queue, err = diskqueue.Open(qdir, int64(cfg.Queue.MaxMB)<<20); err != nil {
		return nil, fmt.Errorf("publish: open queue in %s: %w", qdir, err)
	}
	rec := p.queue.Recovered()
	if rec.Records > 0 || rec.TruncatedBytes > 0 || rec.BadHead {
		p.log.Info("loaded queued messages from the previous run", "messages", rec.Records,
			"torn_bytes_cut", rec.TruncatedBytes, "head_unreadable", rec.BadHead, "legacy_segments", rec.LegacySegments, "dir", qdir)
	}
	for _, d := range rec.Damaged {
		p.corrupt.Add(uint64(d.Records))
		p.log.Warn("queue segment has corrupt records: skipped them, kept the rest", "segment", d.Segment,
			"messages_lost", d.Records, "bytes_skipped", d.Bytes)
	}
	return p, nil
}

// Start starts the embedded broker when enabled, then connects in the
// background: it returns without waiting for a broker, and keeps retrying
// (Options.RetryDelays) until Close. ctx bounds only the start itself.
func (p *Publisher) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.started {
		return errors.New("publish: Start called twice")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.cfg.Embedded.Enabled {
		srv, addr, err := startEmbedded(p.cfg.Embedded.Listen, p.log)
		if err != nil {
			return err
		}
		p.embedded, p.embAddr = srv, addr
		if len(p.brokers) == 0 {
			p.brokers = []string{"mqtt://" + addr}
		}
	}
	p.client = mqtt.NewClient(p.clientOptions())
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.started = true
	p.start = time.Now()
	p.wg.Add(3)
	go p.connectLoop(runCtx)
	go p.sendLoop(runCtx)
	go p.maintainLoop(runCtx)
	return nil
}

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

type inflight struct {
	id    uint64
	topic string
	tok   mqtt.Token
}

// sendLoop is the only sender of queued messages: in queue order, at most
// window unacknowledged, each removed from the queue once the broker has it.
func (p *Publisher) sendLoop(ctx context.Context) {
	defer p.wg.Done()
	for {
		l, changed := p.currentLink()
		if l == nil {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		p.sendOn(ctx, l)
		if ctx.Err() != nil {
			return
		}
	}
}

// sendOn sends on one connection until it is lost, an error asks for a
// restart from the queue's head, or ctx is done.
func (p *Publisher) sendOn(ctx context.Context, l *link) {
	var (
		pending []inflight
		next    = p.queue.Head()
	)
	for {
		for len(pending) < window {
			r, ok, err := p.queue.ReadFrom(next, nil) // a fresh buffer: paho keeps the payload
			var corrupt *diskqueue.CorruptError
			if errors.As(err, &corrupt) {
				p.corrupt.Add(1)
				p.log.Warn("queued message corrupt on disk: skipped", "id", corrupt.ID, "segment", corrupt.Segment)
				continue
			}
			if err != nil {
				if !errors.Is(err, diskqueue.ErrClosed) {
					p.log.Error("read queued message", "err", err)
				}
				p.sleep(ctx, l, time.Second)
				return
			}
			if !ok {
				break
			}
			topic, qos, retained, payload, err := decodeRecord(r.Data)
			if err != nil {
				p.log.Error("corrupt queued message: dropped", "id", r.ID, "err", err)
				p.queue.Ack(r.ID)
				p.dropped.Add(1)
				next = r.ID + 1
				continue
			}
			pending = append(pending, inflight{id: r.ID, topic: topic, tok: p.client.Publish(topic, qos, retained, payload)})
			next = r.ID + 1
		}
		if len(pending) == 0 {
			select {
			case <-p.queue.Notify():
				continue
			case <-l.lost:
				return
			case <-ctx.Done():
				return
			}
		}
		first := pending[0]
		select {
		case <-first.tok.Done():
		case <-l.lost:
			return
		case <-ctx.Done():
			return
		}
		if err := first.tok.Error(); err != nil {
			// Resend from the head (the unacknowledged ones may arrive twice).
			p.publishErrors.Add(1)
			p.log.Warn("publish not acknowledged; will resend", "err", err)
			p.sleep(ctx, l, 200*time.Millisecond)
			return
		}
		p.queue.Ack(first.id)
		p.published.Add(1)
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("published", "topic", first.topic, "queue_id", first.id)
		}
		pending[0] = inflight{}
		pending = pending[1:]
	}
}

func (p *Publisher) sleep(ctx context.Context, l *link, d time.Duration) {
	select {
	case <-time.After(d):
	case <-l.lost:
	case <-ctx.Done():
	}
}

// maintainLoop fsyncs the queue in batches and publishes periodic stats.
func (p *Publisher) maintainLoop(ctx context.Context) {
	defer p.wg.Done()
	sync := time.NewTicker(syncInterval)
	defer sync.Stop()
	var statsC <-chan time.Time
	if p.stats != nil && p.cfg.StatsInterval > 0 {
		t := time.NewTicker(p.cfg.StatsInterval)
		defer t.Stop()
		statsC = t.C
	}
	for {
		select {
		case <-sync.C:
			if err := p.queue.Sync(); err != nil && !errors.Is(err, diskqueue.ErrClosed) {
				if ok, n := p.syncLog.allow(time.Now()); ok {
					p.log.Error("sync message queue", "err", err, "repeats_not_logged", n)
				}
			}
		case <-statsC:
			if err := p.PublishStats(p.stats()); err != nil && !errors.Is(err, ErrClosed) {
				p.log.Warn("publish stats", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// PublishDetections numbers msg (per camera, persisted) and appends it to
// the disk queue; the sender delivers it in order once a broker is
// connected. It never waits for the network. When the queue (or the disk)
// is full the oldest queued messages are dropped, counted and logged; a
// message that finds the disk full with nothing left to free is dropped the
// same way and is not an error (the caller would log it once per message).
func (p *Publisher) PublishDetections(msg Detections) error {
	return p.publishNumbered(msg.Camera, "detections", byte(p.cfg.QoS), func(seq uint64) ([]byte, error) {
		return encodeDetections(p.device, seq, &msg)
	})
}

// publishNumbered takes the camera's next seq, encodes the message with it and queues it on
// <camera>/<kind>, all under encMu so that seq order is queue order.
func (p *Publisher) publishNumbered(camera, kind string, qos byte, encode func(seq uint64) ([]byte, error)) error {
	if err := p.accepting("camera name", camera); err != nil {
		return err
	}
	p.encMu.Lock()
	defer p.encMu.Unlock()
	seq, err := p.seqs.take(camera)
	if err != nil && diskqueue.IsNoSpace(err) {
		// The counters need a few bytes now and then; on a full disk the queue gives up its
		// oldest segment for them, as it would for a message.
		if n := p.queue.Reclaim(); n > 0 {
			p.noteDrops(n, nil)
		}
		seq, err = p.seqs.take(camera)
	}
	if err != nil {
		if diskqueue.IsNoSpace(err) {
			p.noteDrops(0, fmt.Errorf("%w: %w", diskqueue.ErrNoSpace, err))
			return nil // counted and logged (at most every logEvery) by noteDrops
		}
		return fmt.Errorf("publish: %w", err)
	}
	payload, err := encode(seq)
	if err != nil {
		return fmt.Errorf("publish: camera %s %s seq %d: %w", camera, kind, seq, err)
	}
	if err := p.enqueue(p.camPrefix+camera+"/"+kind, qos, false, payload); err != nil {
		return fmt.Errorf("publish: queue camera %s seq %d: %w", camera, seq, err)
	}
	return nil
}

// enqueue appends one message to the disk queue, counting what overflow drops. A message
// that finds the disk full with nothing left to free is dropped and counted the same way,
// and is not an error: the caller would log it once per message.
func (p *Publisher) enqueue(topic string, qos byte, retained bool, payload []byte) error {
	dropped, err := p.queue.Append(encodeRecord(topic, qos, retained, payload))
	if dropped > 0 || err != nil {
		p.noteDrops(dropped, err)
	}
	if errors.Is(err, diskqueue.ErrNoSpace) {
		return nil // counted and logged (at most every logEvery) by noteDrops
	}
	if err != nil {
		return err
	}
	p.queued.Add(1)
	return nil
}

// noteDrops counts messages the queue dropped (dropped oldest ones, plus the new one when
// err is set), marks the queue degraded and logs it at most once per logEvery, with counts.
func (p *Publisher) noteDrops(dropped int, err error) {
	if err != nil {
		dropped++
	}
	p.dropped.Add(uint64(dropped))
	now := time.Now()
	p.lastDrop.Store(now.UnixNano())
	st := p.queue.Stats()
	if errors.Is(err, diskqueue.ErrNoSpace) || st.DroppedNoSpace > p.fullDropsSeen.Swap(st.DroppedNoSpace) {
		p.lastDiskFull.Store(now.UnixNano())
	}
	ok, _ := p.dropLog.allow(now)
	if !ok {
		return
	}
	total := p.dropped.Load()
	since := total - p.droppedLogged.Swap(total)
	args := []any{"dropped_since_last_line", since, "dropped_total", total, "queue_limit_mb", p.cfg.Queue.MaxMB,
		"queued_messages", st.Records}
	switch {
	case err != nil && !errors.Is(err, diskqueue.ErrNoSpace):
		p.log.Error("cannot queue messages: dropping them", append(args, "err", err)...)
	case p.diskFullRecently(now):
		p.log.Warn("disk full: dropping the oldest queued messages to keep the newest; free space on the state_dir file system", append(args, "err", err)...)
	default:
		p.log.Warn("message queue full (mqtt.queue.max_mb): dropping the oldest messages", args...)
	}
}

// degradedFor is how long the queue counts as degraded after its last drop.
const degradedFor = 2 * logEvery

func (p *Publisher) diskFullRecently(now time.Time) bool {
	t := p.lastDiskFull.Load()
	return t != 0 && now.Sub(time.Unix(0, t)) < degradedFor
}

// QueueHealth says whether the queue keeps every message: "" when it does, otherwise why not
// (it dropped messages within the last 20 s).
func (p *Publisher) QueueHealth() string {
	now := time.Now()
	t := p.lastDrop.Load()
	if t == 0 || now.Sub(time.Unix(0, t)) >= degradedFor {
		return ""
	}
	if p.diskFullRecently(now) {
		return "degraded: dropping messages: the state_dir file system is full"
	}
	return "degraded: dropping the oldest messages: the queue is at mqtt.queue.max_mb"
}

// PublishStats publishes s on …/stats if a broker is connected; otherwise it
// is skipped (counted): stale stats are worth nothing.
func (p *Publisher) PublishStats(s Stats) error {
	p.mu.Lock()
	closed, connected := p.closed, p.link != nil
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !connected {
		p.statsSkipped.Add(1)
		return nil
	}
	qs := p.queue.Stats()
	payload, err := encodeStats(p.device, time.Now(), &s, wireQueue{
		Depth: qs.Records, Bytes: qs.Bytes, Dropped: p.dropped.Load(), Published: p.published.Load(),
	})
	if err != nil {
		return fmt.Errorf("publish: stats: %w", err)
	}
	p.client.Publish(p.statsTopic, byte(p.cfg.StatsQoS), false, payload)
	p.statsPublished.Add(1)
	return nil
}

// Close stops the publisher, bounded by ctx: while connected it first waits
// for the queue to drain, then publishes the retained "stopped" status and
// disconnects. Whatever is still queued stays on disk for the next run.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	started := p.started
	p.mu.Unlock()
	var errs []error
	if started {
		p.drain(ctx)
		p.cancel()
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("publish: close: %w", ctx.Err()))
		}
		if p.client.IsConnectionOpen() {
			tok := p.client.Publish(p.statusTopic, byte(p.cfg.StatusQoS), true, "stopped")
			select {
			case <-tok.Done():
				if err := tok.Error(); err != nil {
					errs = append(errs, fmt.Errorf("publish: stopped status: %w", err))
				}
			case <-ctx.Done():
			}
			p.client.Disconnect(250)
		}
		if p.embedded != nil {
			stopped := make(chan error, 1)
			go func() { stopped <- stopEmbedded(p.embedded) }()
			select {
			case err := <-stopped:
				if err != nil {
					errs = append(errs, fmt.Errorf("publish: close embedded broker: %w", err))
				}
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("publish: embedded broker still stopping: %w", ctx.Err()))
			}
		}
	}
	st := p.queue.Stats()
	if err := p.queue.Close(); err != nil {
		errs = append(errs, fmt.Errorf("publish: %w", err))
	}
	if err := p.seqs.close(); err != nil {
		errs = append(errs, fmt.Errorf("publish: %w", err))
	}
	if st.Records > 0 {
		p.log.Info("messages kept on disk for the next run", "messages", st.Records, "bytes", st.Bytes)
	}
	return errors.Join(errs...)
}

// drain waits while connected until the queue is empty or ctx is done.
func (p *Publisher) drain(ctx context.Context) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		l, _ := p.currentLink()
		if l == nil || p.queue.Stats().Records == 0 {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// EmbeddedAddr is the address the embedded broker listens on ("" when off).
func (p *Publisher) EmbeddedAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.embAddr
}

// Queue records: [qos][retained][2-byte topic length][topic][payload].
func encodeRecord(topic string, qos byte, retained bool, payload []byte) []byte {
	b := make([]byte, 0, 4+len(topic)+len(payload))
	var r byte
	if retained {
		r = 1
	}
	b = append(b, qos, r)
	b = binary.BigEndian.AppendUint16(b, uint16(len(topic)))
	b = append(b, topic...)
	return append(b, payload...)
}

func decodeRecord(b []byte) (topic string, qos byte, retained bool, payload []byte, err error) {
	if len(b) < 4 {
		return "", 0, false, nil, errors.New("record shorter than its header")
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if len(b) < 4+n || b[0] > 2 {
		return "", 0, false, nil, errors.New("record header out of range")
	}
	return string(b[4 : 4+n]), b[0], b[1] == 1, b[4+n:], nil
}
