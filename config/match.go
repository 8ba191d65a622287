package config

import "errors"

// Match reports whether s matches the glob pattern, in which * stands for
// any run of characters (including none, and including '/', unlike
// path.Match: From URIs are not paths), ? for exactly one character, and \
// makes the next character literal. Everything else, [ and ] included,
// matches itself, because SIP URIs carry brackets around IPv6 hosts.
// Matching is case-sensitive. A malformed pattern (a trailing \) matches
// nothing; config rejects such patterns when loading.
func Match(pattern, s string) bool {
	p, str := []rune(pattern), []rune(s)
	// Iterative matching with one backtrack point per star: linear in
	// practice and never exponential, whatever the pattern.
	var pi, si int
	star, starSi := -1, 0
	for si < len(str) {
		if pi < len(p) {
			switch c := p[pi]; c {
			case '*':
				star, starSi = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '\\':
				if pi+1 >= len(p) {
					return false
				}
				if p[pi+1] == str[si] {
					pi += 2
					si++
					continue
				}
			default:
				if c == str[si] {
					pi++
					si++
					continue
				}
			}
		}
		if star < 0 {
			return false
		}
		pi = star + 1
		starSi++
		si = starSi
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// checkPattern reports why pattern is not a usable glob, or nil.
func checkPattern(pattern string) error {
	if pattern == "" {
		return errors.New("is empty; it would only match an empty From URI")
	}
	r := []rune(pattern)
	for i := 0; i < len(r); i++ {
		if r[i] == '\\' {
			if i+1 == len(r) {
				return errors.New(`ends with \, which escapes nothing`)
			}
			i++
		}
	}
	return nil
}
