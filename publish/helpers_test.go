package publish_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/stardetr/stardetr/detection"
	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// received is the decoded wire message, as a consumer would read it.
type received struct {
	V          int    `json:"v"`
	Device     string `json:"device"`
	Camera     string `json:"camera"`
	Seq        uint64 `json:"seq"`
	Frame      uint64 `json:"frame"`
	Detections []struct {
		Label string     `json:"label"`
		Score float64    `json:"score"`
		Box   [4]float64 `json:"box"`
	} `json:"detections"`
}

// seqs returns the seq numbers of the detection messages of camera, in arrival order.
func seqs(t testing.TB, msgs []testenv.Received, camera string) []uint64 {
	t.Helper()
	var out []uint64
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/"+camera+"/detections") {
			continue
		}
		var d received
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatalf("message on %s is not JSON: %v", m.Topic, err)
		}
		out = append(out, d.Seq)
	}
	return out
}

// firstArrivals drops repeated seqs (at-least-once allows duplicates) and
// reports how many there were.
func firstArrivals(s []uint64) (uniq []uint64, dups int) {
	seen := map[uint64]bool{}
	for _, v := range s {
		if seen[v] {
			dups++
			continue
		}
		seen[v] = true
		uniq = append(uniq, v)
	}
	return uniq, dups
}

// checkContiguous fails unless got is exactly from, from+1, ..., to.
func checkContiguous(t testing.TB, got []uint64, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 {
		t.Fatalf("got %d distinct seqs, want %d (%d..%d)", len(got), to-from+1, from, to)
	}
	for i, v := range got {
		if v != from+uint64(i) {
			t.Fatalf("seq #%d is %d, want %d: lost or out of order (around %v)", i, v, from+uint64(i), got[max(0, i-3):min(len(got), i+3)])
		}
	}
}

// waitNewest waits until the subscriber has depth distinct seqs of camera cam and checks
// that they are exactly first … last: the newest messages, in order, none lost.
func waitNewest(t testing.TB, sub *testenv.Subscriber, depth int, first, last uint64) {
	t.Helper()
	msgs := sub.WaitFor(t, 30*time.Second, "the newest messages", func(r []testenv.Received) bool {
		u, _ := firstArrivals(seqs(t, r, "cam"))
		return len(u) >= depth
	})
	uniq, _ := firstArrivals(seqs(t, msgs, "cam"))
	checkContiguous(t, uniq, first, last)
}

// metricValue gathers p's metrics through a pedantic registry (which also checks them) and
// returns the value of the unlabelled counter or gauge name, or the sum of its series.
func metricValue(t testing.TB, p *publish.Publisher, name string) float64 {
	t.Helper()
	return labelledValue(t, p, name, "", "")
}

// labelledValue is metricValue of the series whose label has value (all series when label is
// "": their sum).
func labelledValue(t testing.TB, p *publish.Publisher, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(p); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		sum, found := 0.0, false
		for _, m := range f.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			found = true
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			} else {
				sum += m.GetGauge().GetValue()
			}
		}
		if found {
			return sum
		}
	}
	t.Fatalf("no %s{%s=%q} metric", name, label, value)
	return 0
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newPublisher builds and starts a publisher; Close runs at cleanup unless the test closed it.
func newPublisher(t testing.TB, cfg publish.Config, stateDir string, start bool) *publish.Publisher {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := publish.New(cfg, publish.Options{
		DeviceID: "dev1", StateDir: stateDir, Logger: testLogger(t),
		RetryDelays: []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	if start {
		if err := p.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func waitConnected(t testing.TB, p *publish.Publisher) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "the publisher to connect", func() bool { return p.Metrics().Connected })
}

// frame makes a detections message of about size bytes of JSON.
func frame(camera string, n uint64, dets int) publish.Detections {
	m := publish.Detections{
		Camera: camera, Frame: n, Time: time.Date(2025, 3, 1, 12, 0, 0, int(n)*1e6, time.UTC),
		Width: 1920, Height: 1080,
		Model:   publish.Model{Name: "starnet-freqfusion-rtdetr", SHA256: "0123456789ab"},
		Latency: publish.Latency{Capture: 1.5, Preprocess: 3.25, Infer: 480.123, Decode: 0.5, Publish: 0.05},
	}
	for i := range dets {
		m.Detections = append(m.Detections, detection.Detection{
			ClassID: i % 3, Label: []string{"person", "car", "bicycle"}[i%3], Score: 0.5 + float32(i%50)/100,
			Box: [4]float32{10.123 + float32(i), 20, 110.5, 220.25},
		})
	}
	return m
}

// schemas compiles publish/schema/*.v1.json with a real JSON Schema implementation.
func schemas(t testing.TB) (det, stats *jsonschema.Schema) {
	t.Helper()
	return loadSchema(t, "detections.v1.json"), loadSchema(t, "stats.v1.json")
}

// loadSchema compiles one schema of publish/schema.
func loadSchema(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	f, err := os.Open(filepath.Join("schema", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, payload []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(payload)))
	if err != nil {
		t.Fatalf("not JSON: %v: %s", err, payload)
	}
	if err := s.Validate(doc); err != nil {
		t.Fatalf("message does not match its schema: %v\n%s", err, payload)
	}
}

// testPKI generates a CA and a server certificate for 127.0.0.1/localhost.
type testPKI struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
}

func newPKI(t testing.TB, dir, name string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	p := testPKI{
		caFile:   filepath.Join(dir, name+"-ca.pem"),
		certFile: filepath.Join(dir, name+"-server.pem"),
		keyFile:  filepath.Join(dir, name+"-server.key"),
		pool:     x509.NewCertPool(),
	}
	p.pool.AddCert(ca)
	write := func(path, typ string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", srvDER)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	return p
}

func itoa(n int) string { return strconv.Itoa(n) }
