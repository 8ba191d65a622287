// Package registrar is the SIP-independent core of ringroute's registrar
// and caller authentication: the bindings store (RFC 3261 §10.3), its state
// file, digest authentication with stateless nonces (RFC 7616 / RFC 8760:
// SHA-256 and MD5, qop=auth) and the per-source limit on failed attempts.
//
// It exists so that the rules that decide who may register, which contacts
// a user has and whether credentials are good can be tested with a fake
// clock and plain values, without a SIP stack, sockets or timers in the
// way. It imports no SIP library: package sip parses REGISTER and INVITE
// with sipgo, hands this package strings, numbers, netip addresses and
// header values, and turns what comes back into responses (status codes,
// Contact, Min-Expires, WWW-Authenticate / Proxy-Authenticate headers) and
// into routing.Contact values for the call core. Digest computation is done
// by github.com/icholy/digest, not by hand.
//
// The three parts are independent:
//
//   - Registrar keeps the bindings: New, Load at start, Apply per REGISTER,
//     Contacts per call, Sweep (or Run) for expiry, Reload on a config
//     reload, Close at shutdown.
//   - Auth issues challenges and verifies Authorization and
//     Proxy-Authorization header values.
//   - FailureLimiter answers "may this source still try?" and counts
//     failed attempts.
//
// Every type is safe for concurrent use. Time comes from an injected clock
// (Options.Now, AuthOptions.Now, LimiterOptions.Now); only the persistence
// delay and Run's ticker use real timers, and neither decides anything.
// DECISIONS.md in this directory lists the choices the RFCs leave open.
package registrar
