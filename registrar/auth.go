package registrar

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"
)

// Defaults for zero AuthOptions fields.
const (
	DefaultNonceLifetime = 5 * time.Minute
	DefaultMaxNonces     = 65536
)

// Digest algorithms offered and accepted (RFC 8760). The -sess variants
// are not: icholy/digest does not compute them and no SIP phone needs them.
const (
	SHA256 = "SHA-256"
	MD5    = "MD5"
)

// ncWindow is how far below the highest nonce-count seen a count is still
// remembered, to tell a replay from a reordering.
const ncWindow = 64

// AuthResult is the outcome of Verify.
type AuthResult int

const (
	// AuthMissing: no credentials for our realm. Challenge (401 for
	// REGISTER, 407 for INVITE); not a failure.
	AuthMissing AuthResult = iota
	// AuthOK: the user proved the password; the returned user is who
	// they are.
	AuthOK
	// AuthStale: the response was right for the nonce, but the nonce is
	// no longer acceptable (expired, not ours since a restart, or its
	// nonce-count out of order), or the client chose SHA-256 for a user
	// that only has an MD5 ha1. Challenge again with stale=true: the
	// client retries with the new nonce without asking its user. Not a
	// failure.
	AuthStale
	// AuthBad: wrong password, unknown user, replayed nonce-count or
	// malformed credentials. Answer 403 and count a failure for the
	// source (FailureLimiter.Fail).
	AuthBad
)

func (r AuthResult) String() string {
	switch r {
	case AuthMissing:
		return "missing"
	case AuthOK:
		return "ok"
	case AuthStale:
		return "stale"
	case AuthBad:
		return "bad"
	}
	return fmt.Sprintf("AuthResult(%d)", int(r))
}

// Lookup finds a user's secret: the plain password, or ha1 (lower-case hex
// MD5 of "user:realm:password"), or both. ok false: no such user. It is a
// function so that a config reload takes effect on the next request.
type Lookup func(user string) (password, ha1 string, ok bool)

// AuthOptions configure an Auth. Zero values take the defaults.
type AuthOptions struct {
	// Secret keys the nonce HMAC. nil: 32 random bytes, so nonces die with
	// the process (a phone holding one gets AuthStale, not AuthBad, after
	// a restart; see Verify). Pass a persisted secret to keep them.
	Secret []byte
	// NonceLifetime: older nonces get stale=true.
	NonceLifetime time.Duration
	// MaxNonces bounds the nonce-count table.
	MaxNonces int
	// Now is the clock for nonce times; nil: time.Now.
	Now func() time.Time
}

// Auth issues digest challenges and verifies credentials. Nonces are
// stateless (a timestamp, random bytes and an HMAC over both and the
// realm), so any nonce it issued can be checked without having stored it;
// the only state is the nonce-count seen per nonce in use, which refuses
// replays. Safe for concurrent use.
type Auth struct {
	secret   []byte
	lifetime time.Duration
	maxN     int
	now      func() time.Time

	mu        sync.Mutex
	counts    map[string]*ncEntry
	order     []seenNonce // counts' nonces in the order they entered it, from head
	head      int
	floor     int64 // nonces issued at or before this (unix ns) may have been forgotten
	lastPurge time.Time
}

// seenNonce is one entry of Auth.order.
type seenNonce struct {
	nonce  string
	issued int64
}

type ncEntry struct {
	issued int64  // unix ns, from the nonce
	max    uint32 // highest nonce-count accepted
	seen   uint64 // bit i: max-i was accepted
}

// NewAuth makes an Auth.
func NewAuth(opts AuthOptions) *Auth {
	a := &Auth{
		secret:   opts.Secret,
		lifetime: opts.NonceLifetime,
		maxN:     opts.MaxNonces,
		now:      opts.Now,
		counts:   map[string]*ncEntry{},
	}
	if len(a.secret) == 0 {
		a.secret = make([]byte, 32)
		rand.Read(a.secret) // never fails (crypto/rand, Go 1.24+)
	} else {
		a.secret = append([]byte(nil), a.secret...)
	}
	if a.lifetime <= 0 {
		a.lifetime = DefaultNonceLifetime
	}
	if a.maxN <= 0 {
		a.maxN = DefaultMaxNonces
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Nonce layout before base64url: 8 bytes issue time (unix ns, big endian),
// 8 random bytes, the first 16 bytes of HMAC-SHA256(secret, time|random|realm).
// 43 characters: short enough for phones with small nonce buffers.
const (
	nonceTime = 8
	nonceRand = 8
	nonceMAC  = 16
	nonceLen  = nonceTime + nonceRand + nonceMAC
)

func (a *Auth) mac(msg []byte, realm string) []byte {
	m := hmac.New(sha256.New, a.secret)
	m.Write(msg)
	m.Write([]byte(realm))
	return m.Sum(nil)[:nonceMAC]
}

func (a *Auth) newNonce(realm string, now time.Time) string {
	b := make([]byte, nonceLen)
	binary.BigEndian.PutUint64(b, uint64(now.UnixNano()))
	rand.Read(b[nonceTime : nonceTime+nonceRand])
	copy(b[nonceTime+nonceRand:], a.mac(b[:nonceTime+nonceRand], realm))
	return base64.RawURLEncoding.EncodeToString(b)
}

// checkNonce returns the issue time of a nonce this Auth made for realm.
func (a *Auth) checkNonce(nonce, realm string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return 0, false
	}
	if !hmac.Equal(b[nonceTime+nonceRand:], a.mac(b[:nonceTime+nonceRand], realm)) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// opaque is constant per secret and realm. Clients echo it; it is not
// checked, because it is not part of the response hash and so proves
// nothing, and after a restart it would only turn AuthStale into AuthBad.
func (a *Auth) opaque(realm string) string {
	return hex.EncodeToString(a.mac([]byte("opaque"), realm)[:8])
}

// Challenge returns the values for the WWW-Authenticate (401) or
// Proxy-Authenticate (407) headers, one header per value: one per
// algorithm of offer (most preferred first; none given: MD5, then
// SHA-256), all qop="auth", the same fresh nonce and an opaque. stale is
// true when answering AuthStale.
//
// RFC 8760 §2.4 suggests the preferred algorithm first, and SHA-256 is
// preferred; but SIPp 3.6 (the load tester operators use) and many
// deployed phones only read the first challenge and only do MD5, and
// fail outright when it is SHA-256. With MD5 first they work; a client
// that prefers SHA-256 may still answer the second challenge (the RFC
// leaves the choice to local policy), and Verify accepts either.
//
// user is who is expected to answer (the user Verify returned, else the
// To user of a REGISTER or the From user of an INVITE; "" if unknown).
// When lookup says that user has only an ha1, which is an MD5 hash, only
// MD5 is offered, since a SHA-256 response could not be checked. Unknown
// or empty users get both, so the challenge does not reveal who exists.
func (a *Auth) Challenge(realm string, stale bool, user string, lookup Lookup, offer ...string) []string {
	nonce := a.newNonce(realm, a.now())
	if len(offer) == 0 {
		offer = []string{MD5, SHA256}
	}
	algs := offer
	if user != "" && lookup != nil {
		if pw, ha1, ok := lookup(user); ok && pw == "" && ha1 != "" {
			algs = []string{MD5}
		}
	}
	out := make([]string, 0, len(algs))
	for _, alg := range algs {
		c := digest.Challenge{
			Realm:     realm,
			Nonce:     nonce,
			Opaque:    a.opaque(realm),
			Algorithm: alg,
			QOP:       []string{"auth"},
			Stale:     stale,
		}
		out = append(out, c.String())
	}
	return out
}

// Verify checks the Authorization (REGISTER) or Proxy-Authorization
// (INVITE) header values of a request against realm. method is the SIP
// method of the request ("REGISTER", "INVITE"). Values that are not
// Digest or are for another realm are ignored; the first for our realm is
// checked. user is the user name the credentials claim (set whenever they
// were parsed, also on AuthBad and AuthStale, for logs and for
// Challenge); err says why on AuthBad and AuthStale, for logs, and is nil
// otherwise.
//
// The digest-uri is not compared with the request-URI: phones differ in
// what they put there, and the nonce-count already stops a captured
// response from being used twice.
//
// A nonce that fails the HMAC (issued before a restart, or forged) with a
// response that is right for it gives AuthStale: whoever sent it knows
// the password, and a new challenge is what brings a phone back after a
// restart. With a wrong response it is AuthBad like any other.
func (a *Auth) Verify(realm, method string, headers []string, lookup Lookup) (user string, res AuthResult, err error) {
	var cred *digest.Credentials
	var parseErr error
	for _, h := range headers {
		h = strings.TrimSpace(h)
		if !digest.IsDigest(h) {
			continue
		}
		c, err := digest.ParseCredentials(h)
		if err != nil {
			parseErr = err
			continue
		}
		if c.Realm == realm {
			cred = c
			break
		}
	}
	if cred == nil {
		if parseErr != nil {
			return "", AuthBad, fmt.Errorf("registrar: malformed credentials: %w", parseErr)
		}
		return "", AuthMissing, nil
	}
	user = cred.Username
	fail := func(format string, args ...any) (string, AuthResult, error) {
		return user, AuthBad, fmt.Errorf("registrar: user %q: "+format, append([]any{user}, args...)...)
	}
	stale := func(format string, args ...any) (string, AuthResult, error) {
		return user, AuthStale, fmt.Errorf("registrar: user %q: "+format, append([]any{user}, args...)...)
	}

	switch {
	case user == "":
		return fail("no username")
	case cred.Userhash:
		return fail("userhash was not offered")
	case !strings.EqualFold(cred.QOP, "auth"):
		return fail("qop %q, want auth", cred.QOP)
	case cred.Nc <= 0:
		return fail("nonce-count %d", cred.Nc)
	case cred.Cnonce == "" || cred.Nonce == "" || cred.URI == "" || cred.Response == "":
		return fail("incomplete credentials")
	}
	alg := strings.ToUpper(cred.Algorithm)
	switch alg {
	case "", MD5:
		alg = MD5
	case SHA256:
	default:
		return fail("algorithm %q was not offered", cred.Algorithm)
	}
	if lookup == nil {
		return fail("no user lookup")
	}
	password, ha1, ok := lookup(user)
	if !ok {
		// Hash anyway, so an unknown user takes as long as a wrong
		// password and the timing does not tell which names exist.
		password = "\x00unknown"
	}
	o := digest.Options{
		Method:   method,
		URI:      cred.URI,
		Username: user,
		Cnonce:   cred.Cnonce,
		Count:    cred.Nc,
	}
	switch {
	case password != "":
		o.Password = password
	case ha1 != "" && alg == MD5:
		o.A1 = strings.ToLower(ha1)
	case ha1 != "":
		return stale("SHA-256 response but only an MD5 ha1 is configured; challenge with MD5 only")
	default:
		return fail("no password configured")
	}
	chal := digest.Challenge{
		Realm:     realm,
		Nonce:     cred.Nonce,
		Opaque:    cred.Opaque,
		Algorithm: alg,
		QOP:       []string{"auth"},
	}
	want, derr := digest.Digest(&chal, o)
	if derr != nil {
		return fail("digest: %v", derr)
	}
	if !ok {
		return fail("unknown user")
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(cred.Response)), []byte(want.Response)) != 1 {
		return fail("wrong response (password)")
	}

	issued, ok := a.checkNonce(cred.Nonce, realm)
	if !ok {
		return stale("nonce not issued by this process (restart or forged)")
	}
	now := a.now()
	age := now.Sub(time.Unix(0, issued))
	if age < 0 || age > a.lifetime {
		return stale("nonce is %s old", age.Round(time.Second))
	}
	switch a.count(cred.Nonce, issued, uint32(cred.Nc), now) {
	case ncReplay:
		return fail("nonce-count %08x replayed", cred.Nc)
	case ncStale:
		return stale("nonce-count %08x out of order", cred.Nc)
	}
	return user, AuthOK, nil
}

type ncVerdict int

const (
	ncOK ncVerdict = iota
	ncReplay
	ncStale
)

// count records nc for nonce: accepted when higher than any seen. A count
// seen before is a replay; a lower unseen one (requests reordered on the
// way), or one for a nonce the table had to forget, is refused as stale
// so the client simply gets a fresh nonce.
func (a *Auth) count(nonce string, issued int64, nc uint32, now time.Time) ncVerdict {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.counts[nonce]
	if e == nil {
		if issued <= a.floor {
			return ncStale
		}
		a.makeRoomLocked(now)
		a.counts[nonce] = &ncEntry{issued: issued, max: nc, seen: 1}
		a.order = append(a.order, seenNonce{nonce, issued})
		return ncOK
	}
	if nc > e.max {
		if d := nc - e.max; d >= ncWindow {
			e.seen = 1
		} else {
			e.seen = e.seen<<d | 1
		}
		e.max = nc
		return ncOK
	}
	d := e.max - nc
	if d < ncWindow && e.seen&(1<<d) != 0 {
		return ncReplay
	}
	return ncStale
}

// makeRoomLocked forgets nonces past their lifetime, at most once a
// lifetime (Verify refuses them as stale by their timestamp before it gets
// here, so forgetting them is safe). When the table is still full it
// forgets the nonce that entered it first and raises the floor to that
// nonce's issue time: every nonce issued no later than a forgotten one is
// then stale, so forgetting never lets a replay through. Only this raises
// the floor, so a wall clock stepping back does not make fresh nonces
// stale unless the table is full. Each call is O(1) but for the purge once
// a lifetime: a full table under a registration storm must not cost a
// scan per new nonce.
func (a *Auth) makeRoomLocked(now time.Time) {
	if now.Sub(a.lastPurge) >= a.lifetime {
		a.lastPurge = now
		limit := now.Add(-a.lifetime).UnixNano()
		kept := a.order[:0]
		for _, o := range a.order[a.head:] {
			if e := a.counts[o.nonce]; e != nil && e.issued < limit {
				delete(a.counts, o.nonce)
				continue
			}
			if a.counts[o.nonce] != nil {
				kept = append(kept, o)
			}
		}
		clear(a.order[len(kept):])
		a.order, a.head = kept, 0
	}
	for len(a.counts) >= a.maxN && a.head < len(a.order) {
		o := a.order[a.head]
		a.order[a.head] = seenNonce{}
		a.head++
		if _, ok := a.counts[o.nonce]; ok {
			delete(a.counts, o.nonce)
			a.floor = max(a.floor, o.issued)
		}
	}
	if a.head > len(a.order)/2 {
		n := copy(a.order, a.order[a.head:])
		clear(a.order[n:])
		a.order, a.head = a.order[:n], 0
	}
}
