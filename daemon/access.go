package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stardetr/stardetr/internal/secret"
)

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
	var errs []error
	if c.Listen != "" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen: %q is not host:port (%v): use e.g. 127.0.0.1:9110, or \"\" to disable", c.Listen, err))
		} else if !isLoopback(host) && !c.Auth.enabled() {
			// Pictures of people's homes: refused rather than served to the network.
			errs = append(errs, fmt.Errorf("listen: %q is reachable from other machines and serves camera pictures: set http.auth.username and http.auth.password_file, or listen on 127.0.0.1 behind a reverse proxy (see the README)", c.Listen))
		}
	}
	if c.MaxViewers < 1 || c.MaxViewers > 100 {
		errs = append(errs, fmt.Errorf("max_viewers: %d is out of range: 1 to 100 live streams per camera", c.MaxViewers))
	}
	if c.MaxConnections < 2 || c.MaxConnections > maxHTTPConnections {
		errs = append(errs, fmt.Errorf("max_connections: %d is out of range: 2 to %d open HTTP connections (each holds a file descriptor; the packaged unit allows %d)", c.MaxConnections, maxHTTPConnections, unitNOFILE))
	} else if c.MaxConnections <= c.MaxViewers {
		errs = append(errs, fmt.Errorf("max_connections: %d leaves no connection for the API next to max_viewers %d live streams: raise it above max_viewers", c.MaxConnections, c.MaxViewers))
	}
	if c.Auth.enabled() {
		if c.Auth.Username == "" || strings.Contains(c.Auth.Username, ":") {
			errs = append(errs, fmt.Errorf("auth.username: %q: give a user name without ':'", c.Auth.Username))
		}
		if c.Auth.PasswordFile == "" {
			errs = append(errs, errors.New("auth.password_file: required with auth.username: a file holding the password, mode 600"))
		} else if pw, err := secret.Read(c.Auth.PasswordFile); err != nil {
			errs = append(errs, fmt.Errorf("auth.password_file: %w", err))
		} else if pw == "" {
			errs = append(errs, fmt.Errorf("auth.password_file: %s is empty: write the password into it", c.Auth.PasswordFile))
		}
	}
	return errors.Join(errs...)
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

// basicAuth wraps h so that every request needs the configured user and password. The
// comparison is in constant time over hashes, so neither length nor content leaks.
func basicAuth(h http.Handler, user, password string) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="stardetr", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// handler is the HTTP API and live view, behind basic authentication when http.auth is set.
func (s *service) handler(reg *prometheus.Registry) (http.Handler, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.live = &liveView{pipe: s.pipe, maxViewers: s.cfg.HTTP.MaxViewers, health: s.health, ctx: ctx, cancel: cancel}
	mux := s.routes(reg).(*http.ServeMux)
	mux.HandleFunc("GET /{$}", s.live.index)
	mux.HandleFunc("GET /stream/{file}", s.live.stream)
	mux.HandleFunc("GET /api/cameras", s.live.cameras)
	var h http.Handler = mux
	a := s.cfg.HTTP.Auth
	if !a.enabled() {
		return h, nil
	}
	pw, err := secret.Read(a.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("http.auth.password_file: %w", err)
	}
	return basicAuth(h, a.Username, pw), nil
}
