package publish

import "testing"

// FuzzDecodeRecord decodes arbitrary bytes as a queued message: an error or a topic and
// payload inside the record, never a panic; what encodeRecord writes decodes back.
// Run: go test -run '^$' -fuzz FuzzDecodeRecord ./publish/
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord("stardetr/dev/cam/detections", 1, false, []byte(`{"v":1}`)))
	f.Add([]byte{2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		topic, qos, retained, payload, err := decodeRecord(b)
		if err != nil {
			return
		}
		again := encodeRecord(topic, qos, retained, payload)
		if string(again) != string(b) && (b[1] == 0 || b[1] == 1) {
			t.Fatalf("re-encoding %q gives %q", b, again)
		}
	})
}
