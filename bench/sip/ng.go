package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// ngClient speaks rtpengine's ng control protocol: "COOKIE <bencoded
// dictionary>" over UDP, the answer echoes the cookie.
type ngClient struct {
	conn   *net.UDPConn
	cookie atomic.Uint64
}

func dialNG(addr string) (*ngClient, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	return &ngClient{conn: c}, nil
}

func (c *ngClient) close() { c.conn.Close() }

// call sends one command and waits for its answer, retrying twice. A
// "result" other than "ok" (or "pong") is an error.
func (c *ngClient) call(cmd map[string]any) (map[string]any, error) {
	cookie := strconv.FormatUint(c.cookie.Add(1), 10) + "_" + strconv.Itoa(time.Now().Nanosecond())
	msg := append([]byte(cookie+" "), bencode(cmd)...)
	buf := make([]byte, 65536)
	for try := 0; try < 3; try++ {
		if _, err := c.conn.Write(msg); err != nil {
			return nil, err
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retry
				}
				return nil, err
			}
			ck, body, ok := bytes.Cut(buf[:n], []byte(" "))
			if !ok || string(ck) != cookie {
				continue // an answer to an earlier try
			}
			v, _, err := bdecode(body)
			if err != nil {
				return nil, fmt.Errorf("ng answer: %w", err)
			}
			d, ok := v.(map[string]any)
			if !ok {
				return nil, errors.New("ng answer is not a dictionary")
			}
			if r, _ := d["result"].(string); r != "ok" && r != "pong" {
				reason, _ := d["error-reason"].(string)
				return d, fmt.Errorf("ng %v: %s %s", cmd["command"], r, reason)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("ng %v: no answer", cmd["command"])
}

// bencode encodes strings, integers, lists and dictionaries.
func bencode(v any) []byte {
	var b bytes.Buffer
	benc(&b, v)
	return b.Bytes()
}

func benc(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case string:
		b.WriteString(strconv.Itoa(len(x)) + ":" + x)
	case []byte:
		b.WriteString(strconv.Itoa(len(x)) + ":")
		b.Write(x)
	case int:
		b.WriteString("i" + strconv.Itoa(x) + "e")
	case []string:
		b.WriteByte('l')
		for _, e := range x {
			benc(b, e)
		}
		b.WriteByte('e')
	case []any:
		b.WriteByte('l')
		for _, e := range x {
			benc(b, e)
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('d')
		for _, k := range keys {
			benc(b, k)
			benc(b, x[k])
		}
		b.WriteByte('e')
	default:
		panic(fmt.Sprintf("bencode: %T", v))
	}
}

// bdecode decodes one value and returns the rest of the input.
func bdecode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errors.New("bencode: short")
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errors.New("bencode: bad integer")
		}
		n, err := strconv.Atoi(string(b[1:end]))
		return n, b[end+1:], err
	case c == 'l':
		var out []any
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			out, b = append(out, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: open list")
		}
		return out, b[1:], nil
	case c == 'd':
		out := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecode(b)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, errors.New("bencode: key is not a string")
			}
			v, rest, err := bdecode(rest)
			if err != nil {
				return nil, nil, err
			}
			out[ks], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: open dictionary")
		}
		return out, b[1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errors.New("bencode: bad string")
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || colon+1+n > len(b) {
			return nil, nil, errors.New("bencode: bad string length")
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	}
	return nil, nil, fmt.Errorf("bencode: unexpected %q", b[0])
}
