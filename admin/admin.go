// Package admin serves ringroute's HTTP admin endpoints on admin.listen:
// health for load balancers and probes, and live counts for leak checks.
// It only reads what the daemon exposes through small interfaces.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Live reports what is still alive in the daemon.
type Live interface {
	Live() (calls, legs int)
}

// Health reports whether the daemon takes new calls.
type Health interface {
	Draining() bool
}

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// New binds addr. When token is not empty every request must carry
// `Authorization: Bearer <token>`.
func New(addr, token string, live Live, health Health) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if health.Draining() {
			http.Error(w, "draining\n", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /debug/live", func(w http.ResponseWriter, r *http.Request) {
		calls, legs := live.Live()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"calls": calls, "legs": legs})
	})
	var h http.Handler = mux
	if token != "" {
		want := "Bearer " + token
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != want {
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
