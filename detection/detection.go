// Package detection holds the one type in which stardetr carries a detected object from the
// model's decoding through tracking to the published message (Detection), and the one type of
// a tracked object's event from the tracker to the wire (Event): model, track, pipeline and
// publish all use them, and none of them needs to know the others.
package detection

// Detection is one object in one frame.
type Detection struct {
	ClassID int        `json:"class_id"`
	Label   string     `json:"label"`
	Score   float32    `json:"score"`              // 0..1, the model's sigmoid score
	Box     [4]float32 `json:"box"`                // x1, y1, x2, y2 in pixels of the frame
	TrackID uint64     `json:"track_id,omitempty"` // the object's confirmed track; 0: none
}
