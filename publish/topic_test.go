package publish_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stardetr/stardetr/internal/testenv"
	"github.com/stardetr/stardetr/publish"
)

// topicLevels are names stardetr may be handed for one topic level, with what CheckTopicLevel
// must say: "" accepts, anything else is a part of the refusal.
var topicLevels = []struct{ level, refusal string }{
	{"front", ""},
	{"traffic light", ""},
	{"Straße-3.b_c", ""},
	{"猫🐈", ""},
	{"mid$dle", ""},
	{strings.Repeat("x", publish.MaxTopicLevel), ""},
	{"", "is empty"},
	{"a/b", `contains '/'`},
	{"a#", `contains '#'`},
	{"+", `contains '+'`},
	{"$SYS", "starts with '$'"},
	{"a\x00b", "NUL"},
	{"a\x01b", "control character U+0001"},
	{"a\x7fb", "control character U+007F"},
	{"a\u0085b", "control character U+0085"},
	{"a\ufffeb", "non-character U+FFFE"},
	{"a\ufdd0b", "non-character U+FDD0"},
	{"a\xffb", "not valid UTF-8"},
	{strings.Repeat("x", publish.MaxTopicLevel+1), "is 257 bytes long: at most 256"},
	{strings.Repeat("d", 70000), `"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"… (70000 bytes) is 70000 bytes long`},
}

func TestCheckTopicLevel(t *testing.T) {
	for _, c := range topicLevels {
		err := publish.CheckTopicLevel(c.level)
		switch {
		case c.refusal == "" && err != nil:
			t.Errorf("%.40q: refused: %v", c.level, err)
		case c.refusal != "" && (err == nil || !strings.Contains(err.Error(), c.refusal)):
			t.Errorf("%.40q: %v; want a refusal naming %q", c.level, err, c.refusal)
		case err != nil && len(err.Error()) > 300:
			t.Errorf("%.40q: the error is %d bytes long: it must name the value, not print it", c.level, len(err.Error()))
		}
	}
}

// topic_prefix and homeassistant.prefix: several levels, each by the level rule.
func TestCheckTopicPrefix(t *testing.T) {
	for _, c := range []struct{ prefix, refusal string }{
		{"stardetr", ""},
		{"site1/stardetr", ""},
		{"homeassistant", ""},
		{"", "is empty"},
		{"$SYS/x", "starts with '$'"},
		{"a/$x", "starts with '$'"},
		{"a//b", "empty topic level"},
		{"/a", "empty topic level"},
		{"a/", "empty topic level"},
		{"a/#", "wildcard"},
		{"a/+/b", "wildcard"},
		{"a\x00b", "NUL"},
		{"a\nb", "control character"},
		{strings.Repeat("ab/", 400) + "c", "at most 1024"},
	} {
		err := publish.CheckTopicPrefix(c.prefix)
		if (c.refusal == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.refusal)) {
			t.Errorf("%.40q: %v; want %q", c.prefix, err, c.refusal)
		}
	}
	if err := publish.CheckTopic(strings.Repeat("a/", 32768) + "b"); err == nil || !strings.Contains(err.Error(), "at most 65535") {
		t.Errorf("a 65,537-byte topic: %v", err)
	}
}

// The rule is the broker's: what CheckTopicLevel refuses for its characters makes mosquitto
// drop the connection that publishes it, what it accepts is delivered.
func TestTopicRuleIsTheBrokers(t *testing.T) {
	b := testenv.StartMosquitto(t, "")
	for i, c := range topicLevels {
		if strings.ContainsAny(c.level, "/#+") || c.level == "" || strings.HasPrefix(c.level, "$") ||
			strings.Contains(c.refusal, "bytes long") || strings.Contains(c.refusal, "NUL") || strings.Contains(c.refusal, "UTF-8") {
			// Wildcards, levels and '$' are MQTT's grammar, the length cap is stardetr's own;
			// paho itself mangles NUL and bad UTF-8.
			continue
		}
		lost := make(chan struct{}, 1)
		o := mqtt.NewClientOptions().AddBroker(b.URL("mqtt")).SetClientID(fmt.Sprintf("topic-rule-%d", i)).
			SetAutoReconnect(false).SetConnectionLostHandler(func(mqtt.Client, error) { lost <- struct{}{} })
		cl := mqtt.NewClient(o)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		tok := cl.Publish("stardetr/"+c.level+"/x", 1, false, "x")
		acked := make(chan struct{})
		go func() { tok.Wait(); close(acked) }()
		select {
		case <-lost:
			if c.refusal == "" {
				t.Errorf("%.40q: accepted by CheckTopicLevel, but mosquitto dropped the connection", c.level)
			}
		case <-acked:
			// A token that ends with an error ended because the broker dropped the connection
			// (paho: "connection lost before Publish completed"), which can win the race with
			// the connection-lost handler: a drop, not an acknowledgement.
			switch {
			case tok.Error() != nil && c.refusal == "":
				t.Errorf("%.40q: accepted by CheckTopicLevel, but mosquitto dropped the connection (%v)", c.level, tok.Error())
			case tok.Error() == nil && c.refusal != "":
				t.Errorf("%.40q: mosquitto acknowledged it, CheckTopicLevel says %q", c.level, c.refusal)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%.40q: neither acknowledged nor dropped in 10s", c.level)
		}
		cl.Disconnect(10)
	}
}

// A device id that no topic can carry is refused by New, named but not printed in full: a
// 70,000-byte one once wrapped the 16-bit topic length.
func TestNewRefusesDeviceIDsTopicsCannotCarry(t *testing.T) {
	for _, id := range []string{strings.Repeat("d", 70000), "a\x00b", "a/b", "$x"} {
		_, err := publish.New(publish.DefaultConfig(), publish.Options{DeviceID: id, StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "device id") || len(err.Error()) > 300 {
			t.Errorf("device id %.40q: %v", id, err)
		}
	}
}
