package sip

import (
	"context"
	"log/slog"
	"sync"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogToZap forwards sipgo's log/slog records to zap at debug level: sipgo
// reports every malformed datagram and every stray retransmission from a
// peer as an error or warning, with the whole message, which under a flood
// or a scanner would drown the call log. What matters to an operator is
// logged by ringroute itself, with the Call-ID.
type slogToZap struct {
	log   *zap.Logger
	attrs []zap.Field
}

func (h *slogToZap) level(slog.Level) zapcore.Level { return zapcore.DebugLevel }

func (h *slogToZap) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Core().Enabled(h.level(l))
}

func (h *slogToZap) Handle(_ context.Context, r slog.Record) error {
	lvl := h.level(r.Level)
	ce := h.log.Check(lvl, r.Message)
	if ce == nil {
		return nil
	}
	fields := make([]zap.Field, 0, len(h.attrs)+r.NumAttrs())
	fields = append(fields, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	ce.Write(fields...)
	return nil
}

func (h *slogToZap) WithAttrs(as []slog.Attr) slog.Handler {
	n := &slogToZap{log: h.log, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h *slogToZap) WithGroup(name string) slog.Handler {
	return &slogToZap{log: h.log.Named(name), attrs: h.attrs}
}

func newSlog(log *zap.Logger) *slog.Logger {
	return slog.New(&slogToZap{log: log.Named("sipgo")})
}

// sipgo reads its package-level default logger in places that take no
// option (its parser, its stray-response handler). It is set once per
// process, by the first Server.
var setDefaultLoggerOnce sync.Once
