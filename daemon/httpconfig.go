package daemon

import (
	"net"
	"strings"

	"github.com/stardetr/stardetr/internal/confcheck"
	"github.com/stardetr/stardetr/internal/secret"
)

// HTTPConfig is the `http:` section.
type HTTPConfig struct {
	// Listen is host:port; empty disables the HTTP server.
	Listen string `mapstructure:"listen"`
	// Auth is required when Listen is not a loopback address.
	Auth HTTPAuthConfig `mapstructure:"auth"`
	// MaxViewers bounds the live streams (/stream/<camera>.mjpeg) open at once per camera.
	MaxViewers int `mapstructure:"max_viewers"`
	// MaxConnections bounds the HTTP connections open at once, live streams included; more
	// are closed as soon as they are accepted (stardetr_http_connections_refused_total).
	MaxConnections int `mapstructure:"max_connections"`
}

// HTTPAuthConfig is the `http.auth` section: HTTP basic authentication.
type HTTPAuthConfig struct {
	// Username is the one user name accepted.
	Username string `mapstructure:"username"`
	// PasswordFile holds the password; it must not be readable by everyone.
	PasswordFile string `mapstructure:"password_file"`
}

func (a *HTTPAuthConfig) enabled() bool { return a.Username != "" || a.PasswordFile != "" }

// Validate reports every problem of the `http` section, keys relative to it. The HTTP
// server exposes camera pictures: on any address but loopback it needs authentication.
func (c *HTTPConfig) Validate() error {
	var l confcheck.List
	if c.Listen != "" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			l.Add("listen", "%q is not host:port (%v): use e.g. 127.0.0.1:9110, or \"\" to disable", c.Listen, err)
		} else if !isLoopback(host) && !c.Auth.enabled() {
			// Pictures of people's homes: refused rather than served to the network.
			l.Add("listen", "%q is reachable from other machines and serves camera pictures: set http.auth.username and http.auth.password_file, or listen on 127.0.0.1 behind a reverse proxy (see the README)", c.Listen)
		}
	}
	if c.MaxViewers < 1 || c.MaxViewers > 100 {
		l.Add("max_viewers", "%d is out of range: 1 to 100 live streams per camera", c.MaxViewers)
	}
	if c.MaxConnections < 2 || c.MaxConnections > maxHTTPConnections {
		l.Add("max_connections", "%d is out of range: 2 to %d open HTTP connections (each holds a file descriptor; the packaged unit allows %d)", c.MaxConnections, maxHTTPConnections, unitNOFILE)
	} else if c.MaxConnections <= c.MaxViewers {
		l.Add("max_connections", "%d leaves no connection for the API next to max_viewers %d live streams: raise it above max_viewers", c.MaxConnections, c.MaxViewers)
	}
	if c.Auth.enabled() {
		if c.Auth.Username == "" || strings.Contains(c.Auth.Username, ":") {
			l.Add("auth.username", "%q: give a user name without ':'", c.Auth.Username)
		}
		if c.Auth.PasswordFile == "" {
			l.Add("auth.password_file", "required with auth.username: a file holding the password, mode 600")
		} else if pw, err := secret.Read(c.Auth.PasswordFile); err != nil {
			l.Add("auth.password_file", "%w", err)
		} else if pw == "" {
			l.Add("auth.password_file", "%s is empty: write the password into it", c.Auth.PasswordFile)
		}
	}
	return l.Err()
}

// unitNOFILE is LimitNOFILE in packaging/systemd/stardetr.service: the descriptors the
// service may hold, of which HTTP connections may take at most maxHTTPConnections.
const (
	unitNOFILE         = 4096
	maxHTTPConnections = 2048
)

// isLoopback reports whether a listen host only accepts connections from this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
