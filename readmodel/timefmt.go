package readmodel

import (
	"fmt"
	"time"
)

// StoredTimeLayout is how times are stored in read model tables: UTC text with a
// fixed nine-digit fraction, so that the lexical order of the stored strings is
// their time order (SQL ORDER BY and range filters on the text work) and nothing
// of the event's time is lost.
const StoredTimeLayout = "2006-01-02T15:04:05.000000000Z"

// FormatStoredTime renders t for storage (see StoredTimeLayout).
func FormatStoredTime(t time.Time) string {
	return t.UTC().Format(StoredTimeLayout)
}

// ParseStoredTime parses a time written by FormatStoredTime.
func ParseStoredTime(s string) (time.Time, error) {
	t, err := time.Parse(StoredTimeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("readmodel: stored time %q: %w", s, err)
	}
	return t, nil
}

// FormatAPITime renders t the way the API shows times: RFC 3339 in UTC with the
// shortest fraction that keeps every digit (time.RFC3339Nano), e.g.
// "2026-09-01T00:00:00Z" or "2026-10-31T23:59:59.999Z". The zero time renders as "".
func FormatAPITime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
