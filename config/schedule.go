package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	// Time zones come from the binary, not the host: ringroute often runs
	// in minimal containers without /usr/share/zoneinfo, and a schedule
	// that loads on one machine must load on all.
	_ "time/tzdata"
)

// dayNames are in the order operators write weeks (Monday first); the index
// into OpenRange.Days is time.Weekday (Sunday = 0).
var dayNames = [7]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

func weekday(i int) time.Weekday { return time.Weekday((i + 1) % 7) }

// parseOpen parses "DAYS HH:MM-HH:MM". DAYS is a day (mon), a range (mon-fri,
// which may wrap: fri-mon is fri, sat, sun, mon) or a comma list of either
// (mon,wed,fri or mon-wed,fri). Days are matched without regard to case.
func parseOpen(s string) (OpenRange, error) {
	var r OpenRange
	f := strings.Fields(s)
	if len(f) != 2 {
		return r, errors.New("is not like \"mon-fri 09:00-17:30\" (days, a space, then a time range)")
	}
	for _, part := range strings.Split(strings.ToLower(f[0]), ",") {
		first, last, isRange := strings.Cut(part, "-")
		a, err := day(first)
		if err != nil {
			return r, err
		}
		b := a
		if isRange {
			if b, err = day(last); err != nil {
				return r, err
			}
		}
		for i := a; ; i = (i + 1) % 7 {
			r.Days[weekday(i)] = true
			if i == b {
				break
			}
		}
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return r, fmt.Errorf("has no time range after %q; write like 09:00-17:30", f[0])
	}
	var err error
	if r.From, err = clock(from); err != nil {
		return r, err
	}
	if r.To, err = clock(to); err != nil {
		return r, err
	}
	switch {
	case r.From == 24*60:
		return r, errors.New("starts at 24:00; write 00:00 on the next day")
	case r.From == r.To:
		return r, fmt.Errorf("is empty (%s-%s); for a whole day write 00:00-24:00", from, to)
	}
	return r, nil
}

func day(s string) (int, error) {
	for i, d := range dayNames {
		if s == d {
			return i, nil
		}
	}
	hint := suggest(s, dayNames[:])
	if hint == "" && len(s) > 3 {
		hint = suggest(s[:3], dayNames[:])
	}
	if hint != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", hint)
	}
	return 0, fmt.Errorf("has %q, which is not a day%s; use mon, tue, wed, thu, fri, sat, sun", s, hint)
}

// clock parses HH:MM (00:00 to 24:00) into minutes after midnight.
func clock(s string) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || hh[0] == '+' || hh[0] == '-' {
		return 0, fmt.Errorf("has %q, which is not a time like 09:00", s)
	}
	if h > 24 || m > 59 || (h == 24 && m != 0) {
		return 0, fmt.Errorf("has %q, which is outside 00:00-24:00", s)
	}
	return h*60 + m, nil
}

func parseDate(s string) (Date, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return Date{}, errors.New("is not a date like 2026-12-25")
	}
	return Date{Year: t.Year(), Month: t.Month(), Day: t.Day()}, nil
}

// OpenAt reports whether the schedule is open at t, read in the schedule's
// time zone. A closed date closes the whole calendar day, including the
// part of a range that started the evening before. A range belongs to the
// day it starts on, so "fri 22:00-02:00" is open from Friday 22:00 to
// Saturday 02:00. With no open ranges the schedule is open at all times
// except on closed dates.
func (s *Schedule) OpenAt(t time.Time) bool {
	if s == nil {
		return true
	}
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	for _, d := range s.ClosedDates {
		if t.Year() == d.Year && t.Month() == d.Month && t.Day() == d.Day {
			return false
		}
	}
	if len(s.Open) == 0 {
		return true
	}
	min := t.Hour()*60 + t.Minute()
	today := t.Weekday()
	yesterday := (today + 6) % 7
	for _, r := range s.Open {
		if r.From < r.To {
			if r.Days[today] && min >= r.From && min < r.To {
				return true
			}
			continue
		}
		// Over midnight: the evening part today, the morning part on the
		// day after a listed day.
		if r.Days[today] && min >= r.From || r.Days[yesterday] && min < r.To {
			return true
		}
	}
	return false
}
