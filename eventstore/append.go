package eventstore

import (
	"errors"
	"fmt"
)

// MaxAppendEvents is the largest number of events one Append may write, summed
// over all its streams. JetStream commits an append of several events as one
// atomic batch, and the server caps a batch at 1,000 messages by default; every
// adapter enforces the same limit so that code tested against the in-memory
// store behaves the same on JetStream.
const MaxAppendEvents = 1000

var (
	// ErrAppendTooLarge is returned for an append of more than MaxAppendEvents events.
	ErrAppendTooLarge = errors.New("eventstore: append too large")
	// ErrEmptyAppend is returned for a StreamAppend without events (or with a nil event).
	ErrEmptyAppend = errors.New("eventstore: stream append without events")
	// ErrDuplicateStream is returned when one append names the same stream twice:
	// its expected versions would contradict each other.
	ErrDuplicateStream = errors.New("eventstore: stream named twice in one append")
	// ErrInvalidGuard is returned for a Guard whose filter is invalid (the error
	// then also wraps ErrInvalidFilter) or does not match its stream.
	ErrInvalidGuard = errors.New("eventstore: invalid guard")
)

// CheckAppend validates the arguments of Store.Append before anything is read
// or written: every stream name is valid (ValidateStream), named once, and given
// at least one non-nil event, every Guard's filter is valid (ValidateFilter)
// and matches its stream, and the total number of events is at most
// MaxAppendEvents. Adapters call it first so they all reject the same input
// with the same errors. An append of no StreamAppend at all is valid (a no-op).
func CheckAppend(appends []StreamAppend) error {
	total := 0
	seen := make(map[string]struct{}, len(appends))
	for _, a := range appends {
		if err := ValidateStream(a.Stream); err != nil {
			return err
		}
		if _, dup := seen[a.Stream]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicateStream, a.Stream)
		}
		seen[a.Stream] = struct{}{}
		if len(a.Events) == 0 {
			return fmt.Errorf("%w: %s", ErrEmptyAppend, a.Stream)
		}
		for i, ev := range a.Events {
			if ev == nil {
				return fmt.Errorf("%w: %s: event %d is nil", ErrEmptyAppend, a.Stream, i)
			}
		}
		if g := a.Guard; g != nil {
			if err := ValidateFilter(g.Filter); err != nil {
				return fmt.Errorf("%w on %s: %w", ErrInvalidGuard, a.Stream, err)
			}
			if !MatchFilter(g.Filter, a.Stream) {
				return fmt.Errorf("%w: filter %q does not match stream %s", ErrInvalidGuard, g.Filter, a.Stream)
			}
		}
		total += len(a.Events)
	}
	if total > MaxAppendEvents {
		return fmt.Errorf("%w: %d events, at most %d per append", ErrAppendTooLarge, total, MaxAppendEvents)
	}
	return nil
}
