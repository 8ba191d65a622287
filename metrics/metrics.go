// Package metrics holds ringroute's Prometheus collectors, on a registry of
// its own (no global default registry: tests and several daemons in one
// process must not share counters). Package sip feeds them as calls
// happen; the admin server exposes them on /metrics.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ringroute/ringroute/routing"
)

// Metrics are every collector ringroute exports. A nil *Metrics is valid
// and records nothing, so code paths need no checks.
type Metrics struct {
	Registry *prometheus.Registry

	calls        *prometheus.CounterVec   // group, outcome
	legs         *prometheus.CounterVec   // code
	setup        prometheus.Histogram     // INVITE to answer, answered calls
	answerTime   *prometheus.HistogramVec // group, member
	relayPackets *prometheus.CounterVec   // from: caller|member
	relayBytes   *prometheus.CounterVec   // from: caller|member
	relayDropped prometheus.Counter
	relayNotRTP  prometheus.Counter
	reloads      prometheus.Counter
	reloadFails  prometheus.Counter
	authFails    prometheus.Counter
	authBlocked  prometheus.Counter
	poolExhaust  prometheus.Counter
	recordFails  prometheus.Counter
	rateLimited  prometheus.Counter
}

// Gauges are read when scraped.
type Gauges struct {
	ActiveCalls   func() float64
	RingingLegs   func() float64
	Registrations func() float64
	PortsInUse    func() float64
	PortsTotal    func() float64
	Draining      func() float64
}

// New builds the collectors and registers them, with the Go runtime and
// process collectors. Gauges come later (Watch), once what they read
// exists.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringroute_calls_total", Help: "Calls finished, by the group dialled and outcome (answered, noanswer, busy, cancelled, congestion, closed, denied, rejected, failed).",
		}, []string{"group", "outcome"}),
		legs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringroute_legs_total", Help: "Member legs ended, by final SIP status (0: none).",
		}, []string{"code"}),
		setup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "ringroute_call_setup_seconds", Help: "From the caller's INVITE to the answer, answered calls.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 20, 30, 60, 120},
		}),
		answerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ringroute_time_to_answer_seconds", Help: "How long the answering leg rang before it answered, by group and member.",
			Buckets: []float64{.5, 1, 2, 5, 10, 20, 30, 60},
		}, []string{"group", "member"}),
		relayPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringroute_relay_packets_total", Help: "RTP and RTCP packets relayed, by the side they came from (counted when the call ends).",
		}, []string{"from"}),
		relayBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringroute_relay_bytes_total", Help: "Bytes of RTP and RTCP relayed (UDP payloads), by the side they came from (counted when the call ends).",
		}, []string{"from"}),
		relayDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_relay_dropped_total", Help: "Packets from a source that was not the latched peer (RTP bleed).",
		}),
		relayNotRTP: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_relay_not_rtp_total", Help: "Packets that were not RTP/RTCP or had a payload type not negotiated.",
		}),
		reloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_config_reloads_total", Help: "Config reloads that took effect.",
		}),
		reloadFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_config_reload_failures_total", Help: "Config reloads refused because the file has errors; the running config stays.",
		}),
		authFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_auth_failures_total", Help: "Digest authentications that failed (wrong credentials).",
		}),
		authBlocked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_auth_blocked_total", Help: "Requests refused because their source failed too often (limits.auth_failures_per_source).",
		}),
		poolExhaust: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_media_port_exhausted_total", Help: "Calls refused with 503 because the media port pool was empty.",
		}),
		recordFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_recording_failures_total", Help: "Recordings that could not be started.",
		}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ringroute_rate_limited_total", Help: "Requests refused or dropped because their source exceeded limits.requests_per_source.",
		}),
	}
	r.MustRegister(m.calls, m.legs, m.setup, m.answerTime, m.relayPackets, m.relayBytes, m.relayDropped, m.relayNotRTP,
		m.reloads, m.reloadFails, m.authFails, m.authBlocked, m.poolExhaust, m.recordFails, m.rateLimited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch registers the gauges of g, read at scrape time. Call it once.
func (m *Metrics) Watch(g Gauges) {
	gauge := func(name, help string, f func() float64) {
		if f != nil {
			m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
		}
	}
	gauge("ringroute_active_calls", "Calls in progress (ringing or talking).", g.ActiveCalls)
	gauge("ringroute_ringing_legs", "Member legs sent and not yet answered or ended.", g.RingingLegs)
	gauge("ringroute_registrations", "Live registered contacts.", g.Registrations)
	gauge("ringroute_media_ports_in_use", "Relay port pairs in use.", g.PortsInUse)
	gauge("ringroute_media_ports_total", "Relay port pairs in the pool.", g.PortsTotal)
	gauge("ringroute_draining", "1 while draining (SIGTERM): new calls are refused.", g.Draining)
}

// CallFinished records a CDR.
func (m *Metrics) CallFinished(r routing.Record) {
	if m == nil {
		return
	}
	group := r.Group
	if group == "" {
		group = "-" // refused before routing: no group
	}
	m.calls.WithLabelValues(group, r.Outcome).Inc()
	for _, l := range r.Legs {
		m.legs.WithLabelValues(strconv.Itoa(l.Code)).Inc()
	}
	if r.Answer != nil && r.Outcome == routing.OutcomeAnswered {
		m.setup.Observe(r.Answer.Sub(r.Start).Seconds())
		for _, l := range r.Legs {
			if l.Reason == "answered" || l.Reason == "picked up" {
				m.answerTime.WithLabelValues(l.Group, l.Member).Observe(float64(l.RingMS) / 1000)
			}
		}
	}
	if r.RTP != nil {
		m.relayPackets.WithLabelValues("caller").Add(float64(r.RTP.FromCaller))
		m.relayPackets.WithLabelValues("member").Add(float64(r.RTP.FromMember))
		m.relayBytes.WithLabelValues("caller").Add(float64(r.RTP.BytesFromCaller))
		m.relayBytes.WithLabelValues("member").Add(float64(r.RTP.BytesFromMember))
		m.relayDropped.Add(float64(r.RTP.Dropped))
		m.relayNotRTP.Add(float64(r.RTP.NotRTP))
	}
}

// Reloaded counts a reload: ok false when the file was refused.
func (m *Metrics) Reloaded(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.reloads.Inc()
	} else {
		m.reloadFails.Inc()
	}
}

// AuthFailed counts a failed digest authentication; blocked when the
// source was refused without its credentials being checked.
func (m *Metrics) AuthFailed(blocked bool) {
	if m == nil {
		return
	}
	if blocked {
		m.authBlocked.Inc()
	} else {
		m.authFails.Inc()
	}
}

// PortPoolExhausted counts a call refused for lack of media ports.
func (m *Metrics) PortPoolExhausted() {
	if m != nil {
		m.poolExhaust.Inc()
	}
}

// RateLimited counts a request refused or dropped by the per-source limit.
func (m *Metrics) RateLimited() {
	if m != nil {
		m.rateLimited.Inc()
	}
}

// RecordingFailed counts a recording that could not start.
func (m *Metrics) RecordingFailed() {
	if m != nil {
		m.recordFails.Inc()
	}
}
