// Package clock provides the ledger's two clocks: Wall, the real UTC time, and
// Simulated, a clock that stands still until an admin moves it forward (DESIGN §6,
// `billingd --simulated-clock`, `billctl clock set`).
//
// Every time the ledger assigns (recorded_at, invitation and expiry times, close
// dates) comes from one of these, so a demo or a test can walk a transfer through
// months in seconds. Both satisfy commands.Clock (Now) and the API's clock port
// (Now, Set, Simulated).
//
// The simulated clock must survive a restart and be shared by every billingd
// process on one store. The package does not do I/O itself: NewSimulated takes a
// persist hook (billingd appends a ClockAdvanced event), and Observe raises the
// clock when a persisted value is loaded or arrives from another process.
package clock

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/billtransfer/ledger/domain"
)

// Wall is the real clock: time.Now in UTC. It cannot be set.
type Wall struct{}

// Now returns the current wall-clock time in UTC.
func (Wall) Now() time.Time { return time.Now().UTC() }

// Simulated reports false: the wall clock is real time.
func (Wall) Simulated() bool { return false }

// Set always fails with FAILED_PRECONDITION: only a simulated clock can be moved.
func (Wall) Set(_ context.Context, t time.Time) error {
	return domain.Reject(domain.CodeFailedPrecondition,
		"cannot set the clock to %s: the server uses the wall clock (start billingd with --simulated-clock to move time by hand)",
		format(t))
}

// Simulated is a clock that stands still: Now returns the same instant until Set
// or Observe moves it forward. It never moves backwards. It is safe for
// concurrent use.
type Simulated struct {
	// setMu serializes Set so that two concurrent calls persist in order and the
	// check "not before the current time" holds for the value being persisted.
	setMu   sync.Mutex
	mu      sync.RWMutex
	now     time.Time
	persist func(ctx context.Context, t time.Time) error
}

// NewSimulated returns a simulated clock standing at start (converted to UTC).
// persist, when not nil, is called by Set before the new time takes effect; if it
// fails the clock does not move. Pass nil for a clock that lives only in memory.
func NewSimulated(start time.Time, persist func(ctx context.Context, t time.Time) error) *Simulated {
	return &Simulated{now: start.UTC(), persist: persist}
}

// Now returns the simulated time (UTC).
func (s *Simulated) Now() time.Time {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.now
}

// Simulated reports true.
func (s *Simulated) Simulated() bool { return true }

// Set moves the clock forward to t, persisting it first. Setting the current time
// again is a no-op (nothing is persisted). A time before the current one is
// rejected with INVALID_ARGUMENT naming both times; time only moves forward.
func (s *Simulated) Set(ctx context.Context, t time.Time) error {
	t = t.UTC()
	s.setMu.Lock()
	defer s.setMu.Unlock()

	cur := s.Now()
	switch {
	case t.Before(cur):
		return domain.Reject(domain.CodeInvalidArgument,
			"the clock only moves forward: %s is before the current time %s", format(t), format(cur))
	case t.Equal(cur):
		return nil
	}
	if s.persist != nil {
		if err := s.persist(ctx, t); err != nil {
			return fmt.Errorf("persist simulated clock %s: %w", format(t), err)
		}
	}
	s.Observe(t)
	return nil
}

// Observe raises the clock to t when t is later than the current time and ignores
// it otherwise. It does not persist: use it for values that are already stored
// (loaded at start, or advanced by another process).
func (s *Simulated) Observe(t time.Time) {
	t = t.UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.After(s.now) {
		s.now = t
	}
}

// Parse reads a time given by a person: RFC 3339 (with or without fractional
// seconds, any offset, returned in UTC) or a date YYYY-MM-DD meaning 00:00:00 UTC
// that day.
func Parse(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2026-05-01T00:00:00Z) or a date (2026-05-01)", s)
}

// format renders t the way the ledger prints times: RFC 3339, UTC.
func format(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
