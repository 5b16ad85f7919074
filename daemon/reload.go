package daemon

import (
	"reflect"
	"strings"
)

// reload re-reads the configuration: cameras and their publish policies are applied (only
// changed cameras restart); changes elsewhere need a restart and are reported as such.
func (s *service) reload() {
	s.notify.reloading()
	defer s.notify.ready()
	cfg, err := loadAndValidate(s.configPath, nil)
	if err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	// The new cameras against what keeps running: the model (and the model.names it was
	// loaded with) and the Home Assistant settings, which a reload does not change.
	running := s.cfg
	running.Cameras = cfg.Cameras
	if err := checkModelLabels(&running, s.labels); err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	cams, err := buildCameras(cfg.Cameras, s.cfg.Events, s.labels, s.log)
	if err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	if err := s.pipe.Update(cams); err != nil {
		s.log.Error("reload refused: keeping the running configuration", "err", err)
		return
	}
	if keys := changedKeys(reflect.ValueOf(s.cfg), reflect.ValueOf(cfg), ""); len(keys) > 0 {
		s.log.Warn("reload: only cameras are applied live; restart stardetr to apply the other changes",
			"changed_keys", strings.Join(keys, ", "))
	}
	s.cfg.Cameras = cfg.Cameras
	s.updateRetained()
	s.log.Info("configuration reloaded", "cameras", len(cams))
}

// changedKeys lists the key paths (as written in the file, e.g. mqtt.queue.max_mb) whose
// values differ between two configurations, leaving out `cameras`, which reload applies.
func changedKeys(a, b reflect.Value, prefix string) []string {
	var keys []string
	for i := range a.NumField() {
		f := a.Type().Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" || prefix+tag == "cameras" {
			continue
		}
		key := prefix + tag
		if f.Type.Kind() == reflect.Struct {
			keys = append(keys, changedKeys(a.Field(i), b.Field(i), key+".")...)
		} else if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}
