package sip

import (
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
)

// allowed is what we answer to OPTIONS and put in Allow.
const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REGISTER"

// knownMethods are methods RFC-defined that we recognise but do not
// handle: they get 405 with Allow, anything else 501 (RFC 3261 §8.2.1).
var knownMethods = map[sipmsg.RequestMethod]bool{
	sipmsg.SUBSCRIBE: true, sipmsg.NOTIFY: true,
	sipmsg.MESSAGE: true, sipmsg.PUBLISH: true, sipmsg.REFER: true, sipmsg.PRACK: true,
}

// respond answers req on tx with code; extra headers follow the defaults.
// Errors are only logged by the caller: a response that cannot be sent
// leaves the peer to retransmit or give up, nothing else to do.
func (s *Server) respond(req *sipmsg.Request, tx sipmsg.ServerTransaction, code int, reason string, hdrs ...sipmsg.Header) error {
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sipmsg.NewHeader("Server", s.agent))
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return tx.Respond(res)
}

// valid reports whether req has the headers every request needs (RFC 3261
// §8.1.1); sipgo parses requests without some of them.
func valid(req *sipmsg.Request) bool {
	from, to, via := req.From(), req.To(), req.Via()
	if from == nil || to == nil || req.CallID() == nil || req.CSeq() == nil || via == nil {
		return false
	}
	if via.Host == "" || via.ProtocolName != "SIP" || via.ProtocolVersion != "2.0" {
		return false
	}
	if _, ok := from.Params.Get("tag"); !ok && req.Method != sipmsg.OPTIONS {
		// A From tag is mandatory since RFC 3261; without it no dialog can
		// be identified.
		return false
	}
	return req.CSeq().MethodName == req.Method
}

// quoted makes s safe inside a quoted-string display name: no line breaks
// or control characters (header injection) and escaped quotes.
func quoted(s string) string {
	if s == "" {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// unquote reverses sipgo's display name as parsed: it keeps quoted-pair
// escapes, which we normalise before applying caller_id.
func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	esc := false
	for _, r := range s {
		if !esc && r == '\\' {
			esc = true
			continue
		}
		esc = false
		b.WriteRune(r)
	}
	return b.String()
}

// reasonPhrase gives the standard reason for codes we send.
func reasonPhrase(code int) string {
	switch code {
	case 180:
		return "Ringing"
	case 181:
		return "Call Is Being Forwarded"
	case 182:
		return "Queued"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 410:
		return "Gone"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 423:
		return "Interval Too Brief"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 484:
		return "Address Incomplete"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	}
	switch code / 100 {
	case 1:
		return "Session Progress"
	case 2:
		return "OK"
	case 3:
		return "Redirect"
	case 4:
		return "Request Failure"
	case 5:
		return "Server Failure"
	}
	return "Global Failure"
}

// contentType of a message, or "".
func contentType(m sipmsg.Message) string {
	if h := m.GetHeaders("Content-Type"); len(h) > 0 {
		return h[0].Value()
	}
	return ""
}

// setBody puts body with its Content-Type on m.
func setBody(m sipmsg.Message, body []byte, ct string) {
	if len(body) > 0 && ct != "" {
		h := sipmsg.ContentTypeHeader(ct)
		m.AppendHeader(&h)
	}
	m.SetBody(body)
}

// copyHeaders copies the named headers, which describe a body or an event
// and must travel with it across the B2BUA.
func copyHeaders(from, to sipmsg.Message, names ...string) {
	for _, n := range names {
		for _, h := range from.GetHeaders(n) {
			to.AppendHeader(sipmsg.NewHeader(h.Name(), h.Value()))
		}
	}
}

// bodyHeaders travel with a relayed body.
var bodyHeaders = []string{"Content-Disposition", "Info-Package", "Content-Language", "Event", "Reason"}
