package publish

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/stardetr/stardetr/internal/confcheck"
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

// Publisher sends detections and stats to an MQTT broker without losing
// detections: see the package documentation. Its goroutines, started by Start,
// each have a file: connectLoop (connect.go) owns the connection; sendLoop
// and maintainLoop (send.go) deliver the disk queue and fsync it and publish
// stats; the Publish* methods and the queue's drop accounting (enqueue.go) run
// in the caller's goroutine.
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
	conn        *link         // the latest connect attempt's link, which paho's lost handler marks
	link        *link         // the connection the sender uses; nil while disconnected
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

// New validates cfg, opens the disk queue and the message counters in
// opts.StateDir (loading what a previous run left there) and returns a
// publisher that accepts messages but does not connect until Start. A
// publisher returned by New must be closed with Close.
func New(cfg Config, opts Options) (*Publisher, error) {
	cr, err := cfg.validate()
	if err := confcheck.In("mqtt", err); err != nil {
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
	p.tls = cfg.tlsConfig(cr)
	if p.tls != nil && p.tls.InsecureSkipVerify {
		p.log.Warn("TLS certificate verification is OFF (mqtt.tls.insecure_skip_verify): anyone on the path can read and forge messages")
	}
	p.passwd = cfg.Password
	if cfg.PasswordFile != "" {
		p.passwd = cr.password
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
			"torn_bytes_cut", rec.TruncatedBytes, "head_unreadable", rec.BadHead, "dir", qdir)
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
