package domain

import (
	"fmt"
	"regexp"
	"time"
)

var (
	accountIDRe = regexp.MustCompile(`^[0-9]{12}$`)
	tokenIDRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	monthRe     = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)
)

// ValidAccountID reports whether s is a 12-digit account id.
func ValidAccountID(s string) bool { return accountIDRe.MatchString(s) }

// checkAccountID rejects anything that is not a 12-digit account id, naming the field.
func checkAccountID(field, s string) error {
	if !ValidAccountID(s) {
		if s == "" {
			return Reject(CodeInvalidArgument, "%s is required (a 12-digit account id)", field)
		}
		return Reject(CodeInvalidArgument, "%s %q is not a 12-digit account id", field, s)
	}
	return nil
}

// checkID rejects an id that cannot be a stream-name token: 1..64 of [A-Za-z0-9_-].
func checkID(field, s string) error {
	if !tokenIDRe.MatchString(s) {
		if s == "" {
			return Reject(CodeInvalidArgument, "%s is required", field)
		}
		return Reject(CodeInvalidArgument, "%s %q must be 1 to 64 letters, digits, '-' or '_'", field, s)
	}
	return nil
}

// ValidID reports whether s is usable as an id (1..64 of [A-Za-z0-9_-]).
func ValidID(s string) bool { return tokenIDRe.MatchString(s) }

// Month is a calendar month in UTC.
type Month struct {
	year  int
	month time.Month
}

// ParseMonth parses "YYYY-MM".
func ParseMonth(s string) (Month, error) {
	if !monthRe.MatchString(s) {
		return Month{}, fmt.Errorf("month %q is not of the form YYYY-MM", s)
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Month{}, fmt.Errorf("month %q: %v", s, err)
	}
	return Month{year: t.Year(), month: t.Month()}, nil
}

// MonthOf returns the UTC calendar month containing t.
func MonthOf(t time.Time) Month {
	t = t.UTC()
	return Month{year: t.Year(), month: t.Month()}
}

// Start is 00:00:00 UTC on the first day of the month.
func (m Month) Start() time.Time { return time.Date(m.year, m.month, 1, 0, 0, 0, 0, time.UTC) }

// End is the last millisecond of the month: 23:59:59.999 UTC on its last day (T5).
func (m Month) End() time.Time { return m.AddMonths(1).Start().Add(-time.Millisecond) }

// AddMonths returns the month n months later (n may be negative).
func (m Month) AddMonths(n int) Month { return MonthOf(m.Start().AddDate(0, n, 0)) }

// String formats the month as YYYY-MM.
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.year, int(m.month)) }

// Before reports whether m is an earlier month than o.
func (m Month) Before(o Month) bool { return m.Start().Before(o.Start()) }

// InvitationDeadline is the first instant at which an invitation sent at sentAt for
// a transfer starting at start is expired (T3): 15 days after it was sent, or the
// end of the day two days before the start (accept by 29 April for a 1 May start),
// whichever comes first.
func InvitationDeadline(sentAt, start time.Time) time.Time {
	byAge := sentAt.Add(15 * 24 * time.Hour)
	byStart := start.AddDate(0, 0, -1) // 00:00 the day before the start = just after 23:59:59 two days before
	if byStart.Before(byAge) {
		return byStart
	}
	return byAge
}
