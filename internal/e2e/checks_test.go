//go:build unix

package e2e

import (
	"strings"
	"testing"
)

// Checks on SIPp message logs that hold for every call through ringroute.

// checkCancelMatchesInvite checks every CANCEL a member received against
// the INVITE it cancels (RFC 3261 section 9.1): same Call-ID, request-URI,
// top Via branch, From tag and CSeq number, and sent only after the member
// had sent a provisional response on that INVITE.
func checkCancelMatchesInvite(t *testing.T, who string, msgs []sipMsg) {
	t.Helper()
	for i, c := range msgs {
		if c.sent || c.method() != "CANCEL" {
			continue
		}
		var inv *sipMsg
		for j := range msgs[:i] {
			m := msgs[j]
			if !m.sent && m.method() == "INVITE" && m.toTag() == "" && m.callID() == c.callID() {
				inv = &msgs[j]
			}
		}
		if inv == nil {
			t.Errorf("%s: CANCEL for Call-ID %s without an INVITE before it", who, c.callID())
			continue
		}
		invN, _ := inv.cseq()
		cN, cM := c.cseq()
		if cN != invN || cM != "CANCEL" {
			t.Errorf("%s: CANCEL CSeq %q, want %d CANCEL (the INVITE's number)", who, c.header("cseq"), invN)
		}
		if c.branch() != inv.branch() {
			t.Errorf("%s: CANCEL top Via branch %q, want the INVITE's %q", who, c.branch(), inv.branch())
		}
		if c.requestURI() != inv.requestURI() {
			t.Errorf("%s: CANCEL request-URI %q, want the INVITE's %q", who, c.requestURI(), inv.requestURI())
		}
		if c.fromTag() != inv.fromTag() {
			t.Errorf("%s: CANCEL From tag %q, want the INVITE's %q", who, c.fromTag(), inv.fromTag())
		}
		if c.toTag() != "" {
			t.Errorf("%s: CANCEL To has tag %q; it must equal the INVITE's To, which had none", who, c.toTag())
		}
		provisional := false
		for _, m := range msgs[:i] {
			if m.sent && m.callID() == c.callID() && m.code() > 100 && m.code() < 200 {
				provisional = true
			}
		}
		if !provisional {
			t.Errorf("%s: CANCEL before any provisional response on Call-ID %s (RFC 3261 section 9.1)", who, c.callID())
		}
	}
}

// cancelReasons returns the Reason headers of the CANCELs a member got.
func cancelReasons(msgs []sipMsg) []string {
	var out []string
	for _, m := range requests(received(msgs), "CANCEL") {
		out = append(out, m.header("reason"))
	}
	return out
}

// isElsewhere reports whether a Reason value is RFC 3326's "Call completed
// elsewhere" (cause 200).
func isElsewhere(reason string) bool {
	r := strings.ToLower(strings.ReplaceAll(reason, " ", ""))
	return strings.Contains(r, "cause=200") || strings.Contains(r, "completedelsewhere")
}
