package registrar

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icholy/digest"
)

const realm = "pbx.example.com"

// users: alice has a password, hank only an ha1 (computed by hand below).
func lookup(user string) (string, string, bool) {
	switch user {
	case "alice":
		return "s3cret", "", true
	case "hank":
		return "", hexHash(md5.New(), "hank:"+realm+":hunter2"), true
	}
	return "", "", false
}

func hexHash(h hash.Hash, s string) string {
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// response is RFC 7616 §3.4.1 with qop=auth, computed here by hand, not by
// icholy/digest, so the test does not check the library against itself.
func response(alg, user, password, ha1, method, uri, nonce, nc, cnonce string) string {
	newH := md5.New
	if alg == "SHA-256" {
		newH = sha256.New
	}
	if ha1 == "" {
		ha1 = hexHash(newH(), user+":"+realm+":"+password)
	}
	ha2 := hexHash(newH(), method+":"+uri)
	return hexHash(newH(), ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2)
}

// creds is one Authorization header value as a phone would send it.
type creds struct {
	alg, user, password, ha1, method, uri, nonce, nc, cnonce, response string
	omitAlg                                                            bool
}

func (c creds) header() string {
	resp := c.response
	if resp == "" {
		resp = response(c.alg, c.user, c.password, c.ha1, c.method, c.uri, c.nonce, c.nc, c.cnonce)
	}
	h := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", cnonce="%s", qop=auth, nc=%s, opaque="x"`,
		c.user, realm, c.nonce, c.uri, resp, c.cnonce, c.nc)
	if !c.omitAlg {
		h += ", algorithm=" + c.alg
	}
	return h
}

var nonceRE = regexp.MustCompile(`nonce="([^"]+)"`)

func nonceOf(t testing.TB, challenge string) string {
	t.Helper()
	m := nonceRE.FindStringSubmatch(challenge)
	if m == nil {
		t.Fatalf("no nonce in %q", challenge)
	}
	return m[1]
}

func newTestAuth(c *fakeClock) *Auth {
	return NewAuth(AuthOptions{Secret: []byte("test secret"), Now: c.Now})
}

func TestChallenge(t *testing.T) {
	c := newClock()
	a := newTestAuth(c)
	ch := a.Challenge(realm, false, "", lookup)
	if len(ch) != 2 {
		t.Fatalf("challenges %q, want MD5 and SHA-256", ch)
	}
	for i, alg := range []string{"MD5", "SHA-256"} { // MD5 first: see Challenge
		v := ch[i]
		for _, part := range []string{`Digest realm="` + realm + `"`, "algorithm=" + alg, `qop="auth"`, `opaque="`} {
			if !strings.Contains(v, part) {
				t.Errorf("challenge %d %q lacks %q", i, v, part)
			}
		}
		if strings.Contains(v, "stale") {
			t.Errorf("challenge %q is stale", v)
		}
	}
	if nonceOf(t, ch[0]) != nonceOf(t, ch[1]) {
		t.Errorf("the two challenges have different nonces")
	}
	if n2 := nonceOf(t, a.Challenge(realm, false, "", lookup)[0]); n2 == nonceOf(t, ch[0]) {
		t.Errorf("two challenges share a nonce")
	}
	stale := a.Challenge(realm, true, "alice", lookup)
	if len(stale) != 2 || !strings.Contains(stale[0], "stale=true") || !strings.Contains(stale[1], "stale=true") {
		t.Errorf("stale challenge %q", stale)
	}
	// ha1-only users cannot answer SHA-256; unknown users get both.
	if h := a.Challenge(realm, false, "hank", lookup); len(h) != 1 || !strings.Contains(h[0], "algorithm=MD5") {
		t.Errorf("challenge for an ha1 user %q, want MD5 only", h)
	}
	if u := a.Challenge(realm, false, "nobody", lookup); len(u) != 2 {
		t.Errorf("challenge for an unknown user %q, want both", u)
	}
}

func TestVerify(t *testing.T) {
	c := newClock()
	a := newTestAuth(c)
	other := NewAuth(AuthOptions{Now: c.Now}) // another process: another secret
	fresh := func() string { return nonceOf(t, a.Challenge(realm, false, "", lookup)[0]) }
	base := func(alg string) creds {
		return creds{alg: alg, user: "alice", password: "s3cret", method: "REGISTER",
			uri: "sip:" + realm, nonce: fresh(), nc: "00000001", cnonce: "0a4f113b"}
	}
	forge := func(n string) string { // flip one bit of the HMAC part
		b, _ := base64.RawURLEncoding.DecodeString(n)
		b[len(b)-1] ^= 1
		return base64.RawURLEncoding.EncodeToString(b)
	}

	tests := []struct {
		name    string
		headers func() []string
		method  string // default REGISTER
		advance time.Duration
		user    string
		want    AuthResult
	}{
		{"MD5 right", func() []string { return []string{base("MD5").header()} }, "", 0, "alice", AuthOK},
		{"MD5 without algorithm parameter", func() []string { x := base("MD5"); x.omitAlg = true; return []string{x.header()} }, "", 0, "alice", AuthOK},
		{"SHA-256 right", func() []string { return []string{base("SHA-256").header()} }, "", 0, "alice", AuthOK},
		{"INVITE with its own method", func() []string {
			x := base("SHA-256")
			x.method, x.uri = "INVITE", "sip:600@"+realm
			return []string{x.header()}
		}, "INVITE", 0, "alice", AuthOK},
		{"method mismatch", func() []string { return []string{base("MD5").header()} }, "INVITE", 0, "alice", AuthBad},
		{"ha1 user MD5", func() []string {
			x := base("MD5")
			x.user, x.password, x.ha1 = "hank", "", hexHash(md5.New(), "hank:"+realm+":hunter2")
			return []string{x.header()}
		}, "", 0, "hank", AuthOK},
		{"ha1 user SHA-256 is re-challenged", func() []string {
			x := base("SHA-256")
			x.user, x.password = "hank", "hunter2"
			return []string{x.header()}
		}, "", 0, "hank", AuthStale},
		{"wrong password", func() []string { x := base("MD5"); x.password = "guess"; return []string{x.header()} }, "", 0, "alice", AuthBad},
		{"wrong password SHA-256", func() []string { x := base("SHA-256"); x.password = "guess"; return []string{x.header()} }, "", 0, "alice", AuthBad},
		{"unknown user", func() []string { x := base("MD5"); x.user = "mallory"; return []string{x.header()} }, "", 0, "mallory", AuthBad},
		{"expired nonce, right password", func() []string { return []string{base("MD5").header()} }, "", 6 * time.Minute, "alice", AuthStale},
		{"expired nonce, wrong password", func() []string { x := base("MD5"); x.password = "guess"; return []string{x.header()} }, "", 6 * time.Minute, "alice", AuthBad},
		{"just within the lifetime", func() []string { return []string{base("MD5").header()} }, "", 5 * time.Minute, "alice", AuthOK},
		{"forged nonce in a captured header", func() []string {
			x := base("MD5")
			x.response = response(x.alg, x.user, x.password, "", x.method, x.uri, x.nonce, x.nc, x.cnonce)
			x.nonce = forge(x.nonce)
			return []string{x.header()}
		}, "", 0, "alice", AuthBad},
		{"made-up nonce", func() []string { x := base("MD5"); x.nonce = "AAAA"; x.password = "guess"; return []string{x.header()} }, "", 0, "alice", AuthBad},
		{"forged nonce, right password: re-challenge", func() []string { x := base("MD5"); x.nonce = forge(x.nonce); return []string{x.header()} }, "", 0, "alice", AuthStale},
		{"nonce of a previous process, right password", func() []string {
			x := base("SHA-256")
			x.nonce = nonceOf(t, other.Challenge(realm, false, "", lookup)[0])
			return []string{x.header()}
		}, "", 0, "alice", AuthStale},
		{"nonce issued for another realm", func() []string {
			x := base("MD5")
			x.nonce = nonceOf(t, a.Challenge("other.example.com", false, "", lookup)[0])
			return []string{x.header()}
		}, "", 0, "alice", AuthStale},
		{"nc 0", func() []string { x := base("MD5"); x.nc = "00000000"; return []string{x.header()} }, "", 0, "alice", AuthBad},
		{"MD5-sess not offered", func() []string {
			x := base("MD5")
			return []string{strings.Replace(x.header(), "algorithm=MD5", "algorithm=MD5-sess", 1)}
		}, "", 0, "alice", AuthBad},
		{"no qop", func() []string {
			x := base("MD5")
			return []string{fmt.Sprintf(`Digest username="alice", realm="%s", nonce="%s", uri="%s", response="%s"`,
				realm, x.nonce, x.uri, hexHash(md5.New(), hexHash(md5.New(), "alice:"+realm+":s3cret")+":"+x.nonce+":"+hexHash(md5.New(), "REGISTER:"+x.uri)))}
		}, "", 0, "alice", AuthBad},
		{"no header", func() []string { return nil }, "", 0, "", AuthMissing},
		{"Basic only", func() []string { return []string{"Basic YWxpY2U6czNjcmV0"} }, "", 0, "", AuthMissing},
		{"another realm only", func() []string {
			return []string{strings.Replace(base("MD5").header(), `realm="`+realm+`"`, `realm="elsewhere"`, 1)}
		}, "", 0, "", AuthMissing},
		{"ours after another realm's", func() []string {
			ok := base("MD5").header()
			return []string{strings.Replace(ok, `realm="`+realm+`"`, `realm="elsewhere"`, 1), ok}
		}, "", 0, "alice", AuthOK},
		{"malformed", func() []string { return []string{`Digest username="alice, realm=`} }, "", 0, "", AuthBad},
		{"bad nc", func() []string { return []string{strings.Replace(base("MD5").header(), "nc=00000001", "nc=zz", 1)} }, "", 0, "", AuthBad},
		{"userhash", func() []string { return []string{base("MD5").header() + ", userhash=true"} }, "", 0, "alice", AuthBad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.headers()
			c.Advance(tt.advance)
			method := tt.method
			if method == "" {
				method = "REGISTER"
			}
			user, res, err := a.Verify(realm, method, h, lookup)
			if res != tt.want || user != tt.user {
				t.Errorf("Verify = %q, %v (%v), want %q, %v\nheaders %q", user, res, err, tt.user, tt.want, h)
			}
			if (err != nil) != (res == AuthBad || res == AuthStale) {
				t.Errorf("result %v with error %v", res, err)
			}
		})
	}
}

func TestNonceCount(t *testing.T) {
	c := newClock()
	a := newTestAuth(c)
	nonce := nonceOf(t, a.Challenge(realm, false, "", lookup)[1])
	try := func(nc string) AuthResult {
		x := creds{alg: "MD5", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
			nonce: nonce, nc: nc, cnonce: "c0ffee"}
		_, res, _ := a.Verify(realm, "REGISTER", []string{x.header()}, lookup)
		return res
	}
	for _, s := range []struct {
		nc   string
		want AuthResult
	}{
		{"00000001", AuthOK},
		{"00000001", AuthBad}, // replay
		{"00000002", AuthOK},
		{"00000005", AuthOK},
		{"00000005", AuthBad},   // replay
		{"00000003", AuthStale}, // lower, never seen: reordered, refused without a 403
		{"00000002", AuthBad},   // replay of an older one
		{"00000006", AuthOK},
		{"00000100", AuthOK},
		{"00000006", AuthStale}, // too far back to remember: refused
	} {
		if got := try(s.nc); got != s.want {
			t.Errorf("nc %s: %v, want %v", s.nc, got, s.want)
		}
	}
}

func TestNonceTableBounded(t *testing.T) {
	c := newClock()
	a := NewAuth(AuthOptions{Secret: []byte("k"), Now: c.Now, MaxNonces: 4})
	use := func(nonce, nc string) AuthResult {
		x := creds{alg: "MD5", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
			nonce: nonce, nc: nc, cnonce: "c0ffee"}
		_, res, _ := a.Verify(realm, "REGISTER", []string{x.header()}, lookup)
		return res
	}
	var nonces []string
	for range 10 {
		c.Advance(time.Millisecond)
		n := nonceOf(t, a.Challenge(realm, false, "", lookup)[1])
		nonces = append(nonces, n)
		if got := use(n, "00000001"); got != AuthOK {
			t.Fatalf("first use: %v", got)
		}
	}
	a.mu.Lock()
	size := len(a.counts)
	a.mu.Unlock()
	if size > 4 {
		t.Errorf("table holds %d nonces, cap 4", size)
	}
	// A forgotten nonce is never accepted again (no replay through
	// eviction), only re-challenged.
	if got := use(nonces[0], "00000001"); got != AuthStale {
		t.Errorf("replay of a forgotten nonce: %v, want stale", got)
	}
	if got := use(nonces[0], "00000002"); got != AuthStale {
		t.Errorf("next nc of a forgotten nonce: %v, want stale", got)
	}
	if got := use(nonces[9], "00000002"); got != AuthOK {
		t.Errorf("remembered nonce: %v", got)
	}
	// After a lifetime everything old is purged.
	c.Advance(10 * time.Minute)
	n := nonceOf(t, a.Challenge(realm, false, "", lookup)[1])
	if got := use(n, "00000001"); got != AuthOK {
		t.Errorf("fresh nonce after purge: %v", got)
	}
	a.mu.Lock()
	size = len(a.counts)
	a.mu.Unlock()
	if size != 1 {
		t.Errorf("after a lifetime the table holds %d", size)
	}
}

func TestSharedSecretAcrossInstances(t *testing.T) {
	c := newClock()
	a1 := NewAuth(AuthOptions{Secret: []byte("persisted"), Now: c.Now})
	a2 := NewAuth(AuthOptions{Secret: []byte("persisted"), Now: c.Now})
	x := creds{alg: "SHA-256", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
		nonce: nonceOf(t, a1.Challenge(realm, false, "", lookup)[0]), nc: "00000001", cnonce: "ab"}
	if _, res, err := a2.Verify(realm, "REGISTER", []string{x.header()}, lookup); res != AuthOK {
		t.Errorf("nonce from an instance with the same secret: %v %v", res, err)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	c := newClock()
	a := newTestAuth(c)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nonce := nonceOf(t, a.Challenge(realm, false, "", lookup)[0])
			for i := 1; i <= 50; i++ {
				x := creds{alg: "SHA-256", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
					nonce: nonce, nc: fmt.Sprintf("%08x", i), cnonce: fmt.Sprint(w)}
				if _, res, err := a.Verify(realm, "REGISTER", []string{x.header()}, lookup); res != AuthOK {
					t.Errorf("worker %d nc %d: %v %v", w, i, res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestAuthResultString(t *testing.T) {
	for r, s := range map[AuthResult]string{AuthMissing: "missing", AuthOK: "ok", AuthStale: "stale", AuthBad: "bad", 9: "AuthResult(9)"} {
		if r.String() != s {
			t.Errorf("%d: %q", int(r), r.String())
		}
	}
}

func FuzzVerify(f *testing.F) {
	c := newClock()
	a := newTestAuth(c)
	nonce := nonceOf(f, a.Challenge(realm, false, "", lookup)[0])
	good := creds{alg: "MD5", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
		nonce: nonce, nc: "00000001", cnonce: "0a4f113b"}.header()
	for _, s := range []string{good, "", "Digest ", "Digest ,,,", `Digest username="`, `Digest nc=-1`,
		`Digest username="alice", realm="` + realm + `", nc=7fffffff, qop=auth`, "Basic abc", "digest a=b",
		`Digest username="a\"b", realm="` + realm + `", algorithm=SHA-512-256, qop=auth, nc=1, cnonce="", nonce="x", uri="u", response="r"`} {
		f.Add("REGISTER", s)
	}
	f.Fuzz(func(t *testing.T, method, header string) {
		user, res, err := a.Verify(realm, method, []string{header, header}, lookup)
		switch res {
		case AuthOK:
			if err != nil || user == "" {
				t.Errorf("ok with user %q, error %v", user, err)
			}
		case AuthMissing:
			if err != nil {
				t.Errorf("missing with error %v", err)
			}
		case AuthBad, AuthStale:
			if err == nil {
				t.Errorf("%v without an error", res)
			}
		default:
			t.Errorf("result %v", res)
		}
	})
}

// TestClientLibraryInterop: what a client built on icholy/digest sends for
// our challenge is accepted (a second view besides the hand-computed
// responses above).
func TestClientLibraryInterop(t *testing.T) {
	c := newClock()
	a := newTestAuth(c)
	for i := range 2 { // SHA-256, then MD5, each with its own nonce
		chal, err := digest.ParseChallenge(a.Challenge(realm, false, "", lookup)[i])
		if err != nil {
			t.Fatal(err)
		}
		for nc := 1; nc <= 3; nc++ {
			cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + realm,
				Username: "alice", Password: "s3cret", Count: nc})
			if err != nil {
				t.Fatal(err)
			}
			if user, res, err := a.Verify(realm, "REGISTER", []string{cred.String()}, lookup); res != AuthOK || user != "alice" {
				t.Errorf("%s nc %d: %v %v", chal.Algorithm, nc, res, err)
			}
		}
	}
}

// BenchmarkVerifyFullTable is a registration storm once the nonce table is
// full: each new nonce evicts one. It was a scan of the whole table per
// nonce (3.3 ms of CPU per REGISTER at 100 000 registrations in bench/sip).
func BenchmarkVerifyFullTable(b *testing.B) {
	c := newClock()
	a := NewAuth(AuthOptions{Secret: []byte("k"), Now: c.Now})
	use := func() {
		c.Advance(time.Microsecond)
		n := nonceOf(b, a.Challenge(realm, false, "", lookup)[1])
		x := creds{alg: "MD5", user: "alice", password: "s3cret", method: "REGISTER", uri: "sip:" + realm,
			nonce: n, nc: "00000001", cnonce: "c0ffee"}
		if _, res, _ := a.Verify(realm, "REGISTER", []string{x.header()}, lookup); res != AuthOK {
			b.Fatalf("verify: %v", res)
		}
	}
	for range DefaultMaxNonces {
		use()
	}
	b.ResetTimer()
	for b.Loop() {
		use()
	}
}
