// Package eventstore defines the ledger's event store port and the parts every
// adapter shares: the typed optimistic-concurrency errors (per stream, and per
// family of streams with a Guard), the per-stream SHA-256 hash chain, and the
// validation of stream names, filters and appends.
//
// Map of the package:
//   - store.go        the Store port, Record, StreamAppend, Guard, the conflict errors, names and filters
//   - append.go       CheckAppend, the one validation of Append's arguments
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
	// Guard, when set, makes this part of the append conditional on a whole
	// family of streams instead of on this stream alone; nil = no guard.
	Guard *Guard
}

// Guard makes an append conditional on a whole family of streams: the append
// succeeds only if no stream matching Filter has moved past LastPosition. It
// lets one logical writer own several streams, e.g. every month of a usage
// partition ("billing.usage.*.07"), with one optimistic-concurrency check.
//
// A guard replaces the per-stream check on the server, and is stronger: if no
// stream matching Filter moved, this stream did not move either. The store
// still uses ExpectedVersion to number the events and link the hash chain, so
// the caller must pass the stream's correct version; the store checks it first
// and returns *ConflictError when it is not the stream's version. Then a
// failed guard returns *GuardConflictError. Either way nothing is written.
//
// Guards are evaluated against the store as it was before the append: in an
// append of several streams, a guard does not see the append's own events.
//
// Every writer of a family should append to its streams with the guard, and
// with the same Filter text: on a replicated JetStream stream (cluster mode)
// the server holds a guard against concurrent appends that carry the same
// filter, but not against an unguarded append to a stream of the family that
// is still in flight (see the jetstream package comment). The in-memory store
// and the embedded (single-replica) JetStream server hold it against every
// append.
type Guard struct {
	// Filter is a subject filter ("*" = one token, ">" = one or more trailing
	// tokens; see ValidateFilter), e.g. "billing.usage.*.07". It must match the
	// StreamAppend's Stream.
	Filter string
	// LastPosition is the position of the newest event of any stream matching
	// Filter that the caller has seen (0 = none): a position returned by
	// Store.LastPositionMatching, or by Append in a Record. The append succeeds
	// only if that is still the newest matching position.
	LastPosition uint64
}

// Store is the event store port. Every adapter passes the conformance suite.
type Store interface {
	// Append writes every StreamAppend atomically (all or nothing), each guarded
	// by its expected version and, when set, its Guard. On a version mismatch
	// it returns *ConflictError, on a failed guard *GuardConflictError, and
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

	// LastPositionMatching is the position of the newest event whose stream
	// matches filter (0 when none; "" matches everything, as in ReadAll). It is
	// the Guard.LastPosition a writer of that family starts from. An invalid
	// filter returns an error wrapping ErrInvalidFilter.
	LastPositionMatching(ctx context.Context, filter string) (uint64, error)
}

// TailReader is implemented by stores that can read what a stream holds
// after an event already read, so that a reader keeping a stream's events
// (the command pipeline's stream cache) fetches only the new ones. Streams
// are append-only, so a prefix once read never changes.
type TailReader interface {
	// ReadStreamAfter returns the events of stream after last, in version
	// order: last must be a record of that stream as ReadStream,
	// ReadStreamAfter or Append returned it (its version and position).
	ReadStreamAfter(ctx context.Context, stream string, last Record) ([]Record, error)
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

// GuardConflictError reports that a Guard failed: a stream matching its filter
// has an event after the position the caller expected.
type GuardConflictError struct {
	// Filter of the guard that failed.
	Filter string
	// Expected is the guard's LastPosition.
	Expected uint64
	// Actual is the newest matching position found (best effort: it is read
	// after the rejection on JetStream, and equals Expected when the competing
	// write could not be seen yet, e.g. still in flight in a cluster).
	Actual uint64
}

// Error implements error.
func (e *GuardConflictError) Error() string {
	return fmt.Sprintf("eventstore: guard conflict on %s: expected last position %d, found %d", e.Filter, e.Expected, e.Actual)
}

// IsGuardConflict reports whether err is (or wraps) a *GuardConflictError.
func IsGuardConflict(err error) bool {
	var c *GuardConflictError
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

// ErrInvalidFilter is returned for a subject filter that is not a valid filter.
var ErrInvalidFilter = errors.New("eventstore: invalid subject filter")

// filterToken is one token of a filter other than the wildcards.
var filterToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ValidateFilter checks a non-empty subject filter: dot-separated tokens, each
// [A-Za-z0-9_-]+ or "*", the last one possibly ">", at most 255 characters.
// (LastPositionMatching, like ReadAll and Subscribe, also takes "" for everything.)
func ValidateFilter(filter string) error {
	if len(filter) == 0 || len(filter) > 255 {
		return fmt.Errorf("%w: %q", ErrInvalidFilter, filter)
	}
	toks := splitTokens(filter)
	for i, tok := range toks {
		if tok == "*" || (tok == ">" && i == len(toks)-1) || filterToken.MatchString(tok) {
			continue
		}
		return fmt.Errorf("%w: %q", ErrInvalidFilter, filter)
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
