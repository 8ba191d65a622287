package sip

import (
	"net"
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
	res := newResponse(req, code, reason)
	res.AppendHeader(s.hdrServer)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if code >= 200 {
		s.setups.end(req)
	}
	return tx.Respond(res)
}

// newResponse is sipgo's NewResponseFromRequest (RFC 3261 §8.2.6) without
// its copies: the response shares the request's headers, which nothing
// writes once the request is being answered, and copies only the two it
// may change, the top Via when it fills in its rport (RFC 3581 §4) and a
// To without a tag when it adds one. sipgo copies every header it takes:
// 1.4 KB for each of the caller's 100, 180 and 200 in a call. Out on the
// wire the two are the same (TestNewResponseIsSipgos).
func newResponse(req *sipmsg.Request, code int, reason string) *sipmsg.Response {
	res := sipmsg.NewResponse(code, reason)
	res.SipVersion = req.SipVersion
	// Record-Routes go back in what may set up a dialog: a 18x or a 2xx
	// (RFC 3261 §20, Table 3), and any provisional but a 100 to an INVITE
	// (§12.1.1's early dialog); never to a REGISTER or an ACK.
	dialogForming := code >= 180 && code < 190 || code >= 200 && code < 300 ||
		req.IsInvite() && code > 100 && code < 200
	if dialogForming && req.Method != sipmsg.REGISTER && !req.IsAck() {
		for _, h := range req.GetHeaders("Record-Route") {
			res.AppendHeader(h)
		}
	}
	for i, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sipmsg.ViaHeader); ok && i == 0 {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				v = v.Clone()
				host, port, _ := net.SplitHostPort(req.Source())
				v.Params.Add("rport", port)
				v.Params.Add("received", host)
				h = v
			}
		}
		res.AppendHeader(h)
	}
	if h := req.From(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.To(); h != nil {
		if code != 100 && !h.Params.Has("tag") {
			h = &sipmsg.ToHeader{DisplayName: h.DisplayName, Address: h.Address, Params: h.Params.Clone()}
			h.Params.Add("tag", sipmsg.GenerateTagN(16))
		}
		res.AppendHeader(h)
	}
	if h := req.CallID(); h != nil {
		res.AppendHeader(h)
	}
	if h := req.CSeq(); h != nil {
		res.AppendHeader(h)
	}
	if code == 100 {
		for _, h := range req.GetHeaders("Timestamp") {
			res.AppendHeader(h)
		}
	}
	res.SetBody(nil)
	return res
}

// singleHeaders may appear once in a request (RFC 3261 §7.3.1, §20); sipgo
// keeps the last of several.
var singleHeaders = []string{"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length"}

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
	for _, n := range singleHeaders {
		if len(req.GetHeaders(n)) > 1 {
			return false
		}
	}
	if _, ok := from.Params.Get("tag"); !ok && req.Method != sipmsg.OPTIONS {
		// A From tag is mandatory since RFC 3261; without it no dialog can
		// be identified.
		return false
	}
	return req.CSeq().MethodName == req.Method
}

// lowerMethod reports a request-line method sipgo upper-cased: the CSeq
// method is the same but for case.
func lowerMethod(req *sipmsg.Request) bool {
	cs := req.CSeq()
	return cs != nil && cs.MethodName != req.Method &&
		sipmsg.RequestMethod(strings.ToUpper(string(cs.MethodName))) == req.Method
}

// normalizeParams trims the LWS RFC 3261 §25.1 allows around ';' and '='
// from the parameters of From, To, the top Via and Contact: sipgo keeps it
// (";tag = x" is the parameter " tag "), and a From tag not found is a 400.
func normalizeParams(req *sipmsg.Request) {
	trim := func(p sipmsg.HeaderParams) {
		for i := range p {
			p[i].K = strings.TrimSpace(p[i].K)
			p[i].V = strings.TrimSpace(p[i].V)
		}
	}
	if h := req.From(); h != nil {
		trim(h.Params)
	}
	if h := req.To(); h != nil {
		trim(h.Params)
	}
	if h := req.Via(); h != nil {
		trim(h.Params)
	}
	if h := req.Contact(); h != nil {
		trim(h.Params)
	}
}

// unescapeUser decodes the %HH escapes of a URI user part (RFC 3261
// §19.1.2); a user with a broken escape is returned as it is.
func unescapeUser(u string) string {
	if !strings.Contains(u, "%") {
		return u
	}
	unhex := func(c byte) (byte, bool) {
		switch {
		case '0' <= c && c <= '9':
			return c - '0', true
		case 'a' <= c && c <= 'f':
			return c - 'a' + 10, true
		case 'A' <= c && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	b := make([]byte, 0, len(u))
	for i := 0; i < len(u); i++ {
		if u[i] != '%' {
			b = append(b, u[i])
			continue
		}
		if i+2 >= len(u) {
			return u
		}
		hi, ok1 := unhex(u[i+1])
		lo, ok2 := unhex(u[i+2])
		if !ok1 || !ok2 {
			return u
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b)
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
