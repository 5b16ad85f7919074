package daemon

import (
	"context"
	"encoding/json"
	"image"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/internal/testenv"
)

// serveLive serves the rig's HTTP API and live view on a free loopback port, through the
// daemon's server with its default limits.
func serveLive(t *testing.T, r *rig, auth *HTTPAuthConfig) string {
	t.Helper()
	return serveLiveWith(t, r, auth, defaultHTTPLimits(DefaultConfig().HTTP.MaxConnections))
}

// serveLiveWith is serveLive with the server's limits given.
func serveLiveWith(t *testing.T, r *rig, auth *HTTPAuthConfig, lim httpLimits) string {
	t.Helper()
	s := &service{cfg: r.cfg, pipe: r.pipe, sink: r.sink, log: r.sink.log}
	if auth != nil {
		s.cfg.HTTP.Auth = *auth
	}
	h, err := s.handler(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(ln, h, lim, r.sink.log)
	srv.RegisterOnShutdown(s.live.cancel)
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

func screenshot(t *testing.T, url string) image.Image { return testenv.Screenshot(t, url) }

func rgb(img image.Image, x, y int) (int, int, int) { return testenv.RGB(img, x, y) }

// detectionBox is the union of the green box edges the live view draws (testenv.DetectionBoxes).
func detectionBox(img image.Image) (image.Rectangle, bool) {
	runs, box := testenv.DetectionBoxes(img, 25)
	return box, len(runs) > 0
}

// The live view in a real browser: the page at / shows the camera's annotated stream; two
// screenshots a second apart differ (the box moves), and the box's colour (red) fills the
// detection box drawn around it.
func TestLiveViewChromium(t *testing.T) {
	r := startRig(t, true)
	r.sub.WaitFor(t, 30*time.Second, "a new event", func(ms []testenv.Received) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/events") {
				return true
			}
		}
		return false
	})
	base := serveLive(t, r, nil)
	// The clip shows the box 8 s of every 10: take pictures until one shows it, then one
	// a second or more later that shows it too.
	shot := func(after time.Time) (image.Image, image.Rectangle) {
		deadline := time.Now().Add(30 * time.Second)
		// Each try gives the stream's first frame twice as long to arrive as the one before
		// (3 s, 6 s, 12 s): at load 20, 3 s was not enough for any of ten tries.
		wait := 3 * time.Second
		for time.Now().Before(deadline) {
			if d := time.Until(after); d > 0 {
				time.Sleep(d) // pacing the pictures, not waiting for a result
			}
			img := testenv.ScreenshotAfter(t, base+"/", wait)
			wait = min(2*wait, 12*time.Second)
			if box, ok := detectionBox(img); ok {
				return img, box
			}
		}
		t.Fatal("no screenshot within 30 s shows a detection box")
		return nil, image.Rectangle{}
	}
	first, b1 := shot(time.Now())
	second, b2 := shot(time.Now().Add(time.Second))
	for i, c := range []struct {
		img image.Image
		box image.Rectangle
	}{{first, b1}, {second, b2}} {
		p := image.Pt((c.box.Min.X+c.box.Max.X)/2, (c.box.Min.Y+c.box.Max.Y)/2)
		if r, g, b := rgb(c.img, p.X, p.Y); r < 180 || g > 80 || b > 80 {
			t.Errorf("screenshot %d: the centre %v of the detection box %v is rgb(%d,%d,%d), not the box's red", i, p, c.box, r, g, b)
		}
	}
	if b1 == b2 {
		t.Errorf("the detection box stayed at %v in screenshots a second apart: the stream did not change", b1)
	}
	diff := 0
	bounds := first.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 2 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 2 {
			if first.At(x, y) != second.At(x, y) {
				diff++
			}
		}
	}
	if diff < 100 {
		t.Errorf("screenshots a second apart differ in %d sampled pixels: the stream did not change", diff)
	}
}

// The HTTP side of events and the live view: basic auth, /api/events, event snapshots, and
// the bound on live viewers per camera.
func TestLiveHTTP(t *testing.T) {
	r := startRig(t, true)
	r.cfg.HTTP.MaxViewers = 2
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := serveLive(t, r, &HTTPAuthConfig{Username: "admin", PasswordFile: pw})
	get := func(path, user, pass string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	for _, c := range []struct{ user, pass string }{{"", ""}, {"admin", "wrong"}, {"root", "s3cret"}} {
		if resp, _ := get("/", c.user, c.pass); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("user %q password %q: status %d, want 401 with a challenge", c.user, c.pass, resp.StatusCode)
		}
	}
	if resp, body := get("/", "admin", "s3cret"); resp.StatusCode != 200 || !strings.Contains(string(body), "/stream/") {
		t.Fatalf("/ with the right password: %d", resp.StatusCode)
	}

	r.sub.WaitFor(t, 30*time.Second, "a new event", func(ms []testenv.Received) bool {
		for _, m := range ms {
			if strings.HasSuffix(m.Topic, "/events") {
				return true
			}
		}
		return false
	})
	resp, body := get("/api/events?camera=front&limit=5", "admin", "s3cret")
	var evs []struct {
		ID, Camera, Label, Snapshot string
		Seq                         uint64
	}
	if err := json.Unmarshal(body, &evs); err != nil || resp.StatusCode != 200 || len(evs) == 0 {
		t.Fatalf("/api/events: %d %s (%v)", resp.StatusCode, body, err)
	}
	if evs[0].Camera != "front" || evs[0].Label != "box" || evs[0].Seq == 0 || evs[0].Snapshot != "/events/"+evs[0].ID+"/snapshot.jpg" {
		t.Errorf("/api/events entry %+v", evs[0])
	}
	if _, body := get("/api/events?camera=back", "admin", "s3cret"); strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("/api/events of another camera: %s, want []", body)
	}
	if resp, _ := get("/api/events?limit=x", "admin", "s3cret"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("limit=x: status %d, want 400", resp.StatusCode)
	}
	resp, body = get(evs[0].Snapshot, "admin", "s3cret")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || len(body) < 100 || body[0] != 0xFF || body[1] != 0xD8 {
		t.Errorf("%s: %d %s, %d bytes", evs[0].Snapshot, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if resp, _ := get("/events/front-1-1/snapshot.jpg", "admin", "s3cret"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown event snapshot: status %d, want 404", resp.StatusCode)
	}
	if resp, _ := get("/stream/nope.mjpeg", "admin", "s3cret"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("stream of an unknown camera: status %d, want 404", resp.StatusCode)
	}

	// Two viewers stream; a third is turned away.
	open := func() *http.Response {
		req, _ := http.NewRequest("GET", base+"/stream/front.mjpeg", nil)
		req.SetBasicAuth("admin", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := range 2 {
		resp := open()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/x-mixed-replace; boundary=") {
			t.Fatalf("viewer %d: %d %s", i, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		part, err := multipart.NewReader(resp.Body, params["boundary"]).NextPart()
		if err != nil {
			t.Fatalf("viewer %d: %v", i, err)
		}
		jpg, _ := io.ReadAll(part)
		if part.Header.Get("Content-Type") != "image/jpeg" || len(jpg) < 100 || jpg[0] != 0xFF || jpg[1] != 0xD8 {
			t.Fatalf("viewer %d: first part %v, %d bytes", i, part.Header, len(jpg))
		}
	}
	if resp := open(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("third viewer with max_viewers 2: status %d, want 503", resp.StatusCode)
	}
}

// A live stream outlives the server's read and write timeouts (httpLimits), which bound every
// other response: it reads no body and sets a write deadline per frame.
func TestLiveStreamOutlivesServerTimeouts(t *testing.T) {
	r := startRig(t, true)
	lim := httpLimits{ReadHeader: 300 * time.Millisecond, Read: 300 * time.Millisecond, Write: 300 * time.Millisecond, Idle: 300 * time.Millisecond, MaxConns: 8}
	base := serveLiveWith(t, r, nil, lim)
	resp, err := http.Get(base + "/stream/front.mjpeg")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(resp.Body, params["boundary"])
	t0 := time.Now()
	parts := 0
	for time.Since(t0) < 10*lim.Write {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("stream ended after %v and %d frames: %v", time.Since(t0), parts, err)
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			t.Fatalf("frame %d after %v: %v", parts, time.Since(t0), err)
		}
		parts++
	}
	t.Logf("%d frames in %v with read and write timeouts of %v", parts, time.Since(t0), lim.Write)
}
