// Package eventstore defines the ledger's event store port and the parts every
// adapter shares: the typed optimistic-concurrency error, the per-stream SHA-256
// hash chain, and stream-name validation.
//
// Map of the package:
//   - store.go        the Store port, Record, StreamAppend, ConflictError
//   - chain.go        sealing events into the per-stream hash chain and verifying it
//   - jetstream/      the default adapter (NATS JetStream, embedded or external)
//   - memstore/       an in-process adapter for pure simulations
//   - conformance/    the suite every adapter must pass (DESIGN §2, STYLE "one conformance suite")
//
// Streams are named like NATS subjects ("billing.org.111111111111"); an adapter maps
// them to its own notion (JetStream subjects in one stream, EventStoreDB stream names).
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Record is an event as stored: the sealed envelope and its global position.
type Record struct {
	// Event is the sealed envelope (stream, stream_version, prev_hash and hash set).
	Event *billingv1.Event
	// Position is the event's place in the store's global order (JetStream stream
	// sequence). Positions are strictly increasing but not necessarily contiguous
	// under a subject filter.
	Position uint64
}

// StreamAppend is the part of an atomic append that goes to one stream.
type StreamAppend struct {
	// Stream is the stream name, e.g. "billing.transfer.rt-1".
	Stream string
	// ExpectedVersion is the stream version the caller decided on; 0 = the stream
	// must not exist yet. A mismatch fails the whole append with *ConflictError.
	ExpectedVersion uint64
	// Events to append, in order. The store fills stream, stream_version,
	// prev_hash and hash; the caller fills id, time, actor, ids and payload.
	Events []*billingv1.Event
}

// Store is the event store port. Every adapter passes the conformance suite.
type Store interface {
	// Append writes every StreamAppend atomically (all or nothing), each guarded
	// by its expected version. On a version mismatch it returns *ConflictError and
	// writes nothing. It returns the stored records in the order given.
	Append(ctx context.Context, appends ...StreamAppend) ([]Record, error)

	// ReadStream returns every event of one stream in version order; an unknown
	// stream yields no records and no error.
	ReadStream(ctx context.Context, stream string) ([]Record, error)

	// ReadAll calls fn for every event with Position > from whose stream matches
	// filter (NATS subject syntax with * and >; "" = everything), in position order,
	// up to the last position at the time of the call. A non-nil error from fn stops
	// the read and is returned.
	ReadAll(ctx context.Context, from uint64, filter string, fn func(Record) error) error

	// Subscribe is ReadAll that keeps following new events until ctx is done or fn
	// returns an error. It returns ctx.Err() when the context ends.
	Subscribe(ctx context.Context, from uint64, filter string, fn func(Record) error) error

	// LastPosition is the position of the newest event in the store (0 when empty).
	LastPosition(ctx context.Context) (uint64, error)
}

// ConflictError reports that a stream's version was not the one expected.
type ConflictError struct {
	// Stream that conflicted.
	Stream string
	// Expected version given by the caller.
	Expected uint64
	// Actual version found (best effort: adapters that cannot tell report Expected+1).
	Actual uint64
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("eventstore: version conflict on %s: expected %d, found %d", e.Stream, e.Expected, e.Actual)
}

// IsConflict reports whether err is (or wraps) a *ConflictError.
func IsConflict(err error) bool {
	var c *ConflictError
	return errors.As(err, &c)
}

// ErrInvalidStream is returned for a stream name that is not a valid name.
var ErrInvalidStream = errors.New("eventstore: invalid stream name")

// streamName accepts dot-separated tokens of letters, digits, '-' and '_'.
var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// ValidateStream checks a stream name: dot-separated tokens of [A-Za-z0-9_-], no
// wildcards, at most 255 characters.
func ValidateStream(stream string) error {
	if len(stream) == 0 || len(stream) > 255 || !streamName.MatchString(stream) {
		return fmt.Errorf("%w: %q", ErrInvalidStream, stream)
	}
	return nil
}

// MatchFilter reports whether stream matches a NATS-style subject filter
// ("" matches everything; "*" matches one token; ">" matches one or more trailing tokens).
func MatchFilter(filter, stream string) bool {
	if filter == "" || filter == ">" {
		return true
	}
	f, s := splitTokens(filter), splitTokens(stream)
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) {
			return false
		}
		if tok != "*" && tok != s[i] {
			return false
		}
	}
	return len(f) == len(s)
}

func splitTokens(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
