package publish

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// explain turns a failed connection attempt to broker (the URL paho tried, redacted) into
// what probably happened and the configuration key to look at: the README promises one
// error that names the cause and the key, where the network only says "connection reset".
func (p *Publisher) explain(err error, broker string) error {
	key := "mqtt.brokers"
	scheme := ""
	for i, b := range p.brokers {
		if u, perr := url.Parse(b); perr == nil && u.Redacted() == broker {
			key = fmt.Sprintf("mqtt.brokers[%d]", i)
			scheme = u.Scheme
		}
	}
	if broker == "" {
		broker = "the broker"
	}
	tlsScheme := scheme == "mqtts" || scheme == "ssl" || scheme == "tls" || scheme == "wss"
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var notTLS tls.RecordHeaderError
	var dns *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &unknownCA):
		return fmt.Errorf("%w: the broker's certificate is not signed by a CA in mqtt.tls.ca", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: set mqtt.tls.server_name to a name in the broker's certificate", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: the broker's certificate is not valid (expired or not for servers?)", err)
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("%w: check mqtt.username and mqtt.password / mqtt.password_file", err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("%w: the broker rejects mqtt.client_id", err)
	case errors.As(err, &notTLS):
		return fmt.Errorf("%w: %s (%s) does not speak TLS: use mqtt:// for a plain port", err, broker, key)
	case errors.As(err, &dns):
		return fmt.Errorf("%w: cannot resolve the host of %s (%s): check the name", err, broker, key)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing accepts connections at %s (%s): is the broker running, is the port right?", err, broker, key)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		if tlsScheme {
			return fmt.Errorf("%w: no answer from %s (%s) within mqtt.connect_timeout %s: the TLS handshake or CONNECT got no reply: is it a broker's TLS port? Raise mqtt.connect_timeout on a slow link",
				err, broker, key, p.cfg.ConnectTimeout)
		}
		return fmt.Errorf("%w: %s (%s) accepted the connection or dropped it silently and never answered CONNECT within mqtt.connect_timeout %s: not an MQTT broker, a TLS port (use mqtts://), an overloaded broker, or a firewall; raise mqtt.connect_timeout on a slow link",
			err, broker, key, p.cfg.ConnectTimeout)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		if tlsScheme {
			return fmt.Errorf("%w: %s (%s) closed the connection during the TLS handshake: it is probably a plain MQTT port; use mqtt:// or the broker's TLS port (usually 8883)", err, broker, key)
		}
		return fmt.Errorf("%w: %s (%s) closed the connection before answering CONNECT: if the port expects TLS use mqtts://, otherwise the broker's log says why it refused this client", err, broker, key)
	}
	return fmt.Errorf("%w (%s)", err, key)
}
