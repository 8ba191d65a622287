package registrar_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/icholy/digest"
	"github.com/ringroute/ringroute/registrar"
)

// Example walks one phone through what package sip does for a REGISTER:
// limiter, digest challenge and verify, then the bindings store, and what
// an INVITE to the user then rings.
func Example() {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	const realm = "pbx.example.com"
	lookup := func(user string) (string, string, bool) {
		if user == "alice" {
			return "s3cret", "", true
		}
		return "", "", false
	}
	auth := registrar.NewAuth(registrar.AuthOptions{Now: clock})
	limiter := registrar.NewFailureLimiter(10, registrar.LimiterOptions{Now: clock})
	reg := registrar.New(registrar.Options{MinExpires: time.Minute, MaxExpires: time.Hour, Now: clock})
	src := netip.MustParseAddrPort("203.0.113.5:40001")

	// handle is the REGISTER handler of package sip, minus sipgo.
	handle := func(authorization []string, register registrar.Register) {
		if !limiter.Allow(src.Addr()) {
			fmt.Println("403 Forbidden")
			return
		}
		user, res, err := auth.Verify(realm, "REGISTER", authorization, lookup)
		switch res {
		case registrar.AuthMissing, registrar.AuthStale:
			hint := user // else the To user
			for _, v := range auth.Challenge(realm, res == registrar.AuthStale, hint, lookup) {
				_ = v // one WWW-Authenticate header each
			}
			fmt.Println("401 Unauthorized", err)
			return
		case registrar.AuthBad:
			limiter.Fail(src.Addr())
			fmt.Println("403 Forbidden")
			return
		}
		// sip checks here that the To user is the authenticated user.
		r, err := reg.Apply(user, register)
		if err != nil {
			fmt.Println("500 Server Internal Error")
			return
		}
		fmt.Println(r.Status, r.Reason)
		for _, b := range r.Bindings {
			fmt.Println("Contact:", b.ContactValue())
		}
		if r.Status == 423 {
			fmt.Println("Min-Expires:", r.MinExpires)
		}
	}

	register := registrar.Register{
		Contacts:  []registrar.Contact{{URI: "sip:alice@192.168.1.10:5060", Expires: -1, Q: -1}},
		Expires:   7200,
		CallID:    "a84b4c76e66710",
		CSeq:      1,
		Source:    src,
		Transport: "udp",
	}
	handle(nil, register) // no credentials yet

	// The phone answers the SHA-256 challenge (here with the client side
	// of icholy/digest).
	chal, _ := digest.ParseChallenge(auth.Challenge(realm, false, "alice", lookup)[0])
	cred, _ := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:" + realm,
		Username: "alice", Password: "s3cret", Count: 1})
	register.CSeq = 2
	handle([]string{cred.String()}, register)

	for _, b := range reg.Contacts("alice") {
		fmt.Println("ring", b.URI, "via", b.Transport, b.Destination())
	}
	// Output:
	// 401 Unauthorized <nil>
	// 200 OK
	// Contact: <sip:alice@192.168.1.10:5060>;expires=3600
	// ring sip:alice@192.168.1.10:5060 via udp 203.0.113.5:40001
}
