package detection

import "time"

// The types of an Event.
const (
	EventNew    = "new"    // a track was confirmed
	EventUpdate = "update" // its zones changed, it stopped or moved again, or update_interval passed
	EventEnd    = "end"    // it was lost for longer than max_age
)

// Event is one change of a tracked object, the one type that carries it from the tracker
// (track.Scene) through the event rate bound (pipeline) to the message on …/events (publish,
// which adds v, device, camera, seq and the snapshot's path). Who holds its slices says the
// producer: track.Result's belong to the Scene until its next Update.
type Event struct {
	Type string // EventNew, EventUpdate or EventEnd; "" in track.Result.Best, which are no events
	// ID is unique per camera and across restarts: "<start unix ms>-<track id>"; the daemon
	// prefixes the camera's name to make it unique per device.
	ID           string
	TrackID      uint64
	ClassID      int
	Label        string
	Score        float32    // best score so far, 0..1
	Box          [4]float32 // the latest matched box, x1, y1, x2, y2 in pixels
	Zones        []string   // zones the object is in now
	EnteredZones []string   // zones it has ever been in
	Start        time.Time  // first frame the object was seen
	End          time.Time  // last frame it was seen; set on end only
	Frames       int        // frames it was matched in
	// Stationary is set while the object stays put (track.stationary): the update that
	// reports it stopped carries it, and no periodic updates follow until it moves again (an
	// update without it) or ends.
	Stationary bool
}
