package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Small validators for the strings a config holds. config stays free of SIP
// and network libraries (routing and strategy import it), so these are
// written out here; they check what an operator can get wrong, not every
// corner of the RFCs.

// hostname reports why s is not a DNS host name, or nil.
func hostname(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case len(s) > 253:
		return errors.New("is longer than 253 characters")
	case strings.HasSuffix(s, "."):
		return errors.New("ends with a dot; drop it")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return errors.New("has an empty label (two dots in a row)")
		}
		if len(label) > 63 {
			return errors.New("has a label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("has a label starting or ending with -")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return errors.New("may only hold letters, digits, - and .")
			}
		}
	}
	if looksNumeric(s) {
		return errors.New("looks like an IP address but is not one")
	}
	return nil
}

// looksNumeric reports digits and dots only, which is a mistyped IPv4
// address rather than a host name.
func looksNumeric(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

// host parses an IP literal (IPv6 optionally in brackets) or a host name,
// returning the canonical form: the IP's own spelling, or the name in lower
// case.
func host(s string) (string, error) {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err != nil || !a.Is6() {
			return "", errors.New("is not an IPv6 address in brackets")
		}
		return a.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), nil
	}
	if err := hostname(s); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

// splitHostPort splits "host:port", "[v6]:port" and ":port". It exists so
// that config need not import net.
func splitHostPort(s string) (host string, port int, err error) {
	var p string
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || !strings.HasPrefix(s[end+1:], ":") {
			return "", 0, errors.New("needs a port after the bracketed address, like [::1]:8080")
		}
		host, p = s[1:end], s[end+2:]
	} else {
		i := strings.LastIndex(s, ":")
		if i < 0 {
			return "", 0, errors.New("has no port, like 127.0.0.1:8080")
		}
		host, p = s[:i], s[i+1:]
		if strings.Contains(host, ":") {
			return "", 0, errors.New("holds an IPv6 address without brackets, like [::1]:8080")
		}
	}
	port, err = portNumber(p)
	return host, port, err
}

func portNumber(p string) (int, error) {
	n, err := strconv.Atoi(p)
	if err != nil || p == "" || p[0] == '+' || p[0] == '-' {
		return 0, errors.New("has a port that is not a number")
	}
	if n < 1 || n > 65535 {
		return 0, errors.New("has a port outside 1-65535")
	}
	return n, nil
}

// dialString reports whether s is something a phone can dial and a SIP
// request-URI user can carry: digits with * and #, and an optional leading
// + (E.164). At least one digit or * keeps "#" and "+" alone out.
func dialString(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	body := strings.TrimPrefix(s, "+")
	if body == "" {
		return errors.New("needs digits after +")
	}
	for _, r := range body {
		switch {
		case r >= '0' && r <= '9', r == '*', r == '#':
		case r == '+':
			return errors.New("may only have + at the start")
		default:
			return errors.New("may only hold digits, *, # and a leading +")
		}
	}
	return nil
}

// name checks a user, trunk or group name against the characters allowed.
func name(s string, extra string) error {
	if s == "" {
		return errors.New("is empty")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)) {
			return errors.New("may only hold letters, digits and " + quoteChars(extra))
		}
	}
	return nil
}

func quoteChars(extra string) string {
	parts := strings.Split(extra, "")
	switch len(parts) {
	case 1:
		return parts[0]
	case 2:
		return parts[0] + " and " + parts[1]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// sipURI reports why s is not a SIP URI of the form
// sip[s]:[user[:password]@]host[:port][;param[=value]]..., or nil. Headers
// (?...) are rejected: a member or fallback is a destination, and headers
// there are nearly always a pasted address rather than intent.
func sipURI(s string) error {
	lower := strings.ToLower(s)
	var rest string
	switch {
	case strings.HasPrefix(lower, "sip:"):
		rest = s[4:]
	case strings.HasPrefix(lower, "sips:"):
		rest = s[5:]
	default:
		return errors.New("must start with sip: or sips:")
	}
	if strings.ContainsAny(rest, " \t\r\n") {
		return errors.New("contains white space")
	}
	if strings.Contains(rest, "?") {
		if at := strings.LastIndex(rest, "@"); strings.LastIndex(rest, "?") > at {
			return errors.New("has headers (?...), which a destination cannot use")
		}
	}
	hostport := rest
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user := rest[:at]
		if user == "" {
			return errors.New("has an empty user before @")
		}
		if err := uriChars(user, "-_.!~*'()&=+$,;?/:#"); err != nil {
			return errors.New("has a user part that " + err.Error())
		}
		hostport = rest[at+1:]
	}
	var params string
	if i := strings.Index(hostport, ";"); i >= 0 {
		hostport, params = hostport[:i], hostport[i+1:]
	}
	if hostport == "" {
		return errors.New("has no host")
	}
	h := hostport
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return errors.New("has an unclosed [ in its host")
		}
		h = hostport[:end+1]
		if tail := hostport[end+1:]; tail != "" {
			if !strings.HasPrefix(tail, ":") {
				return errors.New("has something after its host that is not :port")
			}
			if _, err := portNumber(tail[1:]); err != nil {
				return err
			}
		}
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		h = hostport[:i]
		if _, err := portNumber(hostport[i+1:]); err != nil {
			return err
		}
	}
	if _, err := host(h); err != nil {
		return errors.New("has a host that " + err.Error())
	}
	if params != "" {
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(p, "=")
			if k == "" {
				return errors.New("has an empty ;parameter")
			}
			if err := uriChars(k, "-_.!~*'()[]/:&+$"); err != nil {
				return errors.New("has a parameter name that " + err.Error())
			}
			if err := uriChars(v, "-_.!~*'()[]/:&+$"); err != nil {
				return errors.New("has a parameter value that " + err.Error())
			}
		}
	}
	return nil
}

// uriChars allows letters, digits, %HH escapes and the given marks.
func uriChars(s, marks string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte(marks, c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return errors.New("has a % not followed by two hex digits")
			}
			i += 2
		default:
			return fmt.Errorf("holds %q; escape it as %%%02X", rune(c), c)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
