package testenv

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MosquittoBin is Debian's broker, installed by scripts/setup.
const MosquittoBin = "/usr/sbin/mosquitto"

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Mosquitto is a real broker started by the test on 127.0.0.1 with persistence on, so a
// SIGTERM'd broker keeps its queued messages across Stop and Start.
type Mosquitto struct {
	t    testing.TB
	Dir  string
	Port int
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// NewMosquitto writes a broker config (extra lines go into the listener's section) and
// stops the broker at the end of the test. It does not start the broker.
func NewMosquitto(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	if _, err := os.Stat(MosquittoBin); err != nil {
		t.Fatalf("%s is missing: run `make setup` (apt-get install mosquitto)", MosquittoBin)
	}
	b := &Mosquitto{t: t, Dir: t.TempDir(), Port: FreePort(t)}
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	conf := fmt.Sprintf(`user root
persistence true
persistence_location %s/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
per_listener_settings false
listener %d 127.0.0.1
%s
`, b.Dir, b.Port, extra)
	if !strings.Contains(extra, "allow_anonymous") {
		conf += "allow_anonymous true\n"
	}
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// StartMosquitto starts a broker with the given extra config lines.
func StartMosquitto(t testing.TB, extra string) *Mosquitto {
	b := NewMosquitto(t, extra)
	b.Start()
	return b
}

// URL is the broker's address with the given scheme (mqtt, mqtts).
func (b *Mosquitto) URL(scheme string) string {
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, b.Port)
}

// Start runs the broker and waits until it accepts connections.
func (b *Mosquitto) Start() {
	b.t.Helper()
	logf, err := os.OpenFile(filepath.Join(b.Dir, "mosquitto.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.t.Fatal(err)
	}
	defer logf.Close()
	b.cmd = exec.Command(MosquittoBin, "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("start mosquitto: %v", err)
	}
	b.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(b.cmd, b.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-b.done:
			log, _ := os.ReadFile(filepath.Join(b.Dir, "mosquitto.log"))
			b.t.Fatalf("mosquitto exited at start:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.t.Fatalf("mosquitto does not listen on port %d", b.Port)
}

// Stop sends SIGTERM (mosquitto saves its persistence file) and waits.
func (b *Mosquitto) Stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Received is one message a Subscriber got.
type Received struct {
	Topic    string
	Payload  []byte
	Retained bool
	At       time.Time
}

// Subscriber is a paho client with a persistent session (CleanSession false, its own client
// id, QoS 1) that reconnects on its own, so that it misses nothing across a broker restart.
type Subscriber struct {
	client mqtt.Client
	mu     sync.Mutex
	msgs   []Received
	notify chan struct{}
}

// Subscribe connects to brokerURL and subscribes to topic (wildcards allowed).
func Subscribe(t testing.TB, brokerURL, topic string, tlsConf *tls.Config) *Subscriber {
	t.Helper()
	s := &Subscriber{notify: make(chan struct{}, 1)}
	o := mqtt.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("test-sub-%d", time.Now().UnixNano())).
		SetCleanSession(false).SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond).
		SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetResumeSubs(true).SetOrderMatters(true).SetKeepAlive(5 * time.Second)
	if tlsConf != nil {
		o.SetTLSConfig(tlsConf)
	}
	o.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {})
	subscribed := make(chan struct{}, 1)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, Received{m.Topic(), append([]byte(nil), m.Payload()...), m.Retained(), time.Now()})
			s.mu.Unlock()
			select {
			case s.notify <- struct{}{}:
			default:
			}
		})
		go func() {
			tok.Wait()
			select {
			case subscribed <- struct{}{}:
			default:
			}
		}()
	})
	s.client = mqtt.NewClient(o)
	tok := s.client.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect to %s: %v", brokerURL, tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(100) })
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatalf("subscribe to %s on %s: no SUBACK in 10s", topic, brokerURL)
	}
	return s
}

// Messages returns what arrived so far, in arrival order.
func (s *Subscriber) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.msgs...)
}

// WaitFor waits until cond holds for the received messages, failing the test after timeout.
func (s *Subscriber) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]Received) bool) []Received {
	t.Helper()
	deadline := time.After(timeout)
	for {
		msgs := s.Messages()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-s.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; got %d messages", timeout, what, len(msgs))
		}
	}
}
