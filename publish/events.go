package publish

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/stardetr/stardetr/detection"
)

// EventQoS is the QoS of event messages and of retained counts: they describe changes, so
// each one must arrive.
const EventQoS = 1

type wireEvent struct {
	V            int        `json:"v"`
	Type         string     `json:"type"`
	ID           string     `json:"id"`
	Device       string     `json:"device"`
	Camera       string     `json:"camera"`
	Seq          uint64     `json:"seq"`
	TrackID      uint64     `json:"track_id"`
	Label        string     `json:"label"`
	ClassID      int        `json:"class_id"`
	Score        float64    `json:"score"`
	Box          [4]float64 `json:"box"`
	Zones        []string   `json:"zones"`
	EnteredZones []string   `json:"entered_zones"`
	Start        string     `json:"start"`
	End          string     `json:"end,omitempty"`
	Frames       int        `json:"frames"`
	Snapshot     string     `json:"snapshot,omitempty"`
	Stationary   bool       `json:"stationary,omitempty"`
}

// encodeEvent is the message of ev on camera's …/events (schema/events.v1.json).
func encodeEvent(device, camera string, seq uint64, ev *detection.Event, snapshot string) ([]byte, error) {
	switch ev.Type {
	case detection.EventNew, detection.EventUpdate, detection.EventEnd:
	default:
		return nil, fmt.Errorf("event type %q is not new, update or end", ev.Type)
	}
	score := float64(ev.Score)
	if err := finite("score", score); err != nil {
		return nil, err
	}
	w := wireEvent{V: SchemaVersion, Type: ev.Type, ID: ev.ID, Device: device, Camera: camera, Seq: seq,
		TrackID: ev.TrackID, Label: ev.Label, ClassID: ev.ClassID, Score: round(score, 1e4),
		Zones: ev.Zones, EnteredZones: ev.EnteredZones, Start: ev.Start.UTC().Format(timeFormat),
		Frames: ev.Frames, Snapshot: snapshot, Stationary: ev.Stationary}
	if w.Zones == nil {
		w.Zones = []string{}
	}
	if w.EnteredZones == nil {
		w.EnteredZones = []string{}
	}
	for j, v := range ev.Box {
		if err := finite(fmt.Sprintf("box[%d]", j), float64(v)); err != nil {
			return nil, err
		}
		w.Box[j] = round(float64(v), 1e2)
	}
	if ev.Type == detection.EventEnd {
		w.End = ev.End.UTC().Format(timeFormat)
	}
	return json.Marshal(&w)
}

// PublishEvent queues camera's event ev on …/<camera>/events at QoS 1 and returns the
// message it queued; snapshot is the path of the event's best picture under the HTTP server,
// or "". It takes the camera's next seq: events and detections of a camera share one
// sequence, so a gap in either is a lost message. A message that was dropped instead (counted
// and logged, see PublishDetections) returns nil and no error.
func (p *Publisher) PublishEvent(camera string, ev detection.Event, snapshot string) (json.RawMessage, error) {
	var msg []byte
	queued, err := p.publishNumbered(camera, "events", EventQoS, func(seq uint64) ([]byte, error) {
		var err error
		msg, err = encodeEvent(p.device, camera, seq, &ev, snapshot)
		return msg, err
	})
	if err != nil || !queued {
		return nil, err
	}
	return msg, nil
}

// PublishCount queues the retained count …/<camera>/<zone>/<label> (an integer as text) at
// QoS 1. The caller sends it on change only.
func (p *Publisher) PublishCount(camera, zone, label string, n int) error {
	for _, l := range [][2]string{{"camera name", camera}, {"zone name", zone}, {"label", label}} {
		if err := checkTopicLevel(l[0], l[1]); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return p.PublishRetained(p.CountTopic(camera, zone, label), []byte(strconv.Itoa(n)))
}

// CountTopic is the topic of a retained count.
func (p *Publisher) CountTopic(camera, zone, label string) string {
	return p.camPrefix + camera + "/" + zone + "/" + label
}

// StatusTopic is the retained status topic: "online", "offline" or "stopped".
func (p *Publisher) StatusTopic() string { return p.statusTopic }

// PublishRetained queues a retained message on any topic at QoS 1 (Home Assistant discovery
// lives outside the device's prefix). An empty payload deletes the retained message.
func (p *Publisher) PublishRetained(topic string, payload []byte) error {
	if err := CheckTopic(topic); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if err := p.accepting("topic", topic); err != nil {
		return err
	}
	p.encMu.Lock()
	defer p.encMu.Unlock()
	if _, err := p.enqueue(topic, EventQoS, true, payload); err != nil {
		return fmt.Errorf("publish: queue %s: %w", topic, err)
	}
	return nil
}

// accepting reports ErrClosed once Close began, and an error for an empty topic part.
func (p *Publisher) accepting(what, level string) error {
	if level == "" {
		return fmt.Errorf("publish: %s is empty", what)
	}
	if what == "camera name" {
		if err := checkTopicLevel(what, level); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return nil
}
