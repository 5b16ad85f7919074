package publish

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topic limits. MQTT carries a topic in a 16-bit length field (at most 65,535 bytes, and the
// disk queue's records store it the same way); stardetr's caps keep every topic it builds, of
// at most two prefixes and four levels, under 3 KB.
const (
	// MaxTopicLevel is the longest device id, camera, zone or label, in bytes.
	MaxTopicLevel = 256
	// MaxTopicPrefix is the longest mqtt.topic_prefix or homeassistant.prefix, in bytes.
	MaxTopicPrefix = 1024
	// MaxTopic is MQTT's limit on a topic name, in bytes.
	MaxTopic = 65535
)

// CheckTopicLevel checks s as one MQTT topic level: every name from the configuration or the
// model's metadata that stardetr puts in a topic (device id, camera, zone, class label) goes
// through it. A level is non-empty valid UTF-8 of at most MaxTopicLevel bytes without the
// wildcards '+' and '#', the separator '/', NUL or other control characters (MQTT: "SHOULD
// NOT", and brokers such as mosquitto drop a client that sends them), Unicode
// non-characters, or a leading '$' (brokers reserve $-topics). The error describes the
// problem; the caller names the key.
func CheckTopicLevel(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if err := checkTopicText(s, MaxTopicLevel); err != nil {
		return err
	}
	if i := strings.IndexAny(s, "+#/"); i >= 0 {
		return fmt.Errorf("%s contains %q: it is one MQTT topic level, where '+' and '#' are wildcards and '/' separates levels", quoteShort(s), s[i])
	}
	if s[0] == '$' {
		return fmt.Errorf("%s starts with '$', which brokers reserve for their own topics", quoteShort(s))
	}
	return nil
}

// CheckTopicPrefix checks a prefix of one or more topic levels (mqtt.topic_prefix,
// homeassistant.prefix): each level follows CheckTopicLevel's rule, at most MaxTopicPrefix
// bytes in all.
func CheckTopicPrefix(p string) error {
	if p == "" {
		return errors.New("is empty: set a topic prefix such as stardetr")
	}
	if err := checkTopicText(p, MaxTopicPrefix); err != nil {
		return err
	}
	if strings.ContainsAny(p, "+#") {
		return fmt.Errorf("%s contains an MQTT wildcard ('+' or '#'), which is not allowed in a topic name", quoteShort(p))
	}
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("%s has an empty topic level: no leading, trailing or doubled '/'", quoteShort(p))
	}
	for _, l := range strings.Split(p, "/") {
		if err := CheckTopicLevel(l); err != nil {
			return fmt.Errorf("level %w", err)
		}
	}
	return nil
}

// CheckTopic checks a whole topic name before it is queued: valid UTF-8 of at most
// MaxTopic bytes, no wildcard, no NUL or control character, no empty level.
func CheckTopic(t string) error {
	if t == "" {
		return errors.New("topic is empty")
	}
	if err := checkTopicText(t, MaxTopic); err != nil {
		return fmt.Errorf("topic %w", err)
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("topic %s contains an MQTT wildcard ('+' or '#')", quoteShort(t))
	}
	if strings.HasPrefix(t, "/") || strings.HasSuffix(t, "/") || strings.Contains(t, "//") {
		return fmt.Errorf("topic %s has an empty level", quoteShort(t))
	}
	return nil
}

// checkTopicText checks what every part of a topic shares: length, UTF-8, no control
// characters or non-characters.
func checkTopicText(s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s is %d bytes long: at most %d", quoteShort(s), len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", quoteShort(s))
	}
	for _, r := range s {
		switch {
		case r == 0:
			return fmt.Errorf("%s contains a NUL character", quoteShort(s))
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return fmt.Errorf("%s contains the control character %U", quoteShort(s), r)
		case (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe:
			return fmt.Errorf("%s contains the Unicode non-character %U", quoteShort(s), r)
		}
	}
	return nil
}

// quoteShort quotes s for a message, cut to its first 64 bytes: a 70,000-byte device id is
// named, not printed.
func quoteShort(s string) string {
	const keep = 64
	if len(s) <= keep {
		return fmt.Sprintf("%q", s)
	}
	cut := keep
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}
