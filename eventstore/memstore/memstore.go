// Package memstore is an in-process eventstore.Store for pure simulations and
// unit tests. It keeps every record in one slice behind a mutex and has the
// same semantics as the JetStream adapter (it passes the same conformance
// suite): per-stream optimistic concurrency, guards over families of streams
// (eventstore.Guard), all-or-nothing multi-stream appends of at most
// eventstore.MaxAppendEvents events, the SHA-256 hash chain, positions 1, 2,
// 3, ... in append order, and subject-style filters. A guard here holds
// against every other append, guarded or not.
//
// Nothing survives the process. Stored events are sealed clones of the caller's
// events, and readers receive clones too, so no caller can alter what is stored.
package memstore

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Store is the in-memory event store. The zero value is not usable; call New.
type Store struct {
	mu sync.Mutex
	// recs holds every record; recs[i].Position == i+1. Stored events are never
	// modified after the append, so readers may keep a sub-slice after unlocking.
	recs []eventstore.Record
	// streams maps a stream name to the indexes of its records in recs.
	streams map[string][]int
	// changed is closed (and replaced) by every append to wake subscribers.
	changed chan struct{}
}

var _ eventstore.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{streams: make(map[string][]int), changed: make(chan struct{})}
}

// Append implements eventstore.Store. Under the store's lock it checks every
// expected version, then every guard against the store before the append,
// then writes; so a conflict on any stream or guard leaves the store unchanged.
func (s *Store) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	if err := eventstore.CheckAppend(appends); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(appends) == 0 {
		return nil, nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range appends {
		if actual := uint64(len(s.streams[a.Stream])); actual != a.ExpectedVersion {
			return nil, &eventstore.ConflictError{Stream: a.Stream, Expected: a.ExpectedVersion, Actual: actual}
		}
	}
	for _, a := range appends {
		if g := a.Guard; g != nil {
			if actual := s.lastMatchingLocked(g.Filter); actual != g.LastPosition {
				return nil, &eventstore.GuardConflictError{Filter: g.Filter, Expected: g.LastPosition, Actual: actual}
			}
		}
	}

	// Seal every event before storing any, so an encoding error also writes nothing.
	var sealed []*billingv1.Event
	for _, a := range appends {
		var prev []byte
		if idx := s.streams[a.Stream]; len(idx) > 0 {
			prev = s.recs[idx[len(idx)-1]].Event.GetHash()
		}
		for i, ev := range a.Events {
			c := proto.Clone(ev).(*billingv1.Event)
			if err := eventstore.Seal(c, a.Stream, a.ExpectedVersion+uint64(i)+1, prev); err != nil {
				return nil, err
			}
			prev = c.GetHash()
			sealed = append(sealed, c)
		}
	}

	out := make([]eventstore.Record, 0, len(sealed))
	for _, ev := range sealed {
		rec := eventstore.Record{Event: ev, Position: uint64(len(s.recs)) + 1}
		s.streams[ev.GetStream()] = append(s.streams[ev.GetStream()], len(s.recs))
		s.recs = append(s.recs, rec)
		out = append(out, cloneRecord(rec))
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out, nil
}

// ReadStream implements eventstore.Store.
func (s *Store) ReadStream(ctx context.Context, stream string) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.streams[stream]
	if len(idx) == 0 {
		return nil, nil
	}
	out := make([]eventstore.Record, len(idx))
	for i, j := range idx {
		out[i] = cloneRecord(s.recs[j])
	}
	return out, nil
}

// ReadStreamAfter implements eventstore.TailReader.
func (s *Store) ReadStreamAfter(ctx context.Context, stream string, last eventstore.Record) ([]eventstore.Record, error) {
	if err := eventstore.ValidateStream(stream); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.streams[stream]
	v := last.Event.GetStreamVersion()
	if v == 0 || v > uint64(len(idx)) || s.recs[idx[v-1]].Position != last.Position {
		return nil, fmt.Errorf("memstore: %s has no event at version %d and position %d", stream, v, last.Position)
	}
	out := make([]eventstore.Record, 0, uint64(len(idx))-v)
	for _, j := range idx[v:] {
		out = append(out, cloneRecord(s.recs[j]))
	}
	return out, nil
}

// ReadAll implements eventstore.Store. fn runs without the store's lock held, so
// it may append; such events lie beyond the call's last position and are not
// delivered.
func (s *Store) ReadAll(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	_, _, err := s.deliver(ctx, from, filter, fn)
	return err
}

// Subscribe implements eventstore.Store.
func (s *Store) Subscribe(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	for {
		next, changed, err := s.deliver(ctx, from, filter, fn)
		if err != nil {
			return err
		}
		from = next
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// deliver calls fn for the matching records after from, up to the last one at
// the time of the call. It returns the last position covered and a channel
// that is closed by the next append after that position.
func (s *Store) deliver(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) (uint64, <-chan struct{}, error) {
	s.mu.Lock()
	var todo []eventstore.Record
	if from < uint64(len(s.recs)) {
		todo = s.recs[from:]
	}
	last, changed := max(from, uint64(len(s.recs))), s.changed
	s.mu.Unlock()

	for _, r := range todo {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		if !eventstore.MatchFilter(filter, r.Event.GetStream()) {
			continue
		}
		if err := fn(cloneRecord(r)); err != nil {
			return 0, nil, err
		}
	}
	return last, changed, nil
}

// LastPosition implements eventstore.Store.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.recs)), nil
}

// LastPositionMatching implements eventstore.Store.
func (s *Store) LastPositionMatching(ctx context.Context, filter string) (uint64, error) {
	if filter != "" {
		if err := eventstore.ValidateFilter(filter); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastMatchingLocked(filter), nil
}

// lastMatchingLocked returns the position of the newest record whose stream
// matches filter, or 0. It looks at each stream's newest record, so it costs
// one match per stream, however long the streams are. s.mu must be held.
func (s *Store) lastMatchingLocked(filter string) uint64 {
	var last uint64
	for stream, idx := range s.streams {
		if p := uint64(idx[len(idx)-1]) + 1; p > last && eventstore.MatchFilter(filter, stream) {
			last = p
		}
	}
	return last
}

func cloneRecord(r eventstore.Record) eventstore.Record {
	return eventstore.Record{Event: proto.Clone(r.Event).(*billingv1.Event), Position: r.Position}
}
