package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/stardetr/stardetr/internal/atomicfile"
	"github.com/stardetr/stardetr/publish"
	"github.com/stardetr/stardetr/track"
)

// HomeAssistantConfig is the `homeassistant:` section: MQTT discovery of the zone counts.
type HomeAssistantConfig struct {
	// Enabled publishes discovery messages: per camera, zone (and "all") and label an
	// occupancy binary_sensor and a count sensor, under one device for this box.
	Enabled bool `mapstructure:"enabled"`
	// Prefix is Home Assistant's discovery prefix (its MQTT integration's setting).
	Prefix string `mapstructure:"prefix"`
}

// Validate reports every problem, keys relative to the section.
func (c *HomeAssistantConfig) Validate() error {
	// The same rule as mqtt.topic_prefix: the prefix starts every discovery topic.
	if err := publish.CheckTopicPrefix(c.Prefix); err != nil {
		return fmt.Errorf("prefix: %w: give Home Assistant's discovery prefix (default homeassistant)", err)
	}
	return nil
}

// haIDChars is what Home Assistant allows in a discovery topic's node_id and object_id.
var haIDChars = regexp.MustCompile(`[^a-zA-Z0-9_-]`)

func haID(parts ...string) string { return haIDChars.ReplaceAllString(strings.Join(parts, "_"), "_") }

// haDevice is the device block every entity of this box shares, so that Home Assistant
// groups them under one device.
type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version"`
}

type haOrigin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version"`
}

// haEntity is one discovery payload (binary_sensor or sensor).
type haEntity struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template,omitempty"`
	PayloadOn           string   `json:"payload_on,omitempty"`
	PayloadOff          string   `json:"payload_off,omitempty"`
	DeviceClass         string   `json:"device_class,omitempty"`
	StateClass          string   `json:"state_class,omitempty"`
	AvailabilityTopic   string   `json:"availability_topic"`
	AvailabilityTmpl    string   `json:"availability_template"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	QoS                 int      `json:"qos"`
	Device              haDevice `json:"device"`
	Origin              haOrigin `json:"origin"`
}

// retainedMessage is a retained topic stardetr owns and its payload (nil: not published
// here, e.g. a count the pipeline publishes itself).
type retainedMessage struct {
	topic   string
	payload []byte
}

// retainedTopics lists every retained topic the configuration owns: each tracking camera's
// counts, and the discovery entries when Home Assistant discovery is on.
func retainedTopics(cfg *Config, device, model string, labels []string, pub *publish.Publisher) ([]retainedMessage, error) {
	var out []retainedMessage
	dev := haDevice{Identifiers: []string{haID("stardetr", device)}, Name: "stardetr " + device,
		Manufacturer: "stardetr", Model: model, SWVersion: Version}
	origin := haOrigin{Name: "stardetr", SWVersion: Version}
	for _, c := range cfg.Cameras {
		if !c.Track.Enabled {
			continue
		}
		for _, k := range track.CountKeys(c.Zones, labels) {
			state := pub.CountTopic(c.Name, k.Zone, k.Label)
			out = append(out, retainedMessage{topic: state})
			if !cfg.HomeAssistant.Enabled {
				continue
			}
			base := haEntity{
				StateTopic:        state,
				AvailabilityTopic: pub.StatusTopic(),
				// The status topic also says "stopped" after a clean shutdown: that is
				// not available either.
				AvailabilityTmpl:    "{{ 'online' if value == 'online' else 'offline' }}",
				PayloadAvailable:    "online",
				PayloadNotAvailable: "offline",
				QoS:                 publish.EventQoS,
				Device:              dev,
				Origin:              origin,
			}
			occ := base
			occ.Name = fmt.Sprintf("%s %s %s occupancy", c.Name, k.Zone, k.Label)
			occ.UniqueID = haID("stardetr", device, c.Name, k.Zone, k.Label, "occupancy")
			occ.ValueTemplate = "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"
			occ.PayloadOn, occ.PayloadOff = "ON", "OFF"
			occ.DeviceClass = "occupancy"
			cnt := base
			cnt.Name = fmt.Sprintf("%s %s %s count", c.Name, k.Zone, k.Label)
			cnt.UniqueID = haID("stardetr", device, c.Name, k.Zone, k.Label, "count")
			cnt.StateClass = "measurement"
			for comp, e := range map[string]*haEntity{"binary_sensor": &occ, "sensor": &cnt} {
				b, err := json.Marshal(e)
				if err != nil {
					return nil, fmt.Errorf("homeassistant: %w", err)
				}
				topic := cfg.HomeAssistant.Prefix + "/" + comp + "/" + haID("stardetr", device) + "/" + haID(c.Name, k.Zone, k.Label) + "/config"
				out = append(out, retainedMessage{topic: topic, payload: b})
			}
		}
	}
	slices.SortFunc(out, func(a, b retainedMessage) int { return strings.Compare(a.topic, b.topic) })
	return out, nil
}

// updateRetained publishes the running configuration's retained topics and deletes those of
// removed cameras and zones; a failure is logged, not fatal: detections still flow.
func (s *service) updateRetained() {
	if err := publishRetained(&s.cfg, s.deviceID, s.det.Info().Model, s.labels, s.pub); err != nil {
		s.log.Error("retained topics (counts, Home Assistant discovery)", "err", err)
	}
}

// publishRetained brings the broker's retained topics in line with the configuration (see
// syncRetained).
func publishRetained(cfg *Config, device, model string, labels []string, pub *publish.Publisher) error {
	msgs, err := retainedTopics(cfg, device, model, labels, pub)
	if err != nil {
		return err
	}
	return syncRetained(cfg.StateDir, msgs, pub)
}

const retainedFile = "retained-topics.json"

type retainedFileFormat struct {
	Version int      `json:"version"`
	Topics  []string `json:"topics"`
}

// syncRetained publishes the discovery entries of the configuration and deletes (empty
// retained payload) every retained topic a previous configuration owned that this one does
// not: cameras, zones or labels removed by a reload or while stardetr was stopped. The owned
// topics are remembered in <state_dir>/retained-topics.json.
func syncRetained(stateDir string, msgs []retainedMessage, pub *publish.Publisher) error {
	path := filepath.Join(stateDir, retainedFile)
	var old retainedFileFormat
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &old); err != nil || old.Version != 1 {
			return fmt.Errorf("%s is corrupt (%v): delete it (retained topics of removed cameras may then stay on the broker)", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	want := make(map[string]bool, len(msgs))
	now := retainedFileFormat{Version: 1}
	for _, m := range msgs {
		want[m.topic] = true
		now.Topics = append(now.Topics, m.topic)
	}
	var errs []error
	for _, t := range old.Topics {
		if !want[t] {
			errs = append(errs, pub.PublishRetained(t, nil))
		}
	}
	for _, m := range msgs {
		if m.payload != nil {
			errs = append(errs, pub.PublishRetained(m.topic, m.payload))
		}
	}
	b, err := json.Marshal(&now)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, b); err != nil {
		errs = append(errs, fmt.Errorf("write %s: %w", path, err))
	}
	return errors.Join(errs...)
}
