package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ringroute/ringroute/admin"
	"github.com/ringroute/ringroute/cdr"
	"github.com/ringroute/ringroute/config"
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
	srv, err := sip.New(cfg, opts)
	if err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	if err := srv.Start(); err != nil {
		log.Error("cannot start", zap.Error(err))
		return 1
	}
	var adm *admin.Server
	if cfg.Admin.Listen != "" {
		adm, err = admin.New(cfg.Admin.Listen, cfg.Admin.Token, srv, srv)
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
			reload(*file, srv, log)
			continue
		}
		log.Info("draining: new calls get 503", zap.Duration("drain_timeout", srv.Config().DrainTimeout))
		srv.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), srv.Config().DrainTimeout)
		done := make(chan error, 1)
		go func() { done <- srv.Wait(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				calls, _ := srv.Live()
				log.Warn("drain timeout: hanging up the calls still up", zap.Int("calls", calls))
				srv.Abort()
				// The BYEs and CANCELs need a moment; the CDRs are written
				// as each call ends.
				ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
				_ = srv.Wait(ctx)
				stop()
			}
		case <-sigs:
			log.Warn("second signal: stopping now")
		}
		cancel()
		break
	}
	if adm != nil {
		_ = adm.Close()
	}
	_ = srv.Close()
	log.Info("ringroute stopped")
	return 0
}

// reload swaps in the config file if it is valid; a bad file changes
// nothing.
func reload(file string, srv *sip.Server, log *zap.Logger) {
	cfg, err := config.Load(file)
	if err != nil {
		log.Error("reload failed; keeping the running config", zap.String("errors", err.Error()))
		return
	}
	srv.SetConfig(cfg)
	log.Info("config reloaded", zap.Int("groups", len(cfg.Groups)))
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
