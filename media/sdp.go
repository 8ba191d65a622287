package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// descImpl keeps the body as received: Rewrite works from it for every
// leg, so rewriting toward one member cannot change what the next sees.
type descImpl struct {
	raw    []byte
	strict bool // pion/sdp parsed it; otherwise the line-based reading did
	sts    []Stream
}

// rawSession is what both parsers extract, so Streams() means the same
// whichever of them read the body.
type rawSession struct {
	conn  string // session-level c= address, "" if none
	attrs []sdp.Attribute
	media []rawMedia
}

type rawMedia struct {
	media   string
	port    int
	formats []string
	conn    string // media-level c= address, "" if none
	attrs   []sdp.Attribute
}

func parseSDP(body []byte) (*Description, error) {
	d := &Description{impl: descImpl{raw: append([]byte(nil), body...)}}
	var rs rawSession
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err == nil {
		d.impl.strict = true
		rs = fromPion(&sd)
	} else {
		// pion is strict about session-level order and a few other things
		// real phones get wrong; the lenient reading only needs the lines
		// a relay acts on.
		var lerr error
		rs, lerr = parseLines(body)
		if lerr != nil {
			return nil, fmt.Errorf("sdp: %w (strict parser: %v)", lerr, err)
		}
	}
	st, err := rs.toStreams()
	if err != nil {
		return nil, fmt.Errorf("sdp: %w", err)
	}
	d.impl.sts = st
	return d, nil
}

func (d descImpl) streams() []Stream { return append([]Stream(nil), d.sts...) }

func fromPion(sd *sdp.SessionDescription) rawSession {
	rs := rawSession{conn: pionConn(sd.ConnectionInformation), attrs: sd.Attributes}
	for _, md := range sd.MediaDescriptions {
		rs.media = append(rs.media, rawMedia{
			media:   md.MediaName.Media,
			port:    md.MediaName.Port.Value,
			formats: md.MediaName.Formats,
			conn:    pionConn(md.ConnectionInformation),
			attrs:   md.Attributes,
		})
	}
	return rs
}

func pionConn(c *sdp.ConnectionInformation) string {
	if c == nil || c.Address == nil {
		return ""
	}
	return c.Address.Address
}

// sdpLine is one "x=value" line; the line-based reader drops anything else.
type sdpLine struct {
	typ byte
	val string
}

func splitLines(body []byte) []sdpLine {
	var out []sdpLine
	// A bare CR ends a line too, as it does for pion: otherwise a line
	// the two parsers split differently would change meaning on rewrite.
	for _, l := range strings.FieldsFunc(string(body), func(r rune) bool { return r == '\n' || r == '\r' }) {
		if len(l) < 2 || l[1] != '=' || l[0] < 'a' || l[0] > 'z' {
			continue
		}
		out = append(out, sdpLine{l[0], l[2:]})
	}
	return out
}

func parseLines(body []byte) (rawSession, error) {
	var rs rawSession
	for _, l := range splitLines(body) {
		cur := len(rs.media) - 1
		switch l.typ {
		case 'm':
			m, err := parseMLine(l.val)
			if err != nil {
				return rs, err
			}
			rs.media = append(rs.media, m)
		case 'c':
			a := connAddr(l.val)
			if cur < 0 {
				rs.conn = a
			} else {
				rs.media[cur].conn = a
			}
		case 'a':
			k, v, _ := strings.Cut(l.val, ":")
			at := sdp.Attribute{Key: k, Value: v}
			if cur < 0 {
				rs.attrs = append(rs.attrs, at)
			} else {
				rs.media[cur].attrs = append(rs.media[cur].attrs, at)
			}
		}
	}
	if len(rs.media) == 0 {
		return rs, errors.New("no m= line")
	}
	return rs, nil
}

func parseMLine(v string) (rawMedia, error) {
	f := fields(v)
	if len(f) < 3 {
		return rawMedia{}, fmt.Errorf("m=%s: want media, port, proto", v)
	}
	ps, _, _ := strings.Cut(f[1], "/")
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return rawMedia{}, fmt.Errorf("m=%s: bad port %q", v, f[1])
	}
	return rawMedia{media: f[0], port: port, formats: f[3:]}, nil
}

// fields splits on what pion/sdp takes as blanks, so both parsers see the
// same tokens.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' })
}

// connAddr is the address of a c= value "IN IP4 192.0.2.1[/ttl[/n]]".
func connAddr(v string) string {
	f := fields(v)
	if len(f) < 3 {
		return ""
	}
	a, _, _ := strings.Cut(f[2], "/")
	return a
}

// staticCodecs are the RFC 3551 static payload types; peers often omit
// their rtpmap, and pion's GetCodecMap knows only 0, 8 and 9.
var staticCodecs = map[uint8]string{
	0: "PCMU", 3: "GSM", 4: "G723", 5: "DVI4", 6: "DVI4", 7: "LPC", 8: "PCMA",
	9: "G722", 10: "L16", 11: "L16", 12: "QCELP", 13: "CN", 14: "MPA",
	15: "G728", 16: "DVI4", 17: "DVI4", 18: "G729", 25: "CelB", 26: "JPEG",
	28: "nv", 31: "H261", 32: "MPV", 33: "MP2T", 34: "H263",
}

func isDirection(k string) bool {
	switch k {
	case "sendrecv", "sendonly", "recvonly", "inactive":
		return true
	}
	return false
}

func (rs *rawSession) toStreams() ([]Stream, error) {
	if len(rs.media) == 0 {
		return nil, errors.New("no m= line")
	}
	sessDir := "sendrecv"
	for _, a := range rs.attrs {
		if isDirection(a.Key) {
			sessDir = a.Key
		}
	}
	out := make([]Stream, 0, len(rs.media))
	for i, m := range rs.media {
		st := Stream{Media: m.media, Port: m.port, Direction: sessDir, Codecs: map[uint8]string{}}
		text := m.conn
		if text == "" {
			text = rs.conn
		}
		ip, err := netip.ParseAddr(text)
		if err == nil {
			ip = ip.Unmap().WithZone("")
		}
		if m.port != 0 {
			if text == "" {
				return nil, fmt.Errorf("m=%s (stream %d): no c= address", m.media, i)
			}
			if err != nil {
				return nil, fmt.Errorf("m=%s (stream %d): c= address %q is not an IP address", m.media, i, text)
			}
			st.Addr = netip.AddrPortFrom(ip, uint16(m.port))
			if m.port < 65535 {
				st.RTCP = netip.AddrPortFrom(ip, uint16(m.port+1))
			}
		} else if err == nil {
			st.Addr = netip.AddrPortFrom(ip, 0)
		}
		for _, f := range m.formats {
			pt, err := strconv.Atoi(f)
			if err != nil || pt < 0 || pt > 127 {
				continue // not RTP (t38, webrtc-datachannel ...)
			}
			st.Payloads = append(st.Payloads, uint8(pt))
			if name, ok := staticCodecs[uint8(pt)]; ok {
				st.Codecs[uint8(pt)] = name
			}
		}
		for _, a := range m.attrs {
			switch {
			case isDirection(a.Key):
				st.Direction = a.Key
			case a.Key == "rtpmap":
				ptText, enc, _ := strings.Cut(a.Value, " ")
				pt, err := strconv.Atoi(ptText)
				name, _, _ := strings.Cut(strings.TrimSpace(enc), "/")
				if err == nil && pt >= 0 && pt <= 127 && name != "" {
					st.Codecs[uint8(pt)] = name
				}
			case a.Key == "rtcp" && m.port != 0:
				f := fields(a.Value)
				if len(f) == 0 {
					break
				}
				p, err := strconv.Atoi(f[0])
				if err != nil || p <= 0 || p > 65535 {
					break
				}
				rip := st.Addr.Addr()
				if len(f) >= 4 {
					if x, err := netip.ParseAddr(f[3]); err == nil {
						rip = x.Unmap().WithZone("")
					}
				}
				st.RTCP = netip.AddrPortFrom(rip, uint16(p))
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// dropAttr: attributes that name the peer's own transport, which is
// meaningless once media goes through the relay.
func dropAttr(k string) bool {
	switch k {
	case "candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd",
		"ice-options", "ice-lite", "ice-mismatch", "ice-pacing", "rtcp-mux", "rtcp-mux-only":
		return true
	}
	return false
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

// activePort is the port the i-th m= line gets: 0 (disabled) when it was
// disabled, or when sip has no ports for it (a stream added later than
// the session was made is refused, as RFC 3264 §6 allows).
func activePort(origPort, i int, ports []Ports) int {
	if origPort == 0 || i >= len(ports) || ports[i].RTP <= 0 {
		return 0
	}
	return ports[i].RTP
}

func rtcpPort(p Ports) int {
	if p.RTCP > 0 {
		return p.RTCP
	}
	return p.RTP + 1
}

func (d descImpl) rewrite(addr netip.Addr, ports []Ports, origin Origin) []byte {
	addr = addr.Unmap().WithZone("")
	if d.strict {
		if b, err := rewritePion(d.raw, addr, ports, origin); err == nil {
			return b
		}
	}
	return rewriteLines(d.raw, addr, ports, origin)
}

func rewritePion(raw []byte, addr netip.Addr, ports []Ports, origin Origin) ([]byte, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return nil, err
	}
	at := addrType(addr)
	conn := func() *sdp.ConnectionInformation {
		return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: at, Address: &sdp.Address{Address: addr.String()}}
	}
	sd.Origin = sdp.Origin{Username: "ringroute", SessionID: origin.ID, SessionVersion: origin.Version,
		NetworkType: "IN", AddressType: at, UnicastAddress: addr.String()}
	if sd.ConnectionInformation != nil {
		sd.ConnectionInformation = conn()
	}
	sd.Attributes = filterAttrs(sd.Attributes, false)
	for i, md := range sd.MediaDescriptions {
		if md.ConnectionInformation != nil {
			md.ConnectionInformation = conn()
		}
		if md.MediaName.Port.Value == 0 {
			continue
		}
		p := activePort(md.MediaName.Port.Value, i, ports)
		md.MediaName.Port = sdp.RangedPort{Value: p}
		if p == 0 {
			continue
		}
		md.Attributes = append(filterAttrs(md.Attributes, true), sdp.NewAttribute("rtcp", strconv.Itoa(rtcpPort(ports[i]))))
	}
	return sd.Marshal()
}

func filterAttrs(in []sdp.Attribute, media bool) []sdp.Attribute {
	out := make([]sdp.Attribute, 0, len(in)+1)
	for _, a := range in {
		if dropAttr(a.Key) || (media && a.Key == "rtcp") {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Canonical line order (RFC 4566 §5) at session and media level: the
// line-based rewrite emits it so that strict parsers downstream accept
// what a lenient parser had to read.
var (
	sessionRank = map[byte]int{'v': 0, 'o': 1, 's': 2, 'i': 3, 'u': 4, 'e': 5, 'p': 6, 'c': 7, 'b': 8, 't': 9, 'r': 9, 'z': 10, 'k': 11, 'a': 12}
	mediaRank   = map[byte]int{'m': 0, 'i': 1, 'c': 2, 'b': 3, 'k': 4, 'a': 5}
)

func rewriteLines(raw []byte, addr netip.Addr, ports []Ports, origin Origin) []byte {
	at := addrType(addr)
	cline := "IN " + at + " " + addr.String()
	oline := fmt.Sprintf("ringroute %d %d IN %s %s", origin.ID, origin.Version, at, addr)

	var session []sdpLine
	var media [][]sdpLine
	for _, l := range splitLines(raw) {
		if l.typ == 'm' {
			media = append(media, []sdpLine{l})
			continue
		}
		if len(media) == 0 {
			session = append(session, l)
		} else {
			media[len(media)-1] = append(media[len(media)-1], l)
		}
	}

	var b strings.Builder
	emit := func(typ byte, val string) {
		b.WriteByte(typ)
		b.WriteByte('=')
		b.WriteString(val)
		b.WriteString("\r\n")
	}
	have := map[byte]bool{}
	for _, l := range session {
		have[l.typ] = true
	}
	if !have['v'] {
		emit('v', "0")
	}
	wroteO := false
	for rank := 0; rank <= 12; rank++ {
		for _, l := range session {
			if r, ok := sessionRank[l.typ]; !ok || r != rank {
				continue
			}
			switch {
			case l.typ == 'o':
				if !wroteO {
					emit('o', oline)
					wroteO = true
				}
			case l.typ == 'c':
				emit('c', cline)
			case l.typ == 'a':
				k, _, _ := strings.Cut(l.val, ":")
				if !dropAttr(k) {
					emit('a', l.val)
				}
			default:
				emit(l.typ, l.val)
			}
		}
		switch {
		case rank == 1 && !wroteO:
			emit('o', oline)
			wroteO = true
		case rank == 2 && !have['s']:
			emit('s', "-")
		case rank == 9 && !have['t']:
			emit('t', "0 0")
		}
	}
	for i, sec := range media {
		m, err := parseMLine(sec[0].val)
		p := 0
		if err == nil {
			p = activePort(m.port, i, ports)
		}
		for rank := 0; rank <= 5; rank++ {
			for _, l := range sec {
				if r, ok := mediaRank[l.typ]; !ok || r != rank {
					continue
				}
				switch {
				case l.typ == 'm':
					if err != nil || m.port == 0 {
						emit('m', l.val)
						continue
					}
					f := fields(l.val)
					f[1] = strconv.Itoa(p)
					emit('m', strings.Join(f, " "))
				case l.typ == 'c':
					emit('c', cline)
				case l.typ == 'a' && p != 0:
					k, _, _ := strings.Cut(l.val, ":")
					if !dropAttr(k) && k != "rtcp" {
						emit('a', l.val)
					}
				default:
					emit(l.typ, l.val)
				}
			}
		}
		if p != 0 {
			emit('a', "rtcp:"+strconv.Itoa(rtcpPort(ports[i])))
		}
	}
	return []byte(b.String())
}
