package publish_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// benchSub records when each seq of one topic arrives.
type benchSub struct {
	mu    sync.Mutex
	topic string
	recv  []time.Time
	count int
	size  int // bytes of the last payload
	done  chan struct{}
}

func (s *benchSub) reset(topic string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topic, s.recv, s.count, s.done = topic, make([]time.Time, n), 0, make(chan struct{})
}

func (s *benchSub) handle(_ mqtt.Client, m mqtt.Message) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Topic() != s.topic {
		return
	}
	p := m.Payload()
	i := bytes.Index(p, []byte(`"seq":`))
	if i < 0 {
		return
	}
	j := i + 6
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		j++
	}
	seq, err := strconv.Atoi(string(p[i+6 : j]))
	if err != nil || seq < 1 || seq > len(s.recv) || !s.recv[seq-1].IsZero() {
		return
	}
	s.recv[seq-1] = now
	s.size = len(p)
	s.count++
	if s.count == len(s.recv) {
		close(s.done)
	}
}

// BenchmarkPublish measures, against mosquitto on loopback with ~1 KB
// messages: burst throughput (msg/s from the first PublishDetections call
// until the subscriber has all of them) and, paced at 240 msg/s (30 fps × 8
// cameras), the added latency from the PublishDetections call to the
// subscriber's receipt.
func BenchmarkPublish(b *testing.B) {
	br := testenv.StartMosquitto(b, "")
	sub := &benchSub{}
	o := mqtt.NewClientOptions().AddBroker(br.URL("mqtt")).SetClientID("bench-sub").SetOrderMatters(false)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe("stardetr/#", 1, sub.handle); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	msg := frame("cam", 1, 8)
	run := 0
	for _, qos := range []int{0, 1} {
		for _, paced := range []bool{false, true} {
			mode := "burst"
			if paced {
				mode = "paced240"
			}
			b.Run(fmt.Sprintf("publisher/qos%d/%s", qos, mode), func(b *testing.B) {
				run++
				device := fmt.Sprintf("bench%d", run)
				cfg := publish.DefaultConfig()
				cfg.Brokers = []string{br.URL("mqtt")}
				cfg.QoS = qos
				p, err := publish.New(cfg, publish.Options{DeviceID: device, StateDir: b.TempDir(), Logger: quietLogger(b)})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				if err := p.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				waitConnected(b, p)
				measure(b, sub, "stardetr/"+device+"/cam/detections", paced, func(i int) error {
					msg.Frame = uint64(i)
					return p.PublishDetections(msg)
				})
			})
			// Baseline: the same bytes through a bare paho client (no disk
			// queue, no seq), waiting for nothing, to show what the publisher adds.
			b.Run(fmt.Sprintf("bare-paho/qos%d/%s", qos, mode), func(b *testing.B) {
				run++
				topic := fmt.Sprintf("stardetr/bare%d/cam/detections", run)
				pc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(br.URL("mqtt")).SetClientID(fmt.Sprintf("bare%d", run)))
				if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					b.Fatal(tok.Error())
				}
				defer pc.Disconnect(100)
				var last mqtt.Token
				measure(b, sub, topic, paced, func(i int) error {
					payload := []byte(fmt.Sprintf(`{"seq":%d,"pad":"%s"}`, i+1, pad))
					last = pc.Publish(topic, byte(qos), false, payload)
					return nil
				})
				_ = last
			})
		}
	}
}

var pad = string(bytes.Repeat([]byte("x"), 860))

// measure runs b.N publishes (paced at 240/s or as fast as possible) and
// reports msg/s (burst) or the latency percentiles (paced).
func measure(b *testing.B, sub *benchSub, topic string, paced bool, publish func(i int) error) {
	sub.reset(topic, b.N)
	sent := make([]time.Time, b.N)
	var tick *time.Ticker
	if paced {
		tick = time.NewTicker(time.Second / 240)
		defer tick.Stop()
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if paced {
			<-tick.C
		}
		sent[i] = time.Now()
		if err := publish(i); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-sub.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("subscriber got %d of %d", sub.count, b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	b.SetBytes(int64(sub.size))
	if !paced {
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
		return
	}
	lat := make([]float64, b.N)
	for i := range lat {
		lat[i] = float64(sub.recv[i].Sub(sent[i]).Microseconds()) / 1000
	}
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "ms-p50")
	b.ReportMetric(lat[len(lat)*99/100], "ms-p99")
}

func quietLogger(b *testing.B) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{b}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
