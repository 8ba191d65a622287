package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ringroute/ringroute/admin"
	"github.com/ringroute/ringroute/cdr"
	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/metrics"
	"github.com/ringroute/ringroute/sip"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("c", "", "config file")
	seed := seedFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *file == "" {
		fmt.Fprintln(stderr, "ringroute run: -c FILE is required")
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ringroute:", err)
		return 2
	}
	defer log.Sync()
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w.String())
	}
	gcDefault(log)

	var cdrw *cdr.Writer
	if cfg.CDR.Path != "" {
		cdrw, err = cdr.Open(cfg.CDR.Path, func(err error) { log.Error("cdr", zap.Error(err)) })
		if err != nil {
			log.Error("cannot open CDR file", zap.Error(err))
			return 1
		}
		defer cdrw.Close()
	}
	opts := sip.Options{Log: log, Seed: *seed, Version: versionString()}
	if cdrw != nil {
		opts.CDR = cdrw
	}
	m := metrics.New()
	opts.Metrics = m
	srv, err := sip.New(cfg, opts)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	m.Watch(srv.Gauges())
	if err := srv.Start(); err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	rl := &reloader{file: *file, srv: srv, log: log, metrics: m}
	var adm *admin.Server
	if cfg.Admin.Listen != "" {
		adm, err = admin.New(cfg.Admin.Listen, cfg.Admin.Token, srv, rl.reload, m.Registry)
		if err != nil {
			log.Error("cannot start admin", zap.Error(err))
			srv.Close()
			return 1
		}
		go func() {
			if err := adm.Serve(); err != nil {
				log.Error("admin", zap.Error(err))
			}
		}()
	}
	for _, tr := range []string{"udp", "tcp"} {
		if ap, ok := srv.Addr(tr); ok {
			log.Info("listening", zap.String("transport", tr), zap.Stringer("addr", ap))
		}
	}
	log.Info("ringroute started", zap.String("version", versionString()), zap.String("config", *file),
		zap.Int("groups", len(cfg.Groups)))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			_, _ = rl.reload()
			continue
		}
		drain(srv, sigs, rl, log)
		break
	}
	if adm != nil {
		_ = adm.Close()
	}
	_ = srv.Close()
	log.Info("ringroute stopped")
	return 0
}

// drain stops taking calls and waits up to drain_timeout for those up to
// end; then Close (the caller's) hangs up what is left. A second SIGTERM
// or SIGINT cuts the wait short; SIGHUP still reloads meanwhile.
func drain(srv *sip.Server, sigs <-chan os.Signal, rl *reloader, log *zap.Logger) {
	log.Info("draining: new calls get 503", zap.Duration("drain_timeout", srv.Config().DrainTimeout))
	srv.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), srv.Config().DrainTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Wait(ctx) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				calls, _ := srv.Live()
				log.Warn("drain timeout: hanging up the calls still up", zap.Int("calls", calls))
			}
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_, _ = rl.reload()
				continue
			}
			log.Warn("second signal: stopping now; calls still up get BYE")
			return
		}
	}
}

// reloader is SIGHUP and POST /api/v1/reload: the same loader as `check`
// and `run`; a file with any error changes nothing.
type reloader struct {
	mu      sync.Mutex // one reload at a time
	file    string
	srv     *sip.Server
	log     *zap.Logger
	metrics *metrics.Metrics
}

func (r *reloader) reload() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := config.Load(r.file)
	if err != nil {
		r.metrics.Reloaded(false)
		r.log.Error("reload refused; the running config stays", zap.String("file", r.file), zap.String("errors", err.Error()))
		return nil, err
	}
	restart := restartNeeded(r.srv.Config(), cfg)
	r.srv.SetConfig(cfg)
	r.metrics.Reloaded(true)
	for _, w := range cfg.Warnings {
		r.log.Warn("config: " + w.String())
	}
	fields := []zap.Field{zap.Int("groups", len(cfg.Groups))}
	if len(restart) > 0 {
		fields = append(fields, zap.Strings("restart_needed", restart))
		r.log.Warn("config reloaded; these settings take effect at the next restart", fields...)
	} else {
		r.log.Info("config reloaded", fields...)
	}
	return restart, nil
}

// restartNeeded lists the settings a reload took but the running process
// cannot apply: sockets bound at start (listeners, the admin port, the
// relay's address and ports), the logger and the CDR file.
func restartNeeded(old, cur *config.Config) []string {
	var out []string
	if !reflect.DeepEqual(old.Listen, cur.Listen) {
		out = append(out, "listen")
	}
	if old.Advertise != cur.Advertise {
		out = append(out, "advertise")
	}
	if old.Media.Mode != cur.Media.Mode || old.Media.Address != cur.Media.Address ||
		old.Media.PortMin != cur.Media.PortMin || old.Media.PortMax != cur.Media.PortMax {
		out = append(out, "media")
	}
	if old.Admin != cur.Admin {
		out = append(out, "admin")
	}
	if old.Log != cur.Log {
		out = append(out, "log")
	}
	if old.CDR != cur.CDR {
		out = append(out, "cdr")
	}
	if old.Registrar.StateFile != cur.Registrar.StateFile {
		out = append(out, "registrar.state_file")
	}
	return out
}
func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.TimeKey = "time"
	var enc zapcore.Encoder
	if c.Format == "console" {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}
