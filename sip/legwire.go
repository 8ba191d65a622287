package sip

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"

	sipmsg "github.com/emiago/sipgo/sip"
)

// wireInvite is a leg's INVITE over UDP to an address, kept as the bytes
// that went out rather than as a sipgo Request. A ringing leg holds its
// INVITE as long as it rings (Timer A resends it; its CANCEL and the ACK
// for a failure repeat parts of it), and a Request with its parsed
// headers is three times the size of its text, most of a ringing call's
// memory. Built straight into bytes, no Request exists even for a moment,
// and writing it again costs a copy, not a serialization.
//
// Legs that may have to connect or resolve a name first keep a sipgo
// Request (uac.inv): sipgo's transport does that, and may fill in the Via
// as it connects.
type wireInvite struct {
	head   []byte // request line and header fields, through the blank line
	body   []byte // the offer, shared with the caller's INVITE or the relay
	shared uint16 // where in head the server's own header fields go (Server.wireHeaders)
	to     netip.AddrPort
	// Where in head: the Request-URI, and the values of the top Via,
	// From, To and Call-ID, which CANCEL and ACK repeat; the From tag.
	ruri, via, from, toHdr, callID, tag span
}

// span is a part of wireInvite.head.
type span struct{ off, end uint16 }

func (w *wireInvite) at(s span) []byte { return w.head[s.off:s.end] }

// inviteParts is what a leg's INVITE says, worked out once whichever way
// it is sent.
type inviteParts struct {
	ruri          *sipmsg.Uri
	display, user string // From, with s.host
	tag, callID   string
	branch        string // wire only: sipgo's client adds the Via of a Request
	maxForwards   int
	body          []byte
	contentType   string
	disposition   []sipmsg.Header // the caller's, which travel with its offer
}

// buildWire writes the INVITE for p over UDP from the listener to to.
func (s *Server) buildWire(p *inviteParts, to netip.AddrPort) *wireInvite {
	b := wireBufs.Get().(*bytes.Buffer)
	defer wireBufs.Put(b)
	b.Reset()
	w := &wireInvite{body: p.body, to: to}
	mark := func() uint16 { return uint16(b.Len()) }

	b.WriteString("INVITE ")
	w.ruri.off = mark()
	p.ruri.StringWrite(b)
	w.ruri.end = mark()
	b.WriteString(" SIP/2.0\r\nVia: ")
	w.via.off = mark()
	b.WriteString("SIP/2.0/UDP ")
	writeHostPort(b, s.host, int(s.addrs["udp"].Port()))
	b.WriteString(";branch=")
	b.WriteString(p.branch)
	b.WriteString(";rport")
	w.via.end = mark()
	b.WriteString("\r\nFrom: ")
	w.from.off = mark()
	if p.display != "" {
		b.WriteByte('"')
		b.WriteString(p.display)
		b.WriteString(`" `)
	}
	from := sipmsg.Uri{Scheme: "sip", User: p.user, Host: s.host}
	b.WriteByte('<')
	from.StringWrite(b)
	b.WriteString(">;tag=")
	w.tag.off = mark()
	b.WriteString(p.tag)
	w.tag.end = mark()
	w.from.end = w.tag.end
	b.WriteString("\r\nTo: ")
	w.toHdr.off = mark()
	b.WriteByte('<')
	toURI := sipmsg.Uri{Scheme: p.ruri.Scheme, User: p.ruri.User, Host: p.ruri.Host, Port: p.ruri.Port}
	toURI.StringWrite(b)
	b.WriteByte('>')
	w.toHdr.end = mark()
	b.WriteString("\r\nCall-ID: ")
	w.callID.off = mark()
	b.WriteString(p.callID)
	w.callID.end = mark()
	b.WriteString("\r\nCSeq: 1 INVITE\r\nMax-Forwards: ")
	b.WriteString(strconv.Itoa(p.maxForwards))
	b.WriteString("\r\n")
	w.shared = uint16(b.Len())
	if len(p.body) > 0 && p.contentType != "" {
		b.WriteString("Content-Type: ")
		b.WriteString(p.contentType)
		b.WriteString("\r\n")
	}
	for _, h := range p.disposition {
		b.WriteString(h.Name())
		b.WriteString(": ")
		b.WriteString(h.Value())
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: ")
	b.WriteString(strconv.Itoa(len(p.body)))
	b.WriteString("\r\n\r\n")
	w.head = bytes.Clone(b.Bytes())
	return w
}

// writeHostPort writes host:port as a Via's sent-by, an IPv6 address in
// brackets.
func writeHostPort(b *bytes.Buffer, host string, port int) {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
}

// wireHeaders are the header fields every leg's INVITE over UDP carries
// the same (our Contact, Allow, User-Agent), written once: kept in each
// leg's head they were a third of it.
func (s *Server) wireHeaders() []byte {
	var b bytes.Buffer
	for _, h := range []sipmsg.Header{s.contact("udp"), s.hdrAllow, s.hdrUserAgent} {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// appendTo appends the INVITE as it goes on the wire, with the server's
// shared header fields.
func (w *wireInvite) appendTo(b, shared []byte) []byte {
	b = append(b, w.head[:w.shared]...)
	b = append(b, shared...)
	b = append(b, w.head[w.shared:]...)
	return append(b, w.body...)
}

// scratch lends f an empty slice with room for n bytes, from a pooled
// buffer, for a datagram written before f returns.
func scratch(n int, f func(b []byte)) {
	b := wireBufs.Get().(*bytes.Buffer)
	defer wireBufs.Put(b)
	b.Reset()
	b.Grow(n)
	f(b.AvailableBuffer())
}

// send writes the INVITE (again) out of s's UDP listener.
func (w *wireInvite) send(s *Server) (err error) {
	scratch(len(w.head)+len(s.wireShared)+len(w.body), func(b []byte) {
		_, err = s.udpConn.WriteToUDPAddrPort(w.appendTo(b, s.wireShared), w.to)
	})
	return err
}

// ident is what a CANCEL for the INVITE repeats of it.
func (w *wireInvite) ident() inviteIdent {
	return inviteIdent{ruri: w.at(w.ruri), via: w.at(w.via), from: w.at(w.from), to: w.at(w.toHdr), callID: w.at(w.callID)}
}

// inviteIdent is what a CANCEL repeats of the INVITE it cancels (RFC 3261
// §9.1): its Request-URI and the values of its top Via, From, To and
// Call-ID, as they went on the wire. ringroute's INVITEs carry no Route.
type inviteIdent struct{ ruri, via, from, to, callID []byte }

// identOf is inviteIdent for an INVITE kept as a Request.
func identOf(inv *sipmsg.Request) inviteIdent {
	return inviteIdent{
		ruri:   []byte(inv.Recipient.String()),
		via:    []byte(inv.Via().Value()),
		from:   []byte(inv.From().Value()),
		to:     []byte(inv.To().Value()),
		callID: []byte(inv.CallID().Value()),
	}
}

// appendCancel appends the CANCEL for the INVITE id names, whose CSeq
// number is seq. elsewhere adds RFC 3326's Reason for a call another
// member answered, so that phones do not log it as missed.
func appendCancel(b []byte, id inviteIdent, seq uint32, elsewhere bool) []byte {
	b = append(b, "CANCEL "...)
	b = append(b, id.ruri...)
	b = append(b, " SIP/2.0\r\nVia: "...)
	b = append(b, id.via...)
	b = append(b, "\r\nFrom: "...)
	b = append(b, id.from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, id.to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, id.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, " CANCEL\r\nMax-Forwards: 70\r\n"...)
	if elsewhere {
		b = append(b, "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n"...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// appendFailureAck appends the ACK for a failure to one of our INVITEs
// (RFC 3261 §17.1.1.3): the INVITE's Request-URI and top Via, the
// response's From, To (with the tag it added) and Call-ID, the CSeq
// number, and no Route (ringroute's INVITEs carry none). ok is false for
// a response without them.
func appendFailureAck(b, ruri, via []byte, res *sipmsg.Response) (_ []byte, ok bool) {
	from, to, cid, cseq := res.From(), res.To(), res.CallID(), res.CSeq()
	if len(via) == 0 || from == nil || to == nil || cid == nil || cseq == nil {
		return b, false
	}
	id := inviteIdent{ruri: ruri, via: via, from: []byte(from.Value()), to: []byte(to.Value()), callID: []byte(cid.Value())}
	return appendAckOf(b, id, cseq.SeqNo), true
}

// appendAckOf appends the ACK for a failure to the INVITE id names, whose
// CSeq number is seq, with id.to the failure's To (RFC 3261 §17.1.1.3:
// the To of the response, tag and all; the rest the INVITE's).
func appendAckOf(b []byte, id inviteIdent, seq uint32) []byte {
	b = append(b, "ACK "...)
	b = append(b, id.ruri...)
	b = append(b, " SIP/2.0\r\nVia: "...)
	b = append(b, id.via...)
	b = append(b, "\r\nFrom: "...)
	b = append(b, id.from...)
	b = append(b, "\r\nTo: "...)
	b = append(b, id.to...)
	b = append(b, "\r\nCall-ID: "...)
	b = append(b, id.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	return append(b, " ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"...)
}

// asRequest parses bytes this file built, for a leg whose requests go
// through sipgo's transport.
func asRequest(b []byte) *sipmsg.Request {
	m, err := sipmsg.ParseMessage(b)
	if err != nil {
		return nil
	}
	req, _ := m.(*sipmsg.Request)
	return req
}
