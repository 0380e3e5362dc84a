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
// subject filters; Subscribe; the hash chain and tamper detection; and input
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
