// Package sip is ringroute's SIP edge, built on sipgo: the listeners, one
// handler per method, the caller-facing (A) and member-facing (B) dialogs of
// every call, and the glue that turns SIP transactions into routing events
// and routing actions into SIP messages.
//
// Decisions about a call (who rings, who wins, where it falls back) are made
// in package routing; this package only carries them out and reports what
// the network said. A call runs in steps, one at a time and in order, on
// no goroutine of its own (call.begin): whatever has something for it
// kicks it, and a step takes the call's routing.Runner and, beside it, the
// caller's and every ringing leg's INVITE transaction as far as they go,
// so a ringing call costs no goroutine however many phones it rings.
// sipgo's per-message goroutines for everything else only post events to
// it, which absorbs sipgo delivering messages of one dialog out of order.
//
// sipgo's own "sip" package is imported as sipmsg throughout, so it never
// clashes with this one.
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sipgo "github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/ringroute/ringroute/config"
	"github.com/ringroute/ringroute/media"
	"github.com/ringroute/ringroute/metrics"
	"github.com/ringroute/ringroute/registrar"
	"github.com/ringroute/ringroute/routing"
)

// record is where every finished call's CDR goes: the metrics, then the
// CDR file, so that whoever has read a call's CDR line also sees it counted
// (TestMetricsCountCalls flaked on the other order under -race).
func (s *Server) record(r routing.Record) {
	s.metrics.CallFinished(r)
	if s.cdr != nil {
		s.cdr.Write(r)
	}
}

// CDRWriter receives one record per finished call.
type CDRWriter interface {
	Write(r routing.Record)
}

// Options are a Server's collaborators. Log is required.
type Options struct {
	Log   *zap.Logger
	CDR   CDRWriter     // nil: no CDR
	Clock routing.Clock // nil: the system clock
	// Seed makes random strategies reproducible: call n gets a source
	// seeded with (Seed, n). 0 picks a random seed.
	Seed uint64
	// Version goes into User-Agent and Server headers.
	Version string
	// Metrics receives what happens; nil: none.
	Metrics *metrics.Metrics
}

// Server is one running SIP endpoint: its listeners, its clients and every
// call in progress.
type Server struct {
	log     *zap.Logger
	cfg     atomic.Pointer[config.Config]
	cdr     CDRWriter
	metrics *metrics.Metrics
	clock   routing.Clock
	seed    uint64
	callSeq atomic.Uint64
	agent   string
	// The headers every INVITE to a member and every response carries,
	// made once: nothing changes a header once it is in a message, and
	// each ringing leg kept two of its own.
	hdrAllow, hdrUserAgent, hdrServer sipmsg.Header
	wireShared                        []byte // see wireHeaders

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	// One client per transport: sipgo must not pin the UDP listener as the
	// source of TCP requests (it would pick the wrong connection), and UDP
	// requests must leave from the listener so peers and NATs see one
	// address.
	clients map[string]*sipgo.Client

	host string // host for Via, Contact and From: advertise, else the listen IP
	// advertiseIP is `advertise` resolved once at start when it is a host
	// name: SDP needs an address.
	advertiseIP netip.Addr
	addrs       map[string]netip.AddrPort // bound listener per transport
	contacts    map[string]*sipmsg.ContactHeader
	closers     []func() error
	udpConn     *net.UDPConn
	listening   sync.WaitGroup
	steppers    steppers // step calls (call.kick)
	// cert is what tls:// listeners present. SetConfig reads the files
	// again, so a renewed certificate is served from the next handshake
	// without a restart.
	cert atomic.Pointer[tls.Certificate]

	dialogs dialogTable
	members members
	itx     inviteTxs // our transactions of the INVITEs read over UDP
	setups  setupTable
	// What is left of transactions sipgo no longer keeps (see linger):
	// recent has the Call-IDs of legs that ended, for stray 2xx; invites
	// the INVITEs that reached us, so a retransmission that outlives its
	// transaction is absorbed, not taken for a new call; byes the BYEs we
	// accepted, so a retransmitted one gets its 200 again, not a 481;
	// failed the INVITEs of ours that got a failure, so a retransmitted
	// failure is ACKed again.
	recent   set
	invites  set
	byes     set
	failed   recent[*ackTarget]
	draining atomic.Bool
	calls    sync.WaitGroup
	active   sync.Map // *call -> struct{}: calls whose runner is still running
	live     struct{ calls, legs, ringing atomic.Int64 }
	pool     *media.Pool // nil in media mode direct
	musics   media.Musics
	// closing is closed when Close starts: every goroutine of ours that
	// waits on the network returns without writing again, and bg counts
	// them, so that nothing writes after the listeners are gone (sipgo
	// would open a fresh socket for it).
	closing chan struct{}
	// uaClosing is set as Close hands over to sipgo's own Close; see
	// sweepLate.
	uaClosing atomic.Bool
	bg        goroutines
	counters  struct {
		poolExhausted  atomic.Uint64
		recordFailures atomic.Uint64
		authFailures   atomic.Uint64
		authBlocked    atomic.Uint64
	}
	state   *routing.State // what every call shares: round robin, in use, calls per group
	flood   *sourceLimiter
	reg     *registrar.Registrar
	auth    *registrar.Auth
	limiter *registrar.FailureLimiter
}

// New builds a Server for cfg; Start binds it.
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Log == nil {
		return nil, errors.New("sip: Options.Log is required")
	}
	s := &Server{
		log:     opts.Log,
		cdr:     opts.CDR,
		metrics: opts.Metrics,
		clock:   opts.Clock,
		seed:    opts.Seed,
		agent:   "ringroute",
		clients: map[string]*sipgo.Client{},
		addrs:   map[string]netip.AddrPort{},
		closing: make(chan struct{}),
	}
	if opts.Version != "" {
		s.agent = "ringroute/" + opts.Version
	}
	s.hdrAllow = sipmsg.NewHeader("Allow", allowed)
	s.hdrUserAgent = sipmsg.NewHeader("User-Agent", s.agent)
	s.hdrServer = sipmsg.NewHeader("Server", s.agent)
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if s.seed == 0 {
		s.seed = rand.Uint64()
	}
	s.cfg.Store(cfg)
	s.state = routing.NewState()
	s.reg = registrar.New(registrar.Options{
		MinExpires: cfg.Registrar.MinExpires,
		MaxExpires: cfg.Registrar.MaxExpires,
		StateFile:  cfg.Registrar.StateFile,
		Now:        s.clock.Now,
		OnError:    func(err error) { s.log.Error("registrar state file", zap.Error(err)) },
	})
	s.auth = registrar.NewAuth(registrar.AuthOptions{Now: s.clock.Now})
	s.flood = newSourceLimiter(cfg.Limits.RequestsPerSource, s.clock.Now)
	s.limiter = registrar.NewFailureLimiter(cfg.Limits.AuthFailuresPerSource, registrar.LimiterOptions{Now: s.clock.Now})
	s.dialogs.m = map[string]dialogRef{}
	s.recent.init(s.clock, recentKeep)
	s.invites.init(s.clock, recentKeep)
	s.byes.init(s.clock, recentKeep)
	s.failed.init(s.clock, linger)

	slogger := newSlog(s.log)
	setDefaultLoggerOnce.Do(func() {
		sipmsg.SetDefaultLogger(slogger)
		// SDP offers with many codecs and ICE lines pass 1300 bytes; sipgo
		// refuses UDP writes above UDPMTUSize-200 and has no fallback to TCP.
		sipmsg.UDPMTUSize = 65000
		// sipgo reads datagrams into a 32 KiB buffer and drops what it
		// cut: take any UDP datagram (at most 65507 bytes of payload).
		sipmsg.TransportBufferReadSize = 65535
	})

	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(s.agent),
		sipgo.WithUserAgentTransactionLayerOptions(
			sipmsg.WithTransactionLayerLogger(slogger),
			sipmsg.WithTransactionLayerUnhandledResponseHandler(s.onResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(
			sipmsg.WithTransportLayerLogger(slogger),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	s.ua = ua
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slogger))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	s.srv = srv
	s.routes()
	return s, nil
}

// sweepLate closes what sipgo opened, after Close, for a request it read
// before. sipgo hands each datagram to a goroutine of its own, which finds
// the connection to answer on before it reaches our handler; one that runs
// only after sipgo's Close has emptied its connection pool opens a new
// socket (and a goroutine reading it) that nothing would ever close. Every
// such request reaches guard, which calls this: emptying the pool again
// closes the socket the goroutine has just opened.
func (s *Server) sweepLate() {
	if s.uaClosing.Load() {
		_ = s.ua.TransportLayer().Close()
	}
}

// Config is the snapshot new calls start with.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// SetConfig makes cfg the snapshot for new calls; calls in progress keep
// theirs.
func (s *Server) SetConfig(cfg *config.Config) {
	s.cfg.Store(cfg)
	s.state.Reload(cfg)
	if n := s.reg.Reload(registrar.UserNames(cfg.Users), cfg.Registrar.MinExpires, cfg.Registrar.MaxExpires); n > 0 {
		s.log.Info("reload removed the bindings of users no longer configured", zap.Int("bindings", n))
	}
	s.limiter.SetLimit(cfg.Limits.AuthFailuresPerSource)
	s.flood.setRate(cfg.Limits.RequestsPerSource)
	if s.cert.Load() != nil {
		if err := s.loadCert(cfg.TLS); err != nil {
			s.log.Error("tls certificate not reloaded; the old one is still served", zap.Error(err))
		} else {
			s.log.Info("tls certificate reloaded", zap.String("cert", cfg.TLS.Cert))
		}
	}
}

// loadCert reads the tls:// certificate and key.
func (s *Server) loadCert(c config.TLS) error {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return fmt.Errorf("sip: tls.cert %s, tls.key %s: %w", c.Cert, c.Key, err)
	}
	s.cert.Store(&cert)
	return nil
}

// Start binds every `listen` address of the config and serves on it.
// Port 0 binds a free port; Addr tells which.
func (s *Server) Start() error {
	cfg := s.Config()
	if n, err := s.reg.Load(registrar.UserNames(cfg.Users)); err != nil {
		s.log.Warn("registrations not restored", zap.String("state_file", cfg.Registrar.StateFile), zap.Error(err))
	} else if n > 0 {
		s.log.Info("registrations restored", zap.Int("bindings", n))
	}
	// Before any call: an idle server already has its steppers, so that
	// its goroutine count does not move with the first call.
	s.steppers.begin()
	sweep, stopSweep := context.WithCancel(context.Background())
	s.spawn(func() { s.reg.Run(sweep, 10*time.Second) })
	s.spawn(func() { <-s.closing; stopSweep() })
	if cfg.Media.Relay() {
		p, err := media.NewPool(cfg.Media.Address, cfg.Media.PortMin, cfg.Media.PortMax)
		if err != nil {
			return fmt.Errorf("sip: media ports: %w", err)
		}
		s.pool = p
	}
	// Bind everything first, then build the clients (they need the bound
	// ports), then serve: a request must never find a listener without its
	// client.
	var serve []func()
	for _, l := range cfg.Listen {
		f, err := s.bind(l)
		if err != nil {
			s.Close()
			return err
		}
		serve = append(serve, f)
	}
	s.host = cfg.Advertise
	if s.host == "" {
		s.host = s.defaultHost()
	} else if _, err := netip.ParseAddr(s.host); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", s.host)
		cancel()
		if err != nil || len(ips) == 0 {
			s.log.Warn("advertise does not resolve; SDP shows the listen address", zap.String("advertise", s.host), zap.Error(err))
		} else {
			s.advertiseIP = ips[0].Unmap()
			for _, ip := range ips {
				if ip.Is4() || ip.Is4In6() {
					s.advertiseIP = ip.Unmap()
					break
				}
			}
		}
	}
	for tr, ap := range s.addrs {
		opts := []sipgo.ClientOption{
			sipgo.WithClientHostname(s.host),
			sipgo.WithClientPort(int(ap.Port())),
			sipgo.WithClientLogger(newSlog(s.log)),
		}
		if tr == "udp" {
			// Pin the listener as the source of every UDP request: the
			// member sees one address, and CANCEL leaves from where the
			// INVITE did.
			opts = append(opts, sipgo.WithClientConnectionAddr(ap.String()), sipgo.WithClientNAT())
		}
		c, err := sipgo.NewClient(s.ua, opts...)
		if err != nil {
			s.Close()
			return fmt.Errorf("sip: client for %s: %w", tr, err)
		}
		s.clients[tr] = c
	}
	if _, ok := s.clients["udp"]; !ok {
		// Members on UDP are still reachable from an ephemeral socket.
		c, err := sipgo.NewClient(s.ua, sipgo.WithClientHostname(s.host), sipgo.WithClientNAT())
		if err != nil {
			s.Close()
			return err
		}
		s.clients["udp"] = c
	}
	s.contacts = map[string]*sipmsg.ContactHeader{}
	for _, tr := range []string{"udp", "tcp", "tls"} {
		s.contacts[tr] = s.buildContact(tr)
	}
	s.wireShared = s.wireHeaders()
	for _, f := range serve {
		f()
	}
	return s.waitUDP()
}

// bind opens the socket of one listener and returns the function that
// starts serving it.
func (s *Server) bind(l config.Listen) (func(), error) {
	switch l.Transport {
	case "udp":
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, fmt.Errorf("sip: listen udp://%s: %w", l.Addr, err)
		}
		_ = pc.SetReadBuffer(4 << 20)
		_ = pc.SetWriteBuffer(4 << 20)
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		s.addrs["udp"] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		s.closers = append(s.closers, pc.Close)
		s.udpConn = pc
		return func() {
			s.listening.Add(1)
			go func() {
				defer s.listening.Done()
				if err := s.srv.ServeUDP(newUDPReader(s, pc)); err != nil && !errors.Is(err, net.ErrClosed) {
					s.log.Error("udp listener stopped", zap.Error(err))
				}
			}()
		}, nil
	case "tcp":
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, fmt.Errorf("sip: listen tcp://%s: %w", l.Addr, err)
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		s.addrs["tcp"] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		s.closers = append(s.closers, ln.Close)
		return func() {
			s.listening.Add(1)
			go func() {
				defer s.listening.Done()
				if err := s.srv.ServeTCP(ln); err != nil && !errors.Is(err, net.ErrClosed) {
					s.log.Error("tcp listener stopped", zap.Error(err))
				}
			}()
		}, nil
	case "tls":
		if s.cert.Load() == nil {
			if err := s.loadCert(s.Config().TLS); err != nil {
				return nil, fmt.Errorf("sip: listen tls://%s: %w", l.Addr, err)
			}
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, fmt.Errorf("sip: listen tls://%s: %w", l.Addr, err)
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		s.addrs["tls"] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		s.closers = append(s.closers, ln.Close)
		tl := tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return s.cert.Load(), nil
			},
		})
		return func() {
			s.listening.Add(1)
			go func() {
				defer s.listening.Done()
				if err := s.srv.ServeTLS(tl); err != nil && !errors.Is(err, net.ErrClosed) {
					s.log.Error("tls listener stopped", zap.Error(err))
				}
			}()
		}, nil
	}
	return nil, fmt.Errorf("sip: listen %s://%s: unknown transport", l.Transport, l.Addr)
}

// waitUDP waits until sipgo has the UDP listener in its connection pool:
// it adds it on the serving goroutine, and a request pinned to it before
// that fails (sipgo #367).
func (s *Server) waitUDP() error {
	if s.udpConn == nil {
		return nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		if c, _ := s.ua.TransportLayer().GetConnection("udp", s.udpConn.LocalAddr().String()); c != nil {
			c.TryClose() // drop the reference GetConnection took
			return nil
		}
		if time.Now().After(deadline) {
			s.Close()
			return fmt.Errorf("sip: udp listener %s did not come up", s.udpConn.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
}

// defaultHost is the address peers can reach us at when no `advertise` is
// set: the first listener's IP, or when that is a wildcard, the address the
// kernel would use toward the outside, else loopback.
func (s *Server) defaultHost() string {
	for _, tr := range []string{"udp", "tcp"} {
		if ap, ok := s.addrs[tr]; ok && !ap.Addr().IsUnspecified() {
			return ap.Addr().String()
		}
	}
	if c, err := net.Dial("udp", "192.0.2.1:9"); err == nil {
		defer c.Close()
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
			return ua.IP.String()
		}
	}
	return "127.0.0.1"
}

// Addr is the bound address of the listener for transport ("udp", "tcp").
func (s *Server) Addr(transport string) (netip.AddrPort, bool) {
	ap, ok := s.addrs[transport]
	return ap, ok
}

// Drain stops taking new calls: INVITEs get 503 with Retry-After. Calls in
// progress go on.
func (s *Server) Drain() { s.draining.Store(true) }

// Gauges are what /metrics reads at scrape time.
func (s *Server) Gauges() metrics.Gauges {
	return metrics.Gauges{
		ActiveCalls:   func() float64 { return float64(s.live.calls.Load()) },
		RingingLegs:   func() float64 { return float64(s.live.ringing.Load()) },
		Registrations: func() float64 { return float64(s.reg.Count()) },
		PortsInUse:    func() float64 { n, _ := s.MediaPorts(); return float64(n) },
		PortsTotal:    func() float64 { _, n := s.MediaPorts(); return float64(n) },
		Draining: func() float64 {
			if s.Draining() {
				return 1
			}
			return 0
		},
	}
}

// Abort ends every call in progress: ringing calls are refused with 503,
// answered ones hung up on both sides. It is the end of a drain that timed
// out; Wait then returns once the BYEs and CANCELs are done.
func (s *Server) Abort() {
	s.active.Range(func(k, _ any) bool {
		k.(*call).post(routing.Shutdown{})
		return true
	})
}

// Live counts the calls and legs still alive, for leak checks and the admin
// API.
func (s *Server) Live() (calls, legs int) {
	return int(s.live.calls.Load()), int(s.live.legs.Load())
}

// Wait blocks until every call has ended or ctx is done.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.calls.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the listeners and sipgo. Calls still in progress are cut off;
// drain first.
func (s *Server) Close() error {
	select {
	case <-s.closing:
	default:
		// Calls still up end properly first: CANCEL and BYE go out and
		// their CDRs are written; a second of grace, since whoever closes
		// wants it over (a drain has already waited).
		if calls, _ := s.Live(); calls > 0 {
			s.Abort()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.Wait(ctx)
			cancel()
		}
		close(s.closing)
		// What is left ends now: legs stop waiting, runners see their
		// calls through without another request on the wire.
		s.Abort()
	}
	// Our goroutines return at once now; wait for them while the sockets
	// are still there, but not forever.
	select {
	case <-s.bg.close():
	case <-time.After(3 * time.Second):
		s.log.Warn("sip: goroutines still busy at close")
	}
	s.itx.close()
	s.steppers.close()
	for _, c := range s.closers {
		_ = c()
	}
	s.closers = nil
	s.listening.Wait()
	s.recent.close()
	s.invites.close()
	s.byes.close()
	s.failed.close()
	s.uaClosing.Store(true)
	err := s.ua.Close()
	if rerr := s.reg.Close(); rerr != nil {
		s.log.Error("registrar state file", zap.Error(rerr))
	}
	return err
}

// spawn runs f on a goroutine that Close waits for; once Close waits,
// not at all (f would write to sockets on their way out), and it reports
// false.
func (s *Server) spawn(f func()) bool {
	if !s.bg.add() {
		return false
	}
	go func() {
		defer s.bg.done()
		f()
	}()
	return true
}

// client is the sipgo client for a transport name as sipgo spells it
// ("UDP", "TCP").
func (s *Server) client(transport string) (*sipgo.Client, bool) {
	c, ok := s.clients[sipmsg.NetworkToLower(transport)]
	return c, ok
}

// contact is our Contact header for a transport. Built once per transport
// and shared: a header appended to a message is only read (callers that
// change one Clone it first).
func (s *Server) contact(transport string) *sipmsg.ContactHeader {
	tr := sipmsg.NetworkToLower(transport)
	if c, ok := s.contacts[tr]; ok {
		return c
	}
	return s.buildContact(tr)
}

func (s *Server) buildContact(tr string) *sipmsg.ContactHeader {
	u := sipmsg.Uri{Scheme: "sip", User: "ringroute", Host: s.host}
	if ap, ok := s.addrs[tr]; ok {
		u.Port = int(ap.Port())
	}
	if tr != "udp" {
		u.UriParams = sipmsg.NewParams()
		u.UriParams.Add("transport", tr)
	}
	return &sipmsg.ContactHeader{Address: u}
}

// newRand gives each call its own reproducible source of chance.
func (s *Server) newRand() *rand.Rand {
	n := s.callSeq.Add(1)
	return rand.New(rand.NewPCG(s.seed, n))
}

// systemClock is the wall clock for call runners.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) AfterFunc(d time.Duration, f func()) routing.Timer {
	return time.AfterFunc(d, f)
}

// itoa avoids fmt on hot paths.
func itoa(n int) string { return strconv.Itoa(n) }

// MediaPorts reports the relay's port pairs in use and in all (0, 0 in
// direct mode).
func (s *Server) MediaPorts() (inUse, size int) {
	if s.pool == nil {
		return 0, 0
	}
	return s.pool.InUse(), s.pool.Size()
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }
