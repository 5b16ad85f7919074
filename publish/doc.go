// Package publish sends detections and stats to an MQTT broker without
// losing detections (github.com/eclipse/paho.mqtt.golang), optionally
// running an embedded broker (github.com/mochi-mqtt/server/v2). It is a
// library: it knows its own Config and nothing of cameras or models.
//
// Use:
//
//	cfg := publish.DefaultConfig()           // fill from the mqtt: section (mapstructure tags)
//	if err := cfg.Validate(); err != nil {}  // every problem, each naming its key: "brokers[1]: …"
//	p, err := publish.New(cfg, publish.Options{DeviceID: id, StateDir: dir, Logger: log, Stats: statsFn})
//	err = p.Start(ctx)                        // embedded broker, then connects in the background
//	err = p.PublishDetections(msg)           // seq assigned and persisted; queued on disk; never waits for the network
//	raw, err := p.PublishEvent(cam, ev, snap) // a tracked object's new/update/end (detection.Event, as the tracker made it); shares the camera's seq; returns the message
//	err = p.PublishCount(cam, zone, label, n) // retained count, sent on change only
//	err = p.PublishRetained(topic, payload)  // retained message on any topic (Home Assistant discovery); empty payload deletes it
//	err = p.PublishStats(s)                  // skipped (counted) while disconnected
//	m := p.Metrics()                         // counters and connection state; p is also a prometheus.Collector
//	err = p.Close(ctx)                       // drain while connected, retained "stopped", disconnect; bounded by ctx
//
// Topics, under <topic_prefix>/<device id>/:
//
//	status              retained: "online" on every connect, "offline" (last will), "stopped" (Close)
//	<camera>/detections one JSON message per PublishDetections (schema/detections.v1.json), QoS mqtt.qos
//	<camera>/events     one JSON message per PublishEvent (schema/events.v1.json), QoS 1 (EventQoS)
//	<camera>/<zone>/<label> retained: the number of objects of that label in the zone, as text, QoS 1
//	stats               JSON every mqtt.stats_interval when Options.Stats is set (schema/stats.v1.json), QoS mqtt.stats_qos
//
// An event arrives as the tracker made it (detection.Event, the one type from
// tracker to wire): this package adds only v, device, camera, seq and the
// snapshot's path. Events and counts describe changes, so each one must arrive: they go at QoS 1
// whatever mqtt.qos is. An event is "new" when a track is confirmed, "update" when
// its zones change or every track.update_interval, "end" when the track is lost;
// its id (<camera>-<start unix ms>-<track id>) is unique per device across
// restarts. A camera's events and detections share one seq, so a gap in either is
// a lost message. Counts and every other message of PublishRetained are retained,
// so a subscriber that connects later gets the latest value at once; they travel
// through the same disk queue as detections (in order, at least once), and an
// empty payload deletes a retained message.
//
// Delivery. Every detection message is appended to a bounded on-disk queue
// in <state_dir>/mqtt-queue before anything else happens; one sender
// goroutine publishes the queue in order, keeps at most 64 messages awaiting
// their PUBACK, and removes each one only when the broker acknowledged it
// (QoS 1/2) or it was written to the socket (QoS 0). On a lost connection it
// stops and, after reconnecting, resends from the oldest unacknowledged
// message; a restart of the process resumes from what is on disk. This gives
// at-least-once delivery for QoS 1 and 2 (duplicates are possible after a
// lost connection or a crash: consumers drop a repeated (camera, seq)); QoS 0
// gets the same queueing while offline but no guarantee once written.
//
// The queue's size is bounded by mqtt.queue.max_mb; when full, the oldest
// messages (detections, events or retained ones) are dropped, counted
// (Metrics.Dropped, stardetr_mqtt_dropped_total by reason) and logged. A
// message that cannot be stored at all (a full disk, a file that cannot be
// written) is dropped, counted and logged the same way, and QueueHealth
// reports the queue degraded. Appends reach the page cache at once (a process crash loses
// nothing) and are fsynced every 200 ms (a power loss loses at most that).
//
// seq is a per-camera counter starting at 1, +1 per message, kept in
// <state_dir>/mqtt-seq.json. Numbers are reserved on disk 1000 ahead of use,
// so a crash leaves a gap of at most 1000 and never reuses a number; Close
// stores the exact next number, so a clean restart leaves no gap.
//
// The paho client runs with a clean session, its own automatic reconnect off
// and an in-memory store: the disk queue is the store of record, and the
// publisher's own connection loop retries every broker in order with
// stepped, jittered delays (Options.RetryDelays, default internal/backoff's: 1 s, 1 s, 2 s, 5 s, 10 s, 20 s, 30 s).
// A connection that was up 10 s (backoff.ResetAfter) starts the schedule over and
// reconnects after its first step, as a camera does (internal/backoff says why).
package publish
