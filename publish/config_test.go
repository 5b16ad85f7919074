package publish_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/publish"
)

func TestDefaultConfigIsValid(t *testing.T) {
	t.Parallel()
	cfg := publish.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	worldReadable := filepath.Join(dir, "pw-644")
	if err := os.WriteFile(worldReadable, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(worldReadable, 0o644); err != nil { // umask-proof
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*publish.Config)
		want []string // substrings of the error
	}{
		{"unknown scheme", func(c *publish.Config) { c.Brokers = []string{"mqtt://a:1", "foo://b"} },
			[]string{`mqtt.brokers[1]: unknown scheme "foo": use mqtt://, mqtts://, ws:// or wss://`}},
		{"no scheme", func(c *publish.Config) { c.Brokers = []string{"localhost:1883"} }, []string{"mqtt.brokers[0]"}},
		{"no host", func(c *publish.Config) { c.Brokers = []string{"mqtt://:1883"} }, []string{"mqtt.brokers[0]", "no host"}},
		{"credentials in URL", func(c *publish.Config) { c.Brokers = []string{"mqtt://u:p@h"} }, []string{"mqtt.brokers[0]", "password_file"}},
		{"no brokers", func(c *publish.Config) { c.Brokers = nil }, []string{"mqtt.brokers: empty"}},
		{"missing CA", func(c *publish.Config) { c.TLS.CA = filepath.Join(dir, "nope.pem") }, []string{"mqtt.tls.ca", "nope.pem", "no such file"}},
		{"CA not PEM", func(c *publish.Config) { c.TLS.CA = notPEM }, []string{"mqtt.tls.ca", "no PEM certificate"}},
		{"cert without key", func(c *publish.Config) { c.TLS.Cert = notPEM }, []string{"mqtt.tls.cert", "set both"}},
		{"unreadable password file", func(c *publish.Config) { c.Username, c.PasswordFile = "u", filepath.Join(dir, "missing") },
			[]string{"mqtt.password_file", "missing", "no such file"}},
		{"world-readable password file", func(c *publish.Config) { c.Username, c.PasswordFile = "u", worldReadable },
			[]string{"mqtt.password_file", "readable by everyone", "chmod 600 " + worldReadable}},
		{"password twice", func(c *publish.Config) {
			c.Username, c.Password, c.PasswordFile = "u", "p", worldReadable
		}, []string{"mqtt.password: set either"}},
		{"password without user", func(c *publish.Config) { c.Password = "p" }, []string{"mqtt.username"}},
		{"prefix with +", func(c *publish.Config) { c.TopicPrefix = "site/+/x" }, []string{"mqtt.topic_prefix", "wildcard"}},
		{"prefix with #", func(c *publish.Config) { c.TopicPrefix = "a#" }, []string{"mqtt.topic_prefix", "wildcard"}},
		{"prefix empty level", func(c *publish.Config) { c.TopicPrefix = "a//b" }, []string{"mqtt.topic_prefix", "empty topic level"}},
		{"qos 3", func(c *publish.Config) { c.QoS = 3 }, []string{"mqtt.qos: 3 is out of range: use 0, 1 or 2"}},
		{"stats qos", func(c *publish.Config) { c.StatsQoS = -1 }, []string{"mqtt.stats_qos"}},
		{"queue size", func(c *publish.Config) { c.Queue.MaxMB = 0 }, []string{"mqtt.queue.max_mb: 0 is out of range: 1 to "}},
		{"keepalive", func(c *publish.Config) { c.Keepalive = 0 }, []string{"mqtt.keepalive"}},
		{"connect timeout", func(c *publish.Config) { c.ConnectTimeout = time.Millisecond }, []string{"mqtt.connect_timeout"}},
		{"stats interval", func(c *publish.Config) { c.StatsInterval = time.Millisecond }, []string{"mqtt.stats_interval"}},
		{"embedded listen", func(c *publish.Config) { c.Embedded.Enabled, c.Embedded.Listen = true, "1883" }, []string{"mqtt.embedded.listen"}},
		{"client id", func(c *publish.Config) { c.ClientID = "a/b" }, []string{"mqtt.client_id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := publish.DefaultConfig()
			tc.edit(&cfg)
			err := confcheck.In("mqtt", cfg.Validate())
			if err == nil {
				t.Fatalf("Validate() accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			// New refuses it with the same error.
			if _, nerr := publish.New(cfg, publish.Options{DeviceID: "d", StateDir: t.TempDir()}); nerr == nil || nerr.Error() != err.Error() {
				t.Errorf("New() error %v, want %v", nerr, err)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	cfg := publish.DefaultConfig()
	for _, o := range []struct {
		opts publish.Options
		want string
	}{
		{publish.Options{DeviceID: "", StateDir: t.TempDir()}, "device id is empty"},
		{publish.Options{DeviceID: "a/b", StateDir: t.TempDir()}, `device id "a/b"`},
		{publish.Options{DeviceID: "d"}, "state directory is empty"},
	} {
		if _, err := publish.New(cfg, o.opts); err == nil || !strings.Contains(err.Error(), o.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", o.opts, err, o.want)
		}
	}
	p, err := publish.New(cfg, publish.Options{DeviceID: "d", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if err := p.PublishDetections(publish.Detections{Camera: "a+b"}); err == nil || !strings.Contains(err.Error(), "camera name") {
		t.Errorf("camera a+b: %v", err)
	}
	m := frame("cam", 1, 1)
	m.Detections[0].Score = nan()
	if err := p.PublishDetections(m); err == nil || !strings.Contains(err.Error(), "detections[0].score") {
		t.Errorf("NaN score: %v", err)
	}
}

func nan() float32 { z := float32(0); return z / z }

// Seq continues after a clean restart, and a corrupt counter file does not
// restart numbering at 1 (which would reuse numbers).
func TestSeqPersistsAndCorruptFileIsReplaced(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := publish.DefaultConfig()
	opts := publish.Options{DeviceID: "d", StateDir: dir}
	for run := range 2 {
		p, err := publish.New(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if err := p.PublishDetections(frame("cam", uint64(i), 0)); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "mqtt-seq.json"))
		if err != nil {
			t.Fatal(err)
		}
		want := `"cam":` + itoa(5*(run+1)+1)
		if !strings.Contains(string(b), want) {
			t.Fatalf("run %d: counters %s, want %s", run, b, want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "mqtt-seq.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A corrupt file is moved aside and numbering continues above anything used: the next
	// number is the clock in milliseconds, far above the 11 used here.
	before := uint64(time.Now().UnixMilli())
	p, err := publish.New(cfg, opts)
	if err != nil {
		t.Fatalf("corrupt counters: %v", err)
	}
	if err := p.PublishDetections(frame("cam", 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var f struct{ Next map[string]uint64 }
	b, err := os.ReadFile(filepath.Join(dir, "mqtt-seq.json"))
	if err != nil || json.Unmarshal(b, &f) != nil || f.Next["cam"] <= before {
		t.Fatalf("counters after a corrupt file: %s (%v), want cam above %d", b, err, before)
	}
}

// The mapstructure tags match the documented YAML keys (as the daemon decodes them through viper).
func TestConfigKeysDecode(t *testing.T) {
	t.Parallel()
	in := map[string]any{
		"brokers":         []string{"mqtts://broker:8883"},
		"embedded":        map[string]any{"enabled": true, "listen": "127.0.0.1:1884"},
		"topic_prefix":    "site1/stardetr",
		"qos":             2,
		"status_qos":      0,
		"stats_qos":       1,
		"client_id":       "cam-7",
		"username":        "u",
		"password":        "p",
		"password_file":   "",
		"tls":             map[string]any{"ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem", "server_name": "broker", "insecure_skip_verify": true},
		"queue":           map[string]any{"max_mb": 8},
		"stats_interval":  "5s",
		"keepalive":       "45s",
		"connect_timeout": "3s",
	}
	cfg := publish.DefaultConfig()
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		// AllowUnsetPointer: Config's one pointer field is what Validate read, not a key.
		Result: &cfg, ErrorUnused: true, ErrorUnset: true, AllowUnsetPointer: true,
		DecodeHook: mapstructure.StringToTimeDurationHookFunc(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(in); err != nil {
		t.Fatal(err)
	}
	want := publish.Config{
		Brokers: []string{"mqtts://broker:8883"}, Embedded: publish.EmbeddedConfig{Enabled: true, Listen: "127.0.0.1:1884"},
		TopicPrefix: "site1/stardetr", QoS: 2, StatusQoS: 0, StatsQoS: 1, ClientID: "cam-7", Username: "u", Password: "p",
		TLS:   publish.TLSConfig{CA: "/ca.pem", Cert: "/c.pem", Key: "/k.pem", ServerName: "broker", InsecureSkipVerify: true},
		Queue: publish.QueueConfig{MaxMB: 8}, StatsInterval: 5 * time.Second, Keepalive: 45 * time.Second, ConnectTimeout: 3 * time.Second,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("decoded %+v\nwant    %+v", cfg, want)
	}
}
