package daemon

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/track"
)

// Every name that becomes an MQTT topic level goes through publish.CheckTopicLevel (and the
// prefixes through publish.CheckTopicPrefix): device_id, camera names, zone names and, on a
// tracking camera, class labels, whose retained counts are …/<camera>/<zone>/<label>. Labels
// are not topic levels without tracking (detections and events carry them in the JSON
// payload), so a model whose labels hold '/' still serves cameras that do not track.
// Config.Validate checks what the file holds (checkTopicNames); checkModelLabels checks the
// labels once the model is loaded, in `check`, at start-up and on reload alike.

// anyTracking reports whether any camera tracks, and so publishes counts per label.
func anyTracking(cams []CameraConfig) bool {
	return slices.ContainsFunc(cams, func(c CameraConfig) bool { return c.Track.Enabled })
}

// checkTopicNames reports the names of the file that no topic can carry. Camera and zone
// names have their own stricter pattern (camera and track packages); for them only what that
// pattern leaves open, the length, is checked here, so that each name gets one error.
func (c *Config) checkTopicNames(l *confcheck.List, cameraErrs, zoneErrs []error) {
	if c.DeviceID != "" {
		if err := publish.CheckTopicLevel(c.DeviceID); err != nil {
			l.Add("device_id", "%v: it is the second level of every topic (<topic_prefix>/<device_id>/…)", err)
		} else if strings.Contains(c.DeviceID, " ") {
			l.Add("device_id", "%q contains a space: use letters, digits, '_', '-' or '.'", c.DeviceID)
		}
	}
	for i := range c.Cameras {
		if cameraErrs[i] == nil || !hasProblem(cameraErrs[i], "name") {
			if err := publish.CheckTopicLevel(c.Cameras[i].Name); err != nil && c.Cameras[i].Name != "" {
				l.Add(fmt.Sprintf("cameras[%d].name", i), "%v", err)
			}
		}
		for j, z := range c.Cameras[i].Zones {
			if key := fmt.Sprintf("zones[%d].name", j); z.Name != "" && !hasProblem(zoneErrs[i], key) {
				if err := publish.CheckTopicLevel(z.Name); err != nil {
					l.Add(fmt.Sprintf("cameras[%d].%s", i, key), "%v", err)
				}
			}
		}
	}
	if anyTracking(c.Cameras) {
		ids := make([]int, 0, len(c.Model.Names))
		for id := range c.Model.Names {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if name := c.Model.Names[id]; name != "" {
				if err := publish.CheckTopicLevel(name); err != nil {
					l.Add(fmt.Sprintf("model.names[%d]", id), "%v; with tracking on, each label is a level of the count topics (…/<camera>/<zone>/<label>): rename it, e.g. %s", err, topicSafe(name, id))
				}
			}
		}
	}
}

// hasProblem reports whether err (a confcheck list) has a problem of key.
func hasProblem(err error, key string) bool {
	if err == nil {
		return false
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return strings.HasPrefix(err.Error(), key+":")
	}
	for _, e := range j.Unwrap() {
		if hasProblem(e, key) {
			return true
		}
	}
	return false
}

// topicSafe suggests a label that CheckTopicLevel accepts, for messages.
func topicSafe(label string, id int) string {
	s := strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r == '$' || r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0xfffd {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(label, "_"))
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "")
	}
	if publish.CheckTopicLevel(s) != nil {
		s = fmt.Sprintf("class%d", id)
	}
	return fmt.Sprintf("model.names: {%d: %q}", id, s)
}

// checkModelLabels checks the configuration against the loaded model's labels: zone classes and
// object filters name labels of the model; on tracking cameras every label is a valid topic level; with
// Home Assistant discovery on, no two counts share a unique_id. One error per problem.
func checkModelLabels(cfg *Config, labels []string) error {
	var l confcheck.List
	if anyTracking(cfg.Cameras) {
		for id, label := range labels {
			if cfg.Model.Names[id] == label {
				continue // from the file: Config.Validate checked it
			}
			if err := publish.CheckTopicLevel(label); err != nil {
				l.Add("model", "the model's own label of class %d %v; with tracking on, each label is a level of the count topics (…/<camera>/<zone>/<label>): override it in the config, e.g. %s",
					id, err, topicSafe(label, id))
			}
		}
	}
	if cfg.HomeAssistant.Enabled {
		checkUniqueIDs(&l, cfg.Cameras, labels)
	}
	for i := range cfg.Cameras {
		l.Include(fmt.Sprintf("cameras[%d].objects", i), cfg.Cameras[i].Objects.CheckLabels(labels))
	}
	return errors.Join(checkZoneClasses(cfg.Cameras, labels), l.Err())
}

// checkUniqueIDs reports two counts whose Home Assistant ids would collide: the ids keep only
// letters, digits, '_' and '-' of "<camera>_<zone>_<label>", so "a.b" and "a b" meet, and so
// do zone "x_y" with label "z" and zone "x" with label "y_z". Discovery would publish one
// entity over the other.
func checkUniqueIDs(l *confcheck.List, cams []CameraConfig, labels []string) {
	type owner struct {
		cam         int
		zone, label string
	}
	seen := map[string]owner{}
	reported := map[string]bool{}
	for i, c := range cams {
		if !c.Track.Enabled {
			continue
		}
		for _, k := range track.CountKeys(c.Zones, labels) {
			id := haID(c.Name, k.Zone, k.Label)
			o := owner{i, k.Zone, k.Label}
			prev, dup := seen[id]
			if !dup {
				seen[id] = o
				continue
			}
			if prev == o {
				continue // the model names two classes alike: one count
			}
			describe := func(o owner) string {
				return fmt.Sprintf("cameras[%d] (%s) zone %q label %q", o.cam, cams[o.cam].Name, o.zone, o.label)
			}
			msg := fmt.Sprintf("%s and %s map to the same Home Assistant unique_id (stardetr_<device>_%s_count): rename one of them (a label with model.names) so that they differ in a letter, digit, '_' or '-'",
				describe(prev), describe(o), id)
			// One error per pair of differing names, not one per camera and zone they share.
			var pair []string
			if prev.cam != o.cam {
				pair = append(pair, cams[prev.cam].Name, cams[o.cam].Name)
			}
			if prev.zone != o.zone {
				pair = append(pair, prev.zone, o.zone)
			}
			if prev.label != o.label {
				pair = append(pair, prev.label, o.label)
			}
			if key := strings.Join(pair, "\x00"); !reported[key] {
				reported[key] = true
				l.Add("homeassistant", "%s", msg)
			}
		}
	}
}
