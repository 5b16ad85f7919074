package publish

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/secret"
)

// Config is the `mqtt:` section of the daemon's configuration. Field tags
// match the YAML keys; DefaultConfig gives the defaults.
type Config struct {
	// Brokers are tried in order on every connection attempt:
	// mqtt://host[:1883], mqtts://host[:8883], ws://host[:80]/path, wss://host[:443]/path.
	Brokers  []string       `mapstructure:"brokers"`
	Embedded EmbeddedConfig `mapstructure:"embedded"`
	// TopicPrefix is the first topic level(s); topics are <prefix>/<device>/...
	TopicPrefix string `mapstructure:"topic_prefix"`
	// QoS for detection messages (0, 1 or 2).
	QoS int `mapstructure:"qos"`
	// StatusQoS for the retained status topic (0, 1 or 2).
	StatusQoS int `mapstructure:"status_qos"`
	// StatsQoS for periodic stats (0, 1 or 2).
	StatsQoS int `mapstructure:"stats_qos"`
	// ClientID defaults to stardetr-<device id>: stable, so a broker sees one client per device.
	ClientID     string      `mapstructure:"client_id"`
	Username     string      `mapstructure:"username"`
	Password     string      `mapstructure:"password"`
	PasswordFile string      `mapstructure:"password_file"`
	TLS          TLSConfig   `mapstructure:"tls"`
	Queue        QueueConfig `mapstructure:"queue"`
	// StatsInterval between stats messages when Options.Stats is set; 0 turns them off.
	StatsInterval  time.Duration `mapstructure:"stats_interval"`
	Keepalive      time.Duration `mapstructure:"keepalive"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`

	// read is what Validate read from the files above; New uses it instead of reading them
	// again (copies of a validated Config share it).
	read *credentials
}

// EmbeddedConfig starts an MQTT broker inside the process.
type EmbeddedConfig struct {
	Enabled bool   `mapstructure:"enabled"`
	Listen  string `mapstructure:"listen"`
}

// TLSConfig applies to mqtts:// and wss:// brokers.
type TLSConfig struct {
	CA                 string `mapstructure:"ca"`   // PEM file of CAs; empty: the system's
	Cert               string `mapstructure:"cert"` // PEM client certificate (with Key)
	Key                string `mapstructure:"key"`  // PEM client key; must not be world-readable
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// QueueConfig bounds the on-disk queue of unacknowledged detection messages.
type QueueConfig struct {
	MaxMB int `mapstructure:"max_mb"`
}

// Ranges accepted by Validate.
const (
	minQueueMB        = 1
	maxQueueMB        = 1 << 20
	minKeepalive      = time.Second
	maxKeepalive      = 65535 * time.Second
	minConnectTimeout = 100 * time.Millisecond
	maxConnectTimeout = 10 * time.Minute
	minStatsInterval  = 100 * time.Millisecond
)

// DefaultConfig returns the defaults documented in README.md.
func DefaultConfig() Config {
	return Config{
		Brokers:        []string{"mqtt://localhost:1883"},
		Embedded:       EmbeddedConfig{Listen: "127.0.0.1:1883"},
		TopicPrefix:    "stardetr",
		QoS:            1,
		StatusQoS:      1,
		StatsQoS:       0,
		Queue:          QueueConfig{MaxMB: 64},
		StatsInterval:  10 * time.Second,
		Keepalive:      30 * time.Second,
		ConnectTimeout: 10 * time.Second,
	}
}

// Validate checks every key and the files they name (password file, CA, client certificate
// and key): every problem, each naming its key within the section (confcheck).
func (c *Config) Validate() error {
	cr, err := c.validate()
	c.read = cr
	return err
}

// credentials are what validate read from the files the section names, each with the path
// it came from: a file is read again only when its key names another one.
type credentials struct {
	passwordFile string // mqtt.password_file; "" none read
	password     string
	caFile       string         // mqtt.tls.ca; "" none read
	rootCAs      *x509.CertPool // nil: the system's
	certFile     string         // mqtt.tls.cert; "" none read
	keyFile      string
	cert         *tls.Certificate
}

// validate is Validate, also returning what it read; it reuses what a Validate of this
// Config (or of the one it was copied from) read.
func (c *Config) validate() (*credentials, error) {
	var l confcheck.List
	prev := c.read
	if prev == nil {
		prev = &credentials{}
	}
	cr := &credentials{}
	c.checkBrokers(&l)
	c.checkTopicsAndQoS(&l)
	c.readLogin(&l, prev, cr)
	c.readTLS(&l, prev, cr)
	c.checkLimits(&l)
	return cr, l.Err()
}

// checkBrokers checks brokers and embedded.listen.
func (c *Config) checkBrokers(l *confcheck.List) {
	if len(c.Brokers) == 0 && !c.Embedded.Enabled {
		l.Add("brokers", "empty: give at least one broker URL such as mqtt://localhost:1883")
	}
	for i, b := range c.Brokers {
		if _, err := brokerURL(b); err != nil {
			l.Add(fmt.Sprintf("brokers[%d]", i), "%v", err)
		}
	}
	if c.Embedded.Enabled {
		if _, _, err := net.SplitHostPort(c.Embedded.Listen); err != nil {
			l.Add("embedded.listen", "%q is not host:port (e.g. 127.0.0.1:1883): %v", c.Embedded.Listen, err)
		}
	}
}

// checkTopicsAndQoS checks topic_prefix and the QoS levels.
func (c *Config) checkTopicsAndQoS(l *confcheck.List) {
	if err := CheckTopicPrefix(c.TopicPrefix); err != nil {
		l.Add("topic_prefix", "%v", err)
	}
	for _, q := range []struct {
		key string
		v   int
	}{{"qos", c.QoS}, {"status_qos", c.StatusQoS}, {"stats_qos", c.StatsQoS}} {
		if q.v < 0 || q.v > 2 {
			l.Add(q.key, "%d is out of range: use 0, 1 or 2", q.v)
		}
	}
}

// readLogin checks client_id, username and password, and reads password_file into cr
// (taking it from prev where prev read the same file).
func (c *Config) readLogin(l *confcheck.List, prev, cr *credentials) {
	if strings.ContainsAny(c.ClientID, "+#/") {
		l.Add("client_id", "%q must not contain '+', '#' or '/'", c.ClientID)
	}
	if c.Password != "" && c.PasswordFile != "" {
		l.Add("password", "set either mqtt.password or mqtt.password_file, not both")
	}
	switch {
	case c.PasswordFile == "":
	case prev.passwordFile == c.PasswordFile:
		cr.passwordFile, cr.password = prev.passwordFile, prev.password
	default:
		if pw, err := secret.Read(c.PasswordFile); err != nil {
			l.Add("password_file", "%v", err)
		} else {
			cr.passwordFile, cr.password = c.PasswordFile, pw
		}
	}
	if (c.Username == "") && (c.Password != "" || c.PasswordFile != "") {
		l.Add("username", "empty while a password is set: set mqtt.username too")
	}
}

// readTLS reads tls.ca and the client certificate (tls.cert, tls.key) into cr, taking each
// from prev where prev read the same files.
func (c *Config) readTLS(l *confcheck.List, prev, cr *credentials) {
	switch {
	case c.TLS.CA == "":
	case prev.caFile == c.TLS.CA:
		cr.caFile, cr.rootCAs = prev.caFile, prev.rootCAs
	default:
		if pool, err := loadCAPool(c.TLS.CA); err != nil {
			l.Add("tls.ca", "%v", err)
		} else {
			cr.caFile, cr.rootCAs = c.TLS.CA, pool
		}
	}
	switch {
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		l.Add("tls.cert", "mqtt.tls.cert and mqtt.tls.key go together: set both or neither")
	case c.TLS.Cert == "":
	case prev.certFile == c.TLS.Cert && prev.keyFile == c.TLS.Key:
		cr.certFile, cr.keyFile, cr.cert = prev.certFile, prev.keyFile, prev.cert
	default:
		if cert, err := loadClientCert(c.TLS.Cert, c.TLS.Key); err != nil {
			l.Add("tls.key", "%v", err)
		} else {
			cr.certFile, cr.keyFile, cr.cert = c.TLS.Cert, c.TLS.Key, &cert
		}
	}
}

// checkLimits checks the ranges of queue.max_mb, stats_interval, keepalive and connect_timeout.
func (c *Config) checkLimits(l *confcheck.List) {
	if c.Queue.MaxMB < minQueueMB || c.Queue.MaxMB > maxQueueMB {
		l.Add("queue.max_mb", "%d is out of range: %d to %d MB", c.Queue.MaxMB, minQueueMB, maxQueueMB)
	}
	if c.StatsInterval != 0 && c.StatsInterval < minStatsInterval {
		l.Add("stats_interval", "%v is out of range: 0 (off) or at least %v", c.StatsInterval, minStatsInterval)
	}
	if c.Keepalive < minKeepalive || c.Keepalive > maxKeepalive {
		l.Add("keepalive", "%v is out of range: %v to %v", c.Keepalive, minKeepalive, maxKeepalive)
	}
	if c.ConnectTimeout < minConnectTimeout || c.ConnectTimeout > maxConnectTimeout {
		l.Add("connect_timeout", "%v is out of range: %v to %v", c.ConnectTimeout, minConnectTimeout, maxConnectTimeout)
	}
}

// brokerURL parses a broker address and fills in the scheme's default port.
func brokerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", s, err)
	}
	var port string
	switch u.Scheme {
	case "mqtt":
		port = "1883"
	case "mqtts":
		port = "8883"
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	case "":
		return nil, fmt.Errorf("%q has no scheme: use mqtt://, mqtts://, ws:// or wss://", s)
	default:
		return nil, fmt.Errorf("unknown scheme %q: use mqtt://, mqtts://, ws:// or wss://", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q carries credentials: use mqtt.username and mqtt.password_file instead", u.Redacted())
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// checkTopicLevel checks a device id, camera name, zone or label used as one topic level
// (CheckTopicLevel), naming what it is.
func checkTopicLevel(what, s string) error {
	if err := CheckTopicLevel(s); err != nil {
		return fmt.Errorf("%s %w", what, err)
	}
	return nil
}

func loadCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

func loadClientCert(certFile, keyFile string) (tls.Certificate, error) {
	st, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("cannot read key: %w", err)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return tls.Certificate{}, fmt.Errorf("%s is readable by everyone (mode %04o): run chmod 600 %s", keyFile, st.Mode().Perm(), keyFile)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load client certificate %s and key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// tlsConfig builds the client TLS configuration from what validate read; nil when no broker
// needs TLS.
func (c Config) tlsConfig(cr *credentials) *tls.Config {
	need := false
	for _, b := range c.Brokers {
		if strings.HasPrefix(b, "mqtts:") || strings.HasPrefix(b, "wss:") {
			need = true
		}
	}
	if !need {
		return nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLS.ServerName,
		InsecureSkipVerify: c.TLS.InsecureSkipVerify, //nolint:gosec // explicit opt-out, logged as a warning
		RootCAs:            cr.rootCAs,
	}
	if cr.cert != nil {
		tc.Certificates = []tls.Certificate{*cr.cert}
	}
	return tc
}
