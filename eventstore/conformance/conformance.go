// Package conformance is the test suite every eventstore.Store adapter must
// pass (DESIGN §2; STYLE "every store runs one conformance suite"). An adapter's
// own test file calls Run with a constructor for empty stores:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, func(t *testing.T) eventstore.Store { return memstore.New() })
//	}
//
// The suite checks: append and read back with versions 1..n; optimistic
// concurrency (typed *eventstore.ConflictError with exact Expected/Actual, and
// nothing written on a conflict); 20 concurrent writers racing on one stream;
// all-or-nothing multi-stream appends; ReadAll resumption and its bound;
// subject filters; Subscribe; the hash chain and tamper detection; input
// validation; and guards over families of streams (eventstore.Guard): success,
// typed *eventstore.GuardConflictError with exact Expected/Actual and nothing
// written, a guard tripped by a sibling stream, 20 concurrent guarded writers
// on different streams of one family, LastPositionMatching, and guard
// validation. Assertions are exact; no test sleeps to synchronize.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// timeout bounds every subtest, so a store that never answers fails instead of hanging.
const timeout = 30 * time.Second

// Run runs the suite. newStore must return an empty store that shares no data
// with any other store it returned; it may register cleanups on t. Subtests
// run in parallel, each with its own store.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s eventstore.Store)
	}{
		{"AppendAndReadStream", testAppendAndReadStream},
		{"ConflictWritesNothing", testConflictWritesNothing},
		{"ConcurrentWriters", testConcurrentWriters},
		{"MultiStreamAtomic", testMultiStreamAtomic},
		{"LargestAppend", testLargestAppend},
		{"ReadAllResume", testReadAllResume},
		{"ReadAllBound", testReadAllBound},
		{"Filter", testFilter},
		{"Subscribe", testSubscribe},
		{"SubscribeStopsOnError", testSubscribeStopsOnError},
		{"HashChain", testHashChain},
		{"InvalidInput", testInvalidInput},
		{"GuardAppends", testGuardAppends},
		{"GuardConflictWritesNothing", testGuardConflictWritesNothing},
		{"GuardCoversSiblings", testGuardCoversSiblings},
		{"GuardConcurrentWriters", testGuardConcurrentWriters},
		{"LastPositionMatching", testLastPositionMatching},
		{"GuardValidation", testGuardValidation},
		{"ReadStreamAfter", testReadStreamAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			tc.fn(t, ctx, newStore(t))
		})
	}
}

// ev returns an unsealed event with a unique id, as a command handler would build it.
func ev(id string) *billingv1.Event {
	return &billingv1.Event{
		EventId:       id,
		RecordedAt:    timestamppb.New(time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)),
		Actor:         "conformance",
		CorrelationId: "corr-" + id,
		CausationId:   "cause-" + id,
		Payload: &billingv1.Event_AccountAdded{AccountAdded: &billingv1.AccountAdded{
			ManagementAccountId: "111111111111",
			AccountId:           id,
		}},
	}
}

// evs returns n events with ids prefix-1 .. prefix-n.
func evs(prefix string, n int) []*billingv1.Event {
	out := make([]*billingv1.Event, n)
	for i := range out {
		out[i] = ev(fmt.Sprintf("%s-%d", prefix, i+1))
	}
	return out
}

// sealedCopy is what the store must have stored for input event in at the given place.
func sealedCopy(t *testing.T, in *billingv1.Event, stream string, version uint64, prev []byte) *billingv1.Event {
	t.Helper()
	c := proto.Clone(in).(*billingv1.Event)
	if err := eventstore.Seal(c, stream, version, prev); err != nil {
		t.Fatalf("seal: %v", err)
	}
	return c
}

func mustAppend(t *testing.T, ctx context.Context, s eventstore.Store, appends ...eventstore.StreamAppend) []eventstore.Record {
	t.Helper()
	recs, err := s.Append(ctx, appends...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	n := 0
	for _, a := range appends {
		n += len(a.Events)
	}
	if len(recs) != n {
		t.Fatalf("Append returned %d records, want %d", len(recs), n)
	}
	return recs
}

func mustReadStream(t *testing.T, ctx context.Context, s eventstore.Store, stream string) []eventstore.Record {
	t.Helper()
	recs, err := s.ReadStream(ctx, stream)
	if err != nil {
		t.Fatalf("ReadStream(%s): %v", stream, err)
	}
	return recs
}

func mustReadAll(t *testing.T, ctx context.Context, s eventstore.Store, from uint64, filter string) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	if err := s.ReadAll(ctx, from, filter, func(r eventstore.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("ReadAll(%d, %q): %v", from, filter, err)
	}
	return out
}

func mustLast(t *testing.T, ctx context.Context, s eventstore.Store) uint64 {
	t.Helper()
	p, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatalf("LastPosition: %v", err)
	}
	return p
}

// requireSame fails unless got and want hold the same positions and events, in order.
func requireSame(t *testing.T, what string, got, want []eventstore.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records %v, want %d %v", what, len(got), describe(got), len(want), describe(want))
	}
	for i := range got {
		if got[i].Position != want[i].Position || !proto.Equal(got[i].Event, want[i].Event) {
			t.Fatalf("%s: record %d: got %v, want %v", what, i, describe(got[i:i+1]), describe(want[i:i+1]))
		}
	}
}

// describe renders records compactly for failure messages.
func describe(recs []eventstore.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = fmt.Sprintf("%d:%s@%d(%s)", r.Position, r.Event.GetStream(), r.Event.GetStreamVersion(), r.Event.GetEventId())
	}
	return out
}

// requireConflict fails unless err is a *ConflictError with exactly these fields.
func requireConflict(t *testing.T, err error, stream string, expected, actual uint64) {
	t.Helper()
	var c *eventstore.ConflictError
	if !errors.As(err, &c) {
		t.Fatalf("got error %v, want *eventstore.ConflictError", err)
	}
	want := eventstore.ConflictError{Stream: stream, Expected: expected, Actual: actual}
	if *c != want {
		t.Fatalf("got %+v, want %+v", *c, want)
	}
	if !eventstore.IsConflict(err) {
		t.Fatalf("IsConflict(%v) = false", err)
	}
}

// requireIncreasing fails unless positions strictly increase.
func requireIncreasing(t *testing.T, recs []eventstore.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Position <= recs[i-1].Position {
			t.Fatalf("positions not increasing: %v", describe(recs))
		}
	}
}

func testAppendAndReadStream(t *testing.T, ctx context.Context, s eventstore.Store) {
	const stream = "billing.org.111111111111"
	if p := mustLast(t, ctx, s); p != 0 {
		t.Fatalf("empty store: LastPosition = %d, want 0", p)
	}
	first, second := evs("a", 3), evs("b", 2)
	recs := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, ExpectedVersion: 0, Events: first})
	recs = append(recs, mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, ExpectedVersion: 3, Events: second})...)

	// Each record is the input event sealed at versions 1..5 of one chain.
	var prev []byte
	for i, in := range slices.Concat(first, second) {
		want := sealedCopy(t, in, stream, uint64(i+1), prev)
		if !proto.Equal(recs[i].Event, want) {
			t.Fatalf("record %d: got %v, want %v", i, recs[i].Event, want)
		}
		if recs[i].Position == 0 {
			t.Fatalf("record %d has position 0", i)
		}
		prev = want.GetHash()
	}
	requireIncreasing(t, recs)
	requireSame(t, "ReadStream", mustReadStream(t, ctx, s, stream), recs)
	if p := mustLast(t, ctx, s); p != recs[len(recs)-1].Position {
		t.Fatalf("LastPosition = %d, want %d", p, recs[len(recs)-1].Position)
	}

	// An unknown stream is empty, not an error; a sibling subject is not mixed in.
	if got := mustReadStream(t, ctx, s, "billing.org.999999999999"); len(got) != 0 {
		t.Fatalf("unknown stream: got %v", describe(got))
	}
	if got := mustReadStream(t, ctx, s, "billing.org"); len(got) != 0 {
		t.Fatalf("prefix of a stream: got %v", describe(got))
	}
}

func testConflictWritesNothing(t *testing.T, ctx context.Context, s eventstore.Store) {
	const stream = "billing.transfer.rt-1"
	before := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, Events: evs("ok", 2)})
	last := mustLast(t, ctx, s)

	cases := []struct {
		name     string
		stream   string
		expected uint64
		actual   uint64
		events   int
	}{
		{"stale", stream, 1, 2, 1},
		{"stale batch", stream, 1, 2, 3},
		{"ahead", stream, 3, 2, 1},
		{"new but exists", stream, 0, 2, 2},
		{"exists but new", "billing.transfer.rt-2", 1, 0, 1},
		{"far ahead on new", "billing.transfer.rt-3", 7, 0, 2},
	}
	for _, tc := range cases {
		_, err := s.Append(ctx, eventstore.StreamAppend{Stream: tc.stream, ExpectedVersion: tc.expected, Events: evs(tc.name, tc.events)})
		requireConflict(t, err, tc.stream, tc.expected, tc.actual)
	}
	requireSame(t, "stream after conflicts", mustReadStream(t, ctx, s, stream), before)
	for _, other := range []string{"billing.transfer.rt-2", "billing.transfer.rt-3"} {
		if got := mustReadStream(t, ctx, s, other); len(got) != 0 {
			t.Fatalf("%s written despite conflict: %v", other, describe(got))
		}
	}
	if p := mustLast(t, ctx, s); p != last {
		t.Fatalf("LastPosition moved from %d to %d after conflicts", last, p)
	}
	requireSame(t, "ReadAll after conflicts", mustReadAll(t, ctx, s, 0, ""), before)

	// The right version still appends.
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, ExpectedVersion: 2, Events: evs("next", 1)})
}

func testConcurrentWriters(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		stream  = "billing.org.222222222222"
		writers = 20
		rounds  = 6
	)
	var version uint64
	var winners [][]*billingv1.Event // the winning events of each round
	for round := range rounds {
		n := 1 + round%2 // odd rounds append two events, so multi-event appends race too
		start := make(chan struct{})
		type result struct {
			writer int
			err    error
		}
		results := make(chan result, writers)
		events := make([][]*billingv1.Event, writers)
		var wg sync.WaitGroup
		for w := range writers {
			events[w] = evs(fmt.Sprintf("r%d-w%d", round, w), n)
			wg.Go(func() {
				<-start
				_, err := s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: version, Events: events[w]})
				results <- result{w, err}
			})
		}
		close(start)
		wg.Wait()
		close(results)

		winner := -1
		for r := range results {
			if r.err == nil {
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both won version %d", round, winner, r.writer, version+1)
				}
				winner = r.writer
				continue
			}
			requireConflict(t, r.err, stream, version, version+uint64(n))
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer won", round)
		}
		winners = append(winners, events[winner])
		version += uint64(n)
	}

	recs := mustReadStream(t, ctx, s, stream)
	want := slices.Concat(winners...)
	if uint64(len(recs)) != version || len(recs) != len(want) {
		t.Fatalf("stream has %d events, want %d", len(recs), version)
	}
	for i, r := range recs {
		if r.Event.GetStreamVersion() != uint64(i+1) || r.Event.GetEventId() != want[i].GetEventId() {
			t.Fatalf("event %d: version %d id %s, want version %d id %s",
				i, r.Event.GetStreamVersion(), r.Event.GetEventId(), i+1, want[i].GetEventId())
		}
	}
	if err := eventstore.VerifyChain(stream, recs); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "ReadAll", mustReadAll(t, ctx, s, 0, ""), recs)
}

func testMultiStreamAtomic(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		a = "billing.transfer.rt-7"
		b = "billing.org.333333333333"
		c = "billing.month.444444444444.2026-09"
	)
	existing := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: b, Events: evs("b0", 1)})
	last := mustLast(t, ctx, s)

	// The second stream conflicts: nothing of the first is written.
	_, err := s.Append(ctx,
		eventstore.StreamAppend{Stream: a, ExpectedVersion: 0, Events: evs("a", 2)},
		eventstore.StreamAppend{Stream: b, ExpectedVersion: 0, Events: evs("b", 1)},
	)
	requireConflict(t, err, b, 0, 1)
	// The first stream conflicts: nothing of the later ones is written.
	_, err = s.Append(ctx,
		eventstore.StreamAppend{Stream: b, ExpectedVersion: 5, Events: evs("b", 1)},
		eventstore.StreamAppend{Stream: a, ExpectedVersion: 0, Events: evs("a", 1)},
		eventstore.StreamAppend{Stream: c, ExpectedVersion: 0, Events: evs("c", 1)},
	)
	requireConflict(t, err, b, 5, 1)
	// Only the last of three conflicts.
	_, err = s.Append(ctx,
		eventstore.StreamAppend{Stream: a, ExpectedVersion: 0, Events: evs("a", 1)},
		eventstore.StreamAppend{Stream: c, ExpectedVersion: 0, Events: evs("c", 2)},
		eventstore.StreamAppend{Stream: b, ExpectedVersion: 2, Events: evs("b", 1)},
	)
	requireConflict(t, err, b, 2, 1)

	for _, st := range []string{a, c} {
		if got := mustReadStream(t, ctx, s, st); len(got) != 0 {
			t.Fatalf("%s written by a failed append: %v", st, describe(got))
		}
	}
	requireSame(t, b, mustReadStream(t, ctx, s, b), existing)
	if p := mustLast(t, ctx, s); p != last {
		t.Fatalf("LastPosition moved from %d to %d", last, p)
	}

	// All three succeed together; records come back in the order given.
	in := map[string][]*billingv1.Event{a: evs("a", 2), b: evs("b", 1), c: evs("c", 3)}
	recs := mustAppend(t, ctx, s,
		eventstore.StreamAppend{Stream: a, ExpectedVersion: 0, Events: in[a]},
		eventstore.StreamAppend{Stream: b, ExpectedVersion: 1, Events: in[b]},
		eventstore.StreamAppend{Stream: c, ExpectedVersion: 0, Events: in[c]},
	)
	requireIncreasing(t, recs)
	if recs[0].Position <= last {
		t.Fatalf("new record at position %d, not after %d", recs[0].Position, last)
	}
	wantOrder := []struct {
		stream  string
		version uint64
		id      string
	}{{a, 1, "a-1"}, {a, 2, "a-2"}, {b, 2, "b-1"}, {c, 1, "c-1"}, {c, 2, "c-2"}, {c, 3, "c-3"}}
	for i, w := range wantOrder {
		e := recs[i].Event
		if e.GetStream() != w.stream || e.GetStreamVersion() != w.version || e.GetEventId() != w.id {
			t.Fatalf("record %d = %v, want %s@%d(%s)", i, describe(recs[i:i+1]), w.stream, w.version, w.id)
		}
	}
	requireSame(t, a, mustReadStream(t, ctx, s, a), recs[0:2])
	requireSame(t, b, mustReadStream(t, ctx, s, b), append(existing, recs[2]))
	requireSame(t, c, mustReadStream(t, ctx, s, c), recs[3:6])
	for _, st := range []string{a, b, c} {
		if err := eventstore.VerifyChain(st, mustReadStream(t, ctx, s, st)); err != nil {
			t.Fatal(err)
		}
	}
}

func testLargestAppend(t *testing.T, ctx context.Context, s eventstore.Store) {
	const a, b = "billing.usage.2026-09.p0", "billing.usage.2026-09.p1"
	half := eventstore.MaxAppendEvents / 2
	_, err := s.Append(ctx,
		eventstore.StreamAppend{Stream: a, Events: evs("x", half)},
		eventstore.StreamAppend{Stream: b, Events: evs("y", eventstore.MaxAppendEvents-half+1)},
	)
	if !errors.Is(err, eventstore.ErrAppendTooLarge) {
		t.Fatalf("append of %d events: got %v, want ErrAppendTooLarge", eventstore.MaxAppendEvents+1, err)
	}
	if p := mustLast(t, ctx, s); p != 0 {
		t.Fatalf("too large append wrote something: LastPosition = %d", p)
	}

	recs := mustAppend(t, ctx, s,
		eventstore.StreamAppend{Stream: a, Events: evs("x", half)},
		eventstore.StreamAppend{Stream: b, Events: evs("y", eventstore.MaxAppendEvents-half)},
	)
	requireIncreasing(t, recs)
	requireSame(t, a, mustReadStream(t, ctx, s, a), recs[:half])
	requireSame(t, b, mustReadStream(t, ctx, s, b), recs[half:])
	requireSame(t, "ReadAll", mustReadAll(t, ctx, s, 0, ""), recs)
}

// appendMixed writes a few events to several streams in several appends and
// returns every record in position order.
func appendMixed(t *testing.T, ctx context.Context, s eventstore.Store) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	versions := map[string]uint64{}
	add := func(prefix string, appends ...eventstore.StreamAppend) {
		for i := range appends {
			appends[i].ExpectedVersion = versions[appends[i].Stream]
			appends[i].Events = evs(fmt.Sprintf("%s-%d", prefix, i), len(appends[i].Events))
			versions[appends[i].Stream] += uint64(len(appends[i].Events))
		}
		all = append(all, mustAppend(t, ctx, s, appends...)...)
	}
	one, two := make([]*billingv1.Event, 1), make([]*billingv1.Event, 2)
	add("m1", eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: one})
	add("m2", eventstore.StreamAppend{Stream: "billing.usage.2026-09.p0", Events: two},
		eventstore.StreamAppend{Stream: "billing.usage.2026-10.p0", Events: one})
	add("m3", eventstore.StreamAppend{Stream: "billing.org.222222222222", Events: one},
		eventstore.StreamAppend{Stream: "billing.transfer.rt-1", Events: two})
	add("m4", eventstore.StreamAppend{Stream: "billing.usage.2026-09.p1", Events: one})
	add("m5", eventstore.StreamAppend{Stream: "billing.org.111111111111.extra", Events: one})
	add("m6", eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: two},
		eventstore.StreamAppend{Stream: "billing.usage.2026-09.p0", Events: one})
	add("m7", eventstore.StreamAppend{Stream: "billing.usage.2026-09", Events: one})
	requireIncreasing(t, all)
	return all
}

func testReadAllResume(t *testing.T, ctx context.Context, s eventstore.Store) {
	all := appendMixed(t, ctx, s)
	requireSame(t, "ReadAll(0)", mustReadAll(t, ctx, s, 0, ""), all)
	requireSame(t, "ReadAll(0, >)", mustReadAll(t, ctx, s, 0, ">"), all)
	for i, r := range all {
		requireSame(t, fmt.Sprintf("ReadAll(%d)", r.Position), mustReadAll(t, ctx, s, r.Position, ""), all[i+1:])
	}
	last := all[len(all)-1].Position
	if p := mustLast(t, ctx, s); p != last {
		t.Fatalf("LastPosition = %d, want %d", p, last)
	}
	if got := mustReadAll(t, ctx, s, last+10, ""); len(got) != 0 {
		t.Fatalf("ReadAll beyond the end: %v", describe(got))
	}

	// An error from fn stops the read and comes back unchanged.
	stop := errors.New("stop here")
	var seen int
	err := s.ReadAll(ctx, 0, "", func(eventstore.Record) error {
		seen++
		if seen == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 3 {
		t.Fatalf("ReadAll with failing fn: err %v after %d records, want %v after 3", err, seen, stop)
	}
}

func testReadAllBound(t *testing.T, ctx context.Context, s eventstore.Store) {
	const stream = "billing.org.555555555555"
	before := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, Events: evs("before", 3)})

	// Events appended while ReadAll runs lie beyond its last position: not delivered.
	var got, during []eventstore.Record
	err := s.ReadAll(ctx, 0, "", func(r eventstore.Record) error {
		if len(got) == 0 {
			during = mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, ExpectedVersion: 3, Events: evs("during", 2)})
		}
		got = append(got, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	requireSame(t, "ReadAll while appending", got, before)
	requireSame(t, "ReadAll afterwards", mustReadAll(t, ctx, s, 0, ""), append(before, during...))
}

func testFilter(t *testing.T, ctx context.Context, s eventstore.Store) {
	all := appendMixed(t, ctx, s)
	pick := func(streams ...string) []eventstore.Record {
		var out []eventstore.Record
		for _, r := range all {
			if slices.Contains(streams, r.Event.GetStream()) {
				out = append(out, r)
			}
		}
		return out
	}
	cases := []struct {
		filter string
		want   []eventstore.Record
	}{
		{"billing.org.*", pick("billing.org.111111111111", "billing.org.222222222222")},
		{"billing.org.>", pick("billing.org.111111111111", "billing.org.222222222222", "billing.org.111111111111.extra")},
		{"billing.usage.2026-09.>", pick("billing.usage.2026-09.p0", "billing.usage.2026-09.p1")},
		{"billing.usage.*.p0", pick("billing.usage.2026-09.p0", "billing.usage.2026-10.p0")},
		{"billing.usage.>", pick("billing.usage.2026-09.p0", "billing.usage.2026-09.p1", "billing.usage.2026-10.p0", "billing.usage.2026-09")},
		{"billing.transfer.rt-1", pick("billing.transfer.rt-1")},
		{"billing.pricing.>", nil},
	}
	for _, tc := range cases {
		if len(tc.want) == 0 && tc.filter != "billing.pricing.>" {
			t.Fatalf("filter %s: test data has no match", tc.filter)
		}
		requireSame(t, "filter "+tc.filter, mustReadAll(t, ctx, s, 0, tc.filter), tc.want)
		// Resuming under a filter from every position returns exactly the later matches.
		for i, r := range all {
			var later []eventstore.Record
			for _, w := range tc.want {
				if w.Position > r.Position {
					later = append(later, w)
				}
			}
			requireSame(t, fmt.Sprintf("filter %s from %d (record %d)", tc.filter, r.Position, i),
				mustReadAll(t, ctx, s, r.Position, tc.filter), later)
		}
	}
}

func testSubscribe(t *testing.T, ctx context.Context, s eventstore.Store) {
	const org, usage = "billing.org.666666666666", "billing.usage.2026-09.p0"
	old := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: org, Events: evs("old", 2)})
	from := old[0].Position // the second old event is delivered, the first is not

	type sub struct {
		filter string
		recs   chan eventstore.Record
		done   chan error
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(from uint64, filter string) *sub {
		x := &sub{filter: filter, recs: make(chan eventstore.Record, 100), done: make(chan error, 1)}
		go func() {
			x.done <- s.Subscribe(subCtx, from, filter, func(r eventstore.Record) error {
				x.recs <- r
				return nil
			})
		}()
		return x
	}
	everything, orgs := start(from, ""), start(from, "billing.org.*")
	atEnd := start(mustLast(t, ctx, s), "") // a projector that has caught up

	// New events, appended while (or before) the subscriptions start: either way they
	// lie after from and must arrive, once, in order.
	var appended []eventstore.Record
	for i := range 3 {
		appended = append(appended, mustAppend(t, ctx, s,
			eventstore.StreamAppend{Stream: usage, ExpectedVersion: uint64(i), Events: evs(fmt.Sprintf("u%d", i), 1)},
			eventstore.StreamAppend{Stream: org, ExpectedVersion: uint64(2 + i), Events: evs(fmt.Sprintf("o%d", i), 1)},
		)...)
	}
	wantAll := append([]eventstore.Record{old[1]}, appended...)
	var wantOrg []eventstore.Record
	for _, r := range wantAll {
		if r.Event.GetStream() == org {
			wantOrg = append(wantOrg, r)
		}
	}

	expect := func(what string, x *sub, want []eventstore.Record) {
		var got []eventstore.Record
		for len(got) < len(want) {
			select {
			case r := <-x.recs:
				got = append(got, r)
			case err := <-x.done:
				t.Fatalf("%s ended early: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("%s: got %v, want %v", what, describe(got), describe(want))
			}
		}
		requireSame(t, what, got, want)
	}
	expect("Subscribe(all)", everything, wantAll)
	expect("Subscribe(billing.org.*)", orgs, wantOrg)
	expect("Subscribe(from the end)", atEnd, appended)

	cancel()
	for _, x := range []*sub{everything, orgs, atEnd} {
		if err := <-x.done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe(%q) after cancel returned %v, want context.Canceled", x.filter, err)
		}
		if len(x.recs) != 0 {
			t.Fatalf("Subscribe(%q) delivered %d extra records", x.filter, len(x.recs))
		}
	}
}

func testSubscribeStopsOnError(t *testing.T, ctx context.Context, s eventstore.Store) {
	const stream = "billing.org.777777777777"
	recs := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: stream, Events: evs("e", 3)})
	stop := errors.New("projector failed")
	var got []eventstore.Record
	err := s.Subscribe(ctx, 0, "", func(r eventstore.Record) error {
		got = append(got, r)
		if len(got) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Subscribe returned %v, want %v", err, stop)
	}
	requireSame(t, "delivered before the error", got, recs[:2])
}

func testHashChain(t *testing.T, ctx context.Context, s eventstore.Store) {
	const a, b = "billing.transfer.rt-9", "billing.org.888888888888"
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: a, Events: evs("a1", 2)}, eventstore.StreamAppend{Stream: b, Events: evs("b1", 1)})
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: a, ExpectedVersion: 2, Events: evs("a2", 1)})
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: b, ExpectedVersion: 1, Events: evs("b2", 3)}, eventstore.StreamAppend{Stream: a, ExpectedVersion: 3, Events: evs("a3", 2)})

	streams := map[string][]eventstore.Record{a: mustReadStream(t, ctx, s, a), b: mustReadStream(t, ctx, s, b)}
	for st, recs := range streams {
		if n := map[string]int{a: 5, b: 4}[st]; len(recs) != n || len(recs[0].Event.GetPrevHash()) != 0 || len(recs[0].Event.GetHash()) != 32 {
			t.Fatalf("%s: %d records, first prev_hash %x hash %x", st, len(recs), recs[0].Event.GetPrevHash(), recs[0].Event.GetHash())
		}
		if err := eventstore.VerifyChain(st, recs); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}

	// Tampered copies are caught at the altered version.
	tampers := []struct {
		name    string
		version uint64
		change  func(recs []eventstore.Record) []eventstore.Record
	}{
		{"payload", 3, func(r []eventstore.Record) []eventstore.Record {
			r[2].Event.GetAccountAdded().AccountId = "999999999999"
			return r
		}},
		{"actor", 1, func(r []eventstore.Record) []eventstore.Record { r[0].Event.Actor = "mallory"; return r }},
		{"rewritten and rehashed", 4, func(r []eventstore.Record) []eventstore.Record {
			// Changing an event and recomputing its own hash breaks the next link.
			r[2].Event.RecordedAt = timestamppb.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			h, err := eventstore.ComputeHash(r[2].Event)
			if err != nil {
				t.Fatal(err)
			}
			r[2].Event.Hash = h
			return r
		}},
		{"removed", 2, func(r []eventstore.Record) []eventstore.Record { return append(r[:1], r[2:]...) }},
		{"reordered", 2, func(r []eventstore.Record) []eventstore.Record { r[1], r[2] = r[2], r[1]; return r }},
		{"moved", 1, func(r []eventstore.Record) []eventstore.Record { r[0].Event.Stream = b; return r }},
	}
	for _, tc := range tampers {
		recs := streams[a]
		cp := make([]eventstore.Record, len(recs))
		for i, r := range recs {
			cp[i] = eventstore.Record{Event: proto.Clone(r.Event).(*billingv1.Event), Position: r.Position}
		}
		err := eventstore.VerifyChain(a, tc.change(cp))
		var ce *eventstore.ChainError
		if !errors.As(err, &ce) || ce.Stream != a || ce.Version != tc.version {
			t.Fatalf("tamper %s: got %v, want a chain break in %s at version %d", tc.name, err, a, tc.version)
		}
	}
	// The stored copy is untouched by tampering with what was read.
	if err := eventstore.VerifyChain(a, mustReadStream(t, ctx, s, a)); err != nil {
		t.Fatalf("stored chain changed by tampering with a copy: %v", err)
	}
}

func testInvalidInput(t *testing.T, ctx context.Context, s eventstore.Store) {
	const good = "billing.org.111111111111"
	for _, name := range []string{"", "billing.org.*", "billing.>", "billing..org", ".billing", "billing.org.", "billing org", "billing.ørg"} {
		_, err := s.Append(ctx,
			eventstore.StreamAppend{Stream: good, Events: evs("good", 1)},
			eventstore.StreamAppend{Stream: name, Events: evs("bad", 1)},
		)
		if !errors.Is(err, eventstore.ErrInvalidStream) {
			t.Fatalf("Append to %q: got %v, want ErrInvalidStream", name, err)
		}
		if _, err := s.ReadStream(ctx, name); !errors.Is(err, eventstore.ErrInvalidStream) {
			t.Fatalf("ReadStream(%q): got %v, want ErrInvalidStream", name, err)
		}
	}
	cases := []struct {
		name    string
		appends []eventstore.StreamAppend
		want    error
	}{
		{"no events", []eventstore.StreamAppend{{Stream: good}}, eventstore.ErrEmptyAppend},
		{"nil event", []eventstore.StreamAppend{{Stream: good, Events: []*billingv1.Event{ev("x"), nil}}}, eventstore.ErrEmptyAppend},
		{"stream twice", []eventstore.StreamAppend{{Stream: good, Events: evs("x", 1)}, {Stream: good, ExpectedVersion: 1, Events: evs("y", 1)}}, eventstore.ErrDuplicateStream},
		{"too large", []eventstore.StreamAppend{{Stream: good, Events: evs("x", eventstore.MaxAppendEvents+1)}}, eventstore.ErrAppendTooLarge},
	}
	for _, tc := range cases {
		if _, err := s.Append(ctx, tc.appends...); !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if p := mustLast(t, ctx, s); p != 0 {
		t.Fatalf("rejected appends wrote something: LastPosition = %d", p)
	}
	if recs, err := s.Append(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("empty Append: %v, %v; want no records, no error", describe(recs), err)
	}
}

// usageFamily is the guard filter of usage partition 07 over all months.
const usageFamily = "billing.usage.*.07"

// GuardFamilies lists every wildcard filter the suite's guards use. An
// adapter that must be told its guard families in advance (the EventStoreDB
// adapter marks every append to a declared family) is given these.
var GuardFamilies = []string{usageFamily, "billing.usage.>", ">", "billing.*.*.07"}

// guarded is a StreamAppend with a guard.
func guarded(stream string, version uint64, filter string, last uint64, events []*billingv1.Event) eventstore.StreamAppend {
	return eventstore.StreamAppend{Stream: stream, ExpectedVersion: version, Events: events, Guard: &eventstore.Guard{Filter: filter, LastPosition: last}}
}

func mustLastMatching(t *testing.T, ctx context.Context, s eventstore.Store, filter string) uint64 {
	t.Helper()
	p, err := s.LastPositionMatching(ctx, filter)
	if err != nil {
		t.Fatalf("LastPositionMatching(%q): %v", filter, err)
	}
	return p
}

// requireGuardConflict fails unless err is a *GuardConflictError with exactly these fields.
func requireGuardConflict(t *testing.T, err error, filter string, expected, actual uint64) {
	t.Helper()
	var g *eventstore.GuardConflictError
	if !errors.As(err, &g) {
		t.Fatalf("got error %v, want *eventstore.GuardConflictError", err)
	}
	want := eventstore.GuardConflictError{Filter: filter, Expected: expected, Actual: actual}
	if *g != want {
		t.Fatalf("got %+v, want %+v", *g, want)
	}
	if !eventstore.IsGuardConflict(err) || eventstore.IsConflict(err) {
		t.Fatalf("IsGuardConflict(%v) = %v, IsConflict = %v", err, eventstore.IsGuardConflict(err), eventstore.IsConflict(err))
	}
}

// testGuardAppends appends to several months of one partition under one
// guard: single events, several events (an atomic batch on JetStream), and a
// guarded stream beside an unguarded one; events of other streams do not move
// the guard. Every stream keeps an exact version sequence and hash chain.
func testGuardAppends(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		sep   = "billing.usage.2026-09.07"
		oct   = "billing.usage.2026-10.07"
		other = "billing.usage.2026-09.08"
		org   = "billing.org.111111111111"
	)
	var all []eventstore.Record
	last := func(recs []eventstore.Record) uint64 { return recs[len(recs)-1].Position }

	// A new family: nothing matches, so the guard is 0.
	recs := mustAppend(t, ctx, s, guarded(sep, 0, usageFamily, 0, evs("s1", 1)))
	all = append(all, recs...)
	pos := last(recs)
	if got := mustLastMatching(t, ctx, s, usageFamily); got != pos {
		t.Fatalf("LastPositionMatching after the first append = %d, want %d", got, pos)
	}

	// Streams outside the family do not move the guard.
	all = append(all, mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: other, Events: evs("x1", 2)})...)
	all = append(all, mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: org, Events: evs("o1", 1)})...)

	// Several events to a new month of the family (an atomic batch on JetStream).
	recs = mustAppend(t, ctx, s, guarded(oct, 0, usageFamily, pos, evs("t1", 3)))
	all = append(all, recs...)
	pos = last(recs)
	// Back to the first month, which has version 1 and is not the newest of the family.
	recs = mustAppend(t, ctx, s, guarded(sep, 1, usageFamily, pos, evs("s2", 2)))
	all = append(all, recs...)
	pos = last(recs)
	// A guarded stream beside an unguarded one, in one atomic append; the
	// guard is checked against the store before the append.
	recs = mustAppend(t, ctx, s,
		eventstore.StreamAppend{Stream: org, ExpectedVersion: 1, Events: evs("o2", 1)},
		guarded(oct, 3, usageFamily, pos, evs("t2", 1)),
		eventstore.StreamAppend{Stream: other, ExpectedVersion: 2, Events: evs("x2", 1)},
	)
	all = append(all, recs...)
	pos = recs[1].Position
	// A literal filter (the stream itself) guards on the stream's own last position.
	recs = mustAppend(t, ctx, s, guarded(oct, 4, oct, pos, evs("t3", 1)))
	all = append(all, recs...)
	pos = last(recs)
	// Two guarded streams of the family in one append, both checked against the store before it.
	recs = mustAppend(t, ctx, s, guarded(sep, 3, usageFamily, pos, evs("s3", 1)), guarded(oct, 5, usageFamily, pos, evs("t4", 2)))
	all = append(all, recs...)
	pos = last(recs)

	requireIncreasing(t, all)
	if got := mustLastMatching(t, ctx, s, usageFamily); got != pos {
		t.Fatalf("LastPositionMatching = %d, want %d", got, pos)
	}
	want := map[string][]string{
		sep:   {"s1-1", "s2-1", "s2-2", "s3-1"},
		oct:   {"t1-1", "t1-2", "t1-3", "t2-1", "t3-1", "t4-1", "t4-2"},
		other: {"x1-1", "x1-2", "x2-1"},
		org:   {"o1-1", "o2-1"},
	}
	for stream, ids := range want {
		recs := mustReadStream(t, ctx, s, stream)
		var got []string
		for _, r := range recs {
			got = append(got, r.Event.GetEventId())
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("%s holds %v, want %v", stream, got, ids)
		}
		if err := eventstore.VerifyChain(stream, recs); err != nil {
			t.Fatal(err)
		}
	}
	requireSame(t, "ReadAll", mustReadAll(t, ctx, s, 0, ""), all)
}

// testGuardConflictWritesNothing checks that a failed guard, or a wrong
// expected version under a guard that holds, fails with the exact typed error
// and writes nothing, also when other streams of the append are fine.
func testGuardConflictWritesNothing(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		sep = "billing.usage.2026-09.07"
		oct = "billing.usage.2026-10.07"
		org = "billing.org.111111111111"
	)
	first := mustAppend(t, ctx, s, guarded(sep, 0, usageFamily, 0, evs("s", 2)))
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: org, Events: evs("o", 1)})
	p1, p2 := first[0].Position, first[1].Position
	before := mustReadAll(t, ctx, s, 0, "")
	last := mustLast(t, ctx, s)

	guardCases := []struct {
		name    string
		appends []eventstore.StreamAppend
		guard   uint64
	}{
		{"stale", []eventstore.StreamAppend{guarded(sep, 2, usageFamily, p1, evs("a", 1))}, p1},
		{"stale batch", []eventstore.StreamAppend{guarded(sep, 2, usageFamily, p1, evs("b", 3))}, p1},
		{"stale on a new month", []eventstore.StreamAppend{guarded(oct, 0, usageFamily, p1, evs("c", 1))}, p1},
		{"none but exists", []eventstore.StreamAppend{guarded(oct, 0, usageFamily, 0, evs("d", 2))}, 0},
		{"ahead", []eventstore.StreamAppend{guarded(oct, 0, usageFamily, last+5, evs("e", 1))}, last + 5},
		{"after a good stream", []eventstore.StreamAppend{
			{Stream: org, ExpectedVersion: 1, Events: evs("f", 1)},
			guarded(oct, 0, usageFamily, p1, evs("f", 2)),
		}, p1},
		{"before a good stream", []eventstore.StreamAppend{
			guarded(oct, 0, usageFamily, p1, evs("g", 1)),
			{Stream: org, ExpectedVersion: 1, Events: evs("g", 2)},
		}, p1},
	}
	for _, tc := range guardCases {
		_, err := s.Append(ctx, tc.appends...)
		requireGuardConflict(t, err, usageFamily, tc.guard, p2)
	}

	// The guard holds but the stream's expected version is wrong: the version
	// decides the numbering and the chain, so this is a version conflict.
	versionCases := []struct {
		name     string
		stream   string
		expected uint64
		actual   uint64
		guard    uint64
	}{
		{"stale version", sep, 1, 2, p2},
		{"version ahead", sep, 3, 2, p2},
		{"new but exists", sep, 0, 2, p2},
		{"exists but new", oct, 1, 0, p2},
		{"stale version and stale guard", sep, 1, 2, p1},
	}
	for _, tc := range versionCases {
		_, err := s.Append(ctx, guarded(tc.stream, tc.expected, usageFamily, tc.guard, evs(tc.name, 2)))
		requireConflict(t, err, tc.stream, tc.expected, tc.actual)
	}

	if p := mustLast(t, ctx, s); p != last {
		t.Fatalf("LastPosition moved from %d to %d after conflicts", last, p)
	}
	if p := mustLastMatching(t, ctx, s, usageFamily); p != p2 {
		t.Fatalf("LastPositionMatching moved from %d to %d after conflicts", p2, p)
	}
	requireSame(t, "ReadAll after conflicts", mustReadAll(t, ctx, s, 0, ""), before)

	// The right guard and version still append.
	mustAppend(t, ctx, s, guarded(oct, 0, usageFamily, p2, evs("next", 2)))
}

// testGuardCoversSiblings: an append to one month guarded by the partition's
// filter fails after another month of the partition moved, not after a
// stream of another partition moved.
func testGuardCoversSiblings(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		sep      = "billing.usage.2026-09.07"
		oct      = "billing.usage.2026-10.07"
		otherSep = "billing.usage.2026-09.08"
	)
	pos := mustAppend(t, ctx, s, guarded(sep, 0, usageFamily, 0, evs("s1", 1)))[0].Position

	// Another partition's streams are outside the family.
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: otherSep, Events: evs("x", 1)})
	pos = mustAppend(t, ctx, s, guarded(sep, 1, usageFamily, pos, evs("s2", 1)))[0].Position

	// Someone appends to a sibling month, without a guard.
	sibling := mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: oct, Events: evs("o1", 2)})
	siblingPos := sibling[1].Position
	before := mustReadAll(t, ctx, s, 0, "")

	for _, n := range []int{1, 3} {
		_, err := s.Append(ctx, guarded(sep, 2, usageFamily, pos, evs(fmt.Sprintf("late%d", n), n)))
		requireGuardConflict(t, err, usageFamily, pos, siblingPos)
	}
	requireSame(t, "after the failed guard", mustReadAll(t, ctx, s, 0, ""), before)

	// The stream's own check alone would have passed; the guard is stronger.
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: sep, ExpectedVersion: 2, Events: evs("unguarded", 1)})
	// Reloading the family's position lets the writer continue.
	pos = mustLastMatching(t, ctx, s, usageFamily)
	recs := mustAppend(t, ctx, s, guarded(sep, 3, usageFamily, pos, evs("s3", 1)))
	if got := mustLastMatching(t, ctx, s, usageFamily); got != recs[0].Position {
		t.Fatalf("LastPositionMatching = %d, want %d", got, recs[0].Position)
	}
	for _, st := range []string{sep, oct, otherSep} {
		if err := eventstore.VerifyChain(st, mustReadStream(t, ctx, s, st)); err != nil {
			t.Fatal(err)
		}
	}
}

// testGuardConcurrentWriters races 20 writers, each on its own month of one
// partition, all guarded by the partition's filter: exactly one wins each
// round and every loser gets the winner's position as Actual.
func testGuardConcurrentWriters(t *testing.T, ctx context.Context, s eventstore.Store) {
	const (
		writers = 20
		rounds  = 6
	)
	streams := make([]string, writers)
	for w := range streams {
		streams[w] = fmt.Sprintf("billing.usage.%04d-%02d.07", 2025+w/12, 1+w%12)
	}
	versions := make([]uint64, writers)
	var pos uint64
	var winners []eventstore.Record
	for round := range rounds {
		n := 1 + round%2 // odd rounds append two events, so guarded batches race too
		start := make(chan struct{})
		type result struct {
			writer int
			recs   []eventstore.Record
			err    error
		}
		results := make(chan result, writers)
		var wg sync.WaitGroup
		for w := range writers {
			a := guarded(streams[w], versions[w], usageFamily, pos, evs(fmt.Sprintf("r%d-w%d", round, w), n))
			wg.Go(func() {
				<-start
				recs, err := s.Append(ctx, a)
				results <- result{w, recs, err}
			})
		}
		close(start)
		wg.Wait()
		close(results)

		var win *result
		var losers []error
		for r := range results {
			if r.err == nil {
				if win != nil {
					t.Fatalf("round %d: writers %d and %d both won", round, win.writer, r.writer)
				}
				win = &r
				continue
			}
			losers = append(losers, r.err)
		}
		if win == nil {
			t.Fatalf("round %d: no writer won", round)
		}
		newPos := win.recs[len(win.recs)-1].Position
		for _, err := range losers {
			requireGuardConflict(t, err, usageFamily, pos, newPos)
		}
		winners = append(winners, win.recs...)
		versions[win.writer] += uint64(n)
		pos = newPos
		if got := mustLastMatching(t, ctx, s, usageFamily); got != pos {
			t.Fatalf("round %d: LastPositionMatching = %d, want %d", round, got, pos)
		}
	}
	requireSame(t, "ReadAll of the family", mustReadAll(t, ctx, s, 0, usageFamily), winners)
	requireSame(t, "ReadAll", mustReadAll(t, ctx, s, 0, ""), winners)
	for w, st := range streams {
		recs := mustReadStream(t, ctx, s, st)
		if uint64(len(recs)) != versions[w] {
			t.Fatalf("%s has %d events, want %d", st, len(recs), versions[w])
		}
		if err := eventstore.VerifyChain(st, recs); err != nil {
			t.Fatal(err)
		}
	}
}

// testLastPositionMatching checks the newest matching position for literal
// and wildcard filters before and after appends, and filter validation.
func testLastPositionMatching(t *testing.T, ctx context.Context, s eventstore.Store) {
	filters := []string{"", ">", "billing.>", usageFamily, "billing.usage.2026-09.>", "billing.usage.2026-09.07",
		"billing.usage.2026-09", "billing.org.*", "billing.*.*", "billing.pricing.>", "audit.>"}
	for _, f := range filters {
		if got := mustLastMatching(t, ctx, s, f); got != 0 {
			t.Fatalf("empty store: LastPositionMatching(%q) = %d, want 0", f, got)
		}
	}
	all := appendMixed(t, ctx, s)
	all = append(all, mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: evs("u", 1)})...)
	all = append(all, mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: "billing.org.333333333333", Events: evs("o", 2)})...)
	for _, f := range filters {
		var want uint64
		for _, r := range all {
			if eventstore.MatchFilter(f, r.Event.GetStream()) {
				want = r.Position
			}
		}
		if got := mustLastMatching(t, ctx, s, f); got != want {
			t.Fatalf("LastPositionMatching(%q) = %d, want %d", f, got, want)
		}
	}
	if got, want := mustLastMatching(t, ctx, s, ""), mustLast(t, ctx, s); got != want {
		t.Fatalf("LastPositionMatching(\"\") = %d, LastPosition = %d", got, want)
	}
	for _, f := range []string{"billing..org", "billing.>.org", ".billing", "billing.", "billing org", "billing.ørg", "billing.or*"} {
		if _, err := s.LastPositionMatching(ctx, f); !errors.Is(err, eventstore.ErrInvalidFilter) {
			t.Fatalf("LastPositionMatching(%q): got %v, want ErrInvalidFilter", f, err)
		}
	}
}

// testGuardValidation: a guard with an invalid filter, or a filter that does
// not match its stream, is rejected before anything is written.
func testGuardValidation(t *testing.T, ctx context.Context, s eventstore.Store) {
	const sep = "billing.usage.2026-09.07"
	cases := []struct {
		name    string
		filter  string
		invalid bool // also ErrInvalidFilter
	}{
		{"empty filter", "", true},
		{"bad filter", "billing..usage", true},
		{"'>' not last", "billing.>.07", true},
		{"other partition", "billing.usage.*.08", false},
		{"other month", "billing.usage.2026-10.07", false},
		{"too short", "billing.usage.*", false},
		{"too long", "billing.usage.*.07.*", false},
		{"other stream", "billing.org.>", false},
	}
	for _, tc := range cases {
		_, err := s.Append(ctx,
			eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: evs("ok", 1)},
			guarded(sep, 0, tc.filter, 0, evs("bad", 1)),
		)
		if !errors.Is(err, eventstore.ErrInvalidGuard) || errors.Is(err, eventstore.ErrInvalidFilter) != tc.invalid {
			t.Fatalf("%s (%q): got %v, want ErrInvalidGuard (ErrInvalidFilter %v)", tc.name, tc.filter, err, tc.invalid)
		}
	}
	if p := mustLast(t, ctx, s); p != 0 {
		t.Fatalf("rejected guards wrote something: LastPosition = %d", p)
	}
	// Filters that do match the stream are fine, the widest included.
	var pos uint64
	for i, f := range []string{usageFamily, "billing.usage.>", ">", "billing.*.*.07", sep} {
		recs := mustAppend(t, ctx, s, guarded(sep, uint64(i), f, pos, evs(fmt.Sprintf("f%d", i), 1)))
		pos = recs[0].Position
	}
}

// testReadStreamAfter checks eventstore.TailReader, for stores that have it:
// after any record of a stream, exactly the stream's later events, in order,
// equal to what ReadStream returns; nothing after the newest; other streams'
// events never.
func testReadStreamAfter(t *testing.T, ctx context.Context, s eventstore.Store) {
	tr, ok := s.(eventstore.TailReader)
	if !ok {
		return // optional: readers fall back to ReadStream
	}
	const a, b = "billing.org.111111111111", "billing.org.222222222222"
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: a, Events: evs("a1", 3)})
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: b, Events: evs("b1", 2)})
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: a, ExpectedVersion: 3, Events: evs("a2", 1)},
		eventstore.StreamAppend{Stream: b, ExpectedVersion: 2, Events: evs("b2", 1)})
	mustAppend(t, ctx, s, eventstore.StreamAppend{Stream: a, ExpectedVersion: 4, Events: evs("a3", 2)})
	all := mustReadStream(t, ctx, s, a)
	if len(all) != 6 {
		t.Fatalf("%s holds %d events, want 6", a, len(all))
	}
	for i, last := range all {
		got, err := tr.ReadStreamAfter(ctx, a, last)
		if err != nil {
			t.Fatalf("ReadStreamAfter(version %d): %v", last.Event.GetStreamVersion(), err)
		}
		requireSame(t, fmt.Sprintf("ReadStreamAfter(version %d)", last.Event.GetStreamVersion()), got, all[i+1:])
	}
}
