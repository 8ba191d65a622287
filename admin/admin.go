// Package admin serves ringroute's HTTP admin endpoints on admin.listen:
// health for load balancers and probes, Prometheus metrics, the groups and
// calls as they are now, and reload. It only reads what the daemon exposes
// through the small interfaces below.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/sip"
)

// Daemon is what the admin API shows and does. *sip.Server implements all
// but Reload, which the command wires (it also serves SIGHUP).
type Daemon interface {
	Live() (calls, legs int)
	Draining() bool
	Groups() []sip.GroupStatus
	Calls() []sip.CallStatus
	Call(id string) (sip.CallStatus, bool)
}

// Reloader reloads the config file. It returns what a reload cannot
// change without a restart, or an error: config.Errors (with positions)
// when the file is refused.
type Reloader func() (restart []string, err error)

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// New binds addr. When token is not empty every request must carry
// `Authorization: Bearer <token>` (config check refuses a non-loopback
// listen without one). reg may be nil (no /metrics).
func New(addr, token string, d Daemon, reload Reloader, reg *prometheus.Registry) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if d.Draining() {
			http.Error(w, "draining\n", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /debug/live", func(w http.ResponseWriter, r *http.Request) {
		calls, legs := d.Live()
		writeJSON(w, http.StatusOK, map[string]int{"calls": calls, "legs": legs})
	})
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	// Go's profiler, for the performance work (`go tool pprof
	// http://ADMIN/debug/pprof/profile`): behind the same token and
	// loopback rule as everything else here.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /api/v1/groups", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Groups())
	})
	mux.HandleFunc("GET /api/v1/calls", func(w http.ResponseWriter, r *http.Request) {
		calls := d.Calls()
		if calls == nil {
			calls = []sip.CallStatus{}
		}
		writeJSON(w, http.StatusOK, calls)
	})
	mux.HandleFunc("GET /api/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, ok := d.Call(r.PathValue("id"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no live call with that Call-ID"})
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
	mux.HandleFunc("POST /api/v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if reload == nil {
			writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "reload is not wired"})
			return
		}
		restart, err := reload()
		if err != nil {
			var errs config.Errors
			lines := []string{err.Error()}
			if errors.As(err, &errs) {
				lines = lines[:0]
				for _, d := range errs {
					lines = append(lines, d.String())
				}
			}
			writeJSON(w, http.StatusBadRequest, map[string]any{"ok": false, "errors": lines})
			return
		}
		if restart == nil {
			restart = []string{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true, "restart_needed": restart})
	})
	var h http.Handler = mux
	if token != "" {
		want := []byte(token)
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// The scheme is case-insensitive (RFC 9110 §11.1), the token not.
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ringroute"`)
				http.Error(w, "unauthorized\n", http.StatusUnauthorized)
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	return s, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server, letting requests in flight finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
