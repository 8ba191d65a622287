//go:build unix

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScenarioPairs runs each caller scenario against the member scenario
// it is meant to meet, sipp to sipp with no ringroute in between, over UDP
// and TCP. It proves the scenarios themselves before any daemon result is
// trusted, and the negative pairs prove that the scenarios' checks can fail.
func TestScenarioPairs(t *testing.T) {
	needSuite(t)
	type pair struct {
		name                 string
		caller, member       string
		callerKeys, memberKs map[string]string
		memberStatus         string // peer_uas_reject.xml: the status to answer with
		callerPause          time.Duration
		memberPause          time.Duration
		wantCaller           int // exit code
		wantMember           int // -1: don't care
		check                func(t *testing.T, caller, member []sipMsg)
	}
	pairs := []pair{
		{name: "answer", caller: "uac_answer.xml", member: "uas_answer.xml", callerPause: 200 * time.Millisecond, memberPause: 200 * time.Millisecond,
			check: func(t *testing.T, c, m []sipMsg) {
				want(t, len(responses(received(c), 180, "INVITE")) == 1, "caller got one 180")
				want(t, len(requests(received(m), "BYE")) == 1, "member got the BYE")
			}},
		{name: "answer_now", caller: "uac_answer.xml", member: "uas_answer_now.xml", callerPause: 200 * time.Millisecond,
			check: func(t *testing.T, c, m []sipMsg) {
				want(t, len(responses(received(c), 180, "INVITE")) == 0, "no 180 from an answer-at-once member")
			}},
		{name: "cancel", caller: "uac_cancel.xml", member: "uas_ring_cancel.xml", callerPause: 300 * time.Millisecond,
			check: func(t *testing.T, c, m []sipMsg) {
				checkCancelMatchesInvite(t, "member", m)
				want(t, len(responses(received(c), 487, "INVITE")) == 1, "caller got 487")
			}},
		// The Reason check passes when the CANCEL carries it (a caller
		// variant with the header, written below) ...
		{name: "cancel_reason", caller: "WITH_REASON", member: "uas_ring_cancel_reason.xml", callerPause: 300 * time.Millisecond},
		// ... and fails the member when it does not.
		{name: "cancel_reason_missing_fails", caller: "uac_cancel.xml", member: "uas_ring_cancel_reason.xml", callerPause: 300 * time.Millisecond, wantMember: 1},
		{name: "busy", caller: "uac_486.xml", member: "uas_busy.xml", memberPause: 100 * time.Millisecond},
		{name: "404", caller: "uac_404.xml", member: "peer_uas_reject.xml", memberStatus: "404 Not Found"},
		{name: "480", caller: "uac_480.xml", member: "peer_uas_reject.xml", memberStatus: "480 Temporarily Unavailable"},
		{name: "403", caller: "uac_403.xml", member: "peer_uas_reject.xml", memberStatus: "403 Forbidden"},
		{name: "403_after_challenge", caller: "uac_403.xml", member: "peer_uas_challenge.xml",
			check: func(t *testing.T, c, m []sipMsg) {
				inv := requests(received(m), "INVITE")
				want(t, len(inv) == 2 && inv[1].header("proxy-authorization") != "", "second INVITE carries Proxy-Authorization")
			}},
		{name: "redirect", caller: "peer_uac_302.xml", member: "uas_redirect.xml", memberKs: map[string]string{"redirect": "sip:m2@127.0.0.1:5999"},
			check: func(t *testing.T, c, m []sipMsg) {
				r := responses(received(c), 302, "INVITE")
				want(t, len(r) == 1 && r[0].header("contact") == "<sip:m2@127.0.0.1:5999>", "302 carries the -key redirect Contact")
			}},
		{name: "reinvite", caller: "uac_reinvite.xml", member: "uas_reinvite.xml", callerPause: 200 * time.Millisecond},
		{name: "member_bye", caller: "uac_wait_bye.xml", member: "uas_bye.xml", memberPause: 300 * time.Millisecond,
			check: func(t *testing.T, c, m []sipMsg) {
				want(t, len(requests(received(c), "BYE")) == 1, "caller got the member's BYE")
			}},
		{name: "options", caller: "uac_options.xml", member: "peer_uas_options.xml"},
		// Negative controls for the callers: the wrong answer must fail them.
		{name: "answer_gets_486_fails", caller: "uac_answer.xml", member: "peer_uas_reject.xml", memberStatus: "486 Busy Here", wantCaller: 1, wantMember: -1},
		{name: "404_gets_200_fails", caller: "uac_404.xml", member: "uas_answer_now.xml", wantCaller: 1, wantMember: -1},
	}
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			for _, p := range pairs {
				t.Run(p.name, func(t *testing.T) {
					t.Parallel()
					dir := workDir(t)
					caller := p.caller
					if caller == "WITH_REASON" {
						caller = writeCancelWithReason(t, dir)
					}
					member := p.member
					if p.memberStatus != "" {
						member = rewriteScenario(t, dir, p.member, "SIP/2.0 486 Busy Here", "SIP/2.0 "+p.memberStatus)
					}
					m := newSipp(t, dir, sippSpec{name: "member", scenario: member, transport: tr, pause: p.memberPause, keys: p.memberKs, timeout: 10 * time.Second})
					m.start(t)
					c := newSipp(t, dir, sippSpec{name: "caller", scenario: caller, transport: tr, remote: fmt.Sprintf("127.0.0.1:%d", m.port), service: "600",
						pause: p.callerPause, keys: p.callerKeys, timeout: 10 * time.Second})
					c.start(t)
					t.Cleanup(func() {
						if t.Failed() {
							t.Log(c.report())
							t.Log(m.report())
						}
					})
					cc, ok := c.wait(20 * time.Second)
					if !ok {
						t.Fatal("caller still running after 20s")
					}
					if cc != p.wantCaller {
						t.Errorf("caller exit %d, want %d", cc, p.wantCaller)
					}
					if p.wantMember < 0 {
						m.stop(time.Second) // a negative control: the member's fate is not the point
						return
					}
					mc, ok := m.wait(10 * time.Second)
					if !ok {
						t.Fatal("member still running 10s after the caller ended")
					}
					if mc != p.wantMember {
						t.Errorf("member exit %d, want %d", mc, p.wantMember)
					}
					if p.check != nil {
						p.check(t, c.messages(t), m.messages(t))
					}
				})
			}
		})
	}
}

// writeCancelWithReason writes a copy of uac_cancel.xml whose CANCEL carries
// the RFC 3326 Reason ringroute sends when a call is answered elsewhere.
func writeCancelWithReason(t *testing.T, dir string) string {
	return rewriteScenario(t, dir, "uac_cancel.xml", "      CSeq: 1 CANCEL\n",
		"      CSeq: 1 CANCEL\n      Reason: SIP;cause=200;text=\"Call completed elsewhere\"\n")
}

// rewriteScenario writes a copy of a testdata/sipp scenario into dir with
// old replaced by new, for what SIPp cannot take from its command line.
func rewriteScenario(t testing.TB, dir, name, old, new string) string {
	t.Helper()
	if old == new {
		return filepath.Join(sippDir, name)
	}
	b, err := os.ReadFile(filepath.Join(sippDir, name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), old, new, 1)
	if s == string(b) {
		t.Fatalf("%s: no %q to rewrite", name, old)
	}
	p := filepath.Join(dir, "rewritten_"+name)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func want(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		t.Errorf("want: %s", what)
	}
}
