package esdb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
	"github.com/billtransfer/ledger/eventstore/esdb/esdbfake"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// startFake serves a fake KurrentDB (an older one, without multi-stream
// appends, with old) until the test ends and returns its connection string.
func startFake(t *testing.T, old bool) (*esdbfake.Server, string) {
	t.Helper()
	f, err := esdbfake.Start(old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, f.URL()
}

// startFakeServer serves a fake KurrentDB 25.1 until the test ends.
func startFakeServer(t *testing.T) (*esdbfake.Server, string) {
	return startFake(t, false)
}

// openFake opens a Store on the fake server in its own namespace, with the
// guard families given.
func openFake(t *testing.T, url, namespace string, families ...string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{URL: url, Namespace: namespace, GuardFamilies: families})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformanceOnFakeServer runs the whole conformance suite through the
// adapter and the real gRPC client against fakeServer (see its comment for
// what that proves and what it does not); nothing is skipped.
func TestConformanceOnFakeServer(t *testing.T) {
	_, url := startFakeServer(t)
	conformance.Run(t, func(t *testing.T) eventstore.Store {
		return openFake(t, url, "fake-"+sanitize(t.Name()), conformance.GuardFamilies...)
	})
}

func sanitize(name string) string {
	out := []byte(name)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			out[i] = '_'
		}
	}
	if len(out) > 64 {
		out = out[len(out)-64:]
	}
	return string(out)
}

func events(prefix string, n int) []*billingv1.Event {
	out := make([]*billingv1.Event, n)
	for i := range out {
		out[i] = &billingv1.Event{EventId: fmt.Sprintf("%s-%d", prefix, i+1), Actor: "test",
			Payload: &billingv1.Event_AccountAdded{AccountAdded: &billingv1.AccountAdded{ManagementAccountId: "111111111111", AccountId: prefix}}}
	}
	return out
}

// TestWhatCannotBeDoneWritesNothing: on a server without multi-stream
// appends (before KurrentDB 25.1), an append to several streams or to a
// stream of a declared family fails with ErrMultiStreamAppend; a guard on an
// undeclared family fails with ErrWildcardGuard on any server. Nothing is
// written; single streams and guards on the stream itself still work.
func TestWhatCannotBeDoneWritesNothing(t *testing.T) {
	_, oldURL := startFake(t, true)
	_, newURL := startFakeServer(t)
	ctx := t.Context()
	old := openFake(t, oldURL, "limits", "billing.usage.*.07")
	_, err := old.Append(ctx,
		eventstore.StreamAppend{Stream: "billing.transfer.rt-1", Events: events("t", 1)},
		eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: events("o", 1)})
	if !errors.Is(err, ErrMultiStreamAppend) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("two streams on an old server: %v, want ErrMultiStreamAppend", err)
	}
	_, err = old.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: events("u", 1)})
	if !errors.Is(err, ErrMultiStreamAppend) {
		t.Fatalf("a declared family's stream on an old server: %v, want ErrMultiStreamAppend", err)
	}
	for _, s := range []*Store{old, openFake(t, newURL, "limits", "billing.usage.*.07")} {
		_, err = s.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.08", Events: events("u", 1),
			Guard: &eventstore.Guard{Filter: "billing.usage.*.08"}})
		if !errors.Is(err, ErrWildcardGuard) || !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("undeclared family guard: %v, want ErrWildcardGuard", err)
		}
		if p, err := s.LastPosition(ctx); err != nil || p != 0 {
			t.Fatalf("LastPosition = %d, %v; want nothing written", p, err)
		}
	}
	// A guard on the stream itself is exact and needs neither a declaration
	// nor a multi-stream append.
	recs, err := old.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.08", Events: events("u", 2),
		Guard: &eventstore.Guard{Filter: "billing.usage.2026-09.08"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = old.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.08", ExpectedVersion: 2, Events: events("v", 1),
		Guard: &eventstore.Guard{Filter: "billing.usage.2026-09.08", LastPosition: recs[0].Position}})
	var g *eventstore.GuardConflictError
	if !errors.As(err, &g) || g.Actual != recs[1].Position {
		t.Fatalf("stale literal guard: %v, want a guard conflict at %d", err, recs[1].Position)
	}
	// Reads end where they should on a server whose "caught up" carries no timestamp.
	var n int
	if err := old.ReadAll(ctx, 0, "billing.org.>", func(eventstore.Record) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("ReadAll on an old server: %d events, %v; want 0", n, err)
	}
}

// TestFamilyGuardAcrossProcesses: the guard over a family holds between
// processes (Stores without a shared cache) on one server: an unguarded
// append by one process to a sibling stream fails the other's guarded
// append; racing guarded writers in two processes have exactly one winner
// per round; a process that never wrote finds the family's position from the
// guard stream; and the guard stream never shows up in reads.
func TestFamilyGuardAcrossProcesses(t *testing.T) {
	const family = "billing.usage.*.07"
	_, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	a := openFake(t, url, "two", family)
	b := openFake(t, url, "two", family)

	first, err := a.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: events("a", 2),
		Guard: &eventstore.Guard{Filter: family}})
	if err != nil {
		t.Fatal(err)
	}
	pos := first[1].Position
	// b appends to a sibling month without a guard; a, whose cache still says pos, must lose.
	sib, err := b.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-10.07", Events: events("b", 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", ExpectedVersion: 2, Events: events("late", 1),
		Guard: &eventstore.Guard{Filter: family, LastPosition: pos}})
	var g *eventstore.GuardConflictError
	if !errors.As(err, &g) || g.Expected != pos || g.Actual != sib[0].Position {
		t.Fatalf("guarded append after another process's sibling append: %v, want a guard conflict %d → %d", err, pos, sib[0].Position)
	}
	// A third process finds the family's newest position from the guard stream.
	c := openFake(t, url, "two", family)
	if p, err := c.LastPositionMatching(ctx, family); err != nil || p != sib[0].Position {
		t.Fatalf("LastPositionMatching in a fresh process = %d, %v; want %d", p, err, sib[0].Position)
	}

	// Rounds of writers in both processes, each on its own month.
	pos = sib[0].Position
	versions := map[string]uint64{"billing.usage.2026-09.07": 2, "billing.usage.2026-10.07": 1}
	for round := range 5 {
		type result struct {
			stream string
			recs   []eventstore.Record
			err    error
		}
		results := make(chan result, 8)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 8 {
			s := a
			if w%2 == 1 {
				s = b
			}
			stream := fmt.Sprintf("billing.usage.2027-%02d.07", w+1)
			app := eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[stream], Events: events(fmt.Sprintf("r%dw%d", round, w), 1),
				Guard: &eventstore.Guard{Filter: family, LastPosition: pos}}
			wg.Go(func() {
				<-start
				recs, err := s.Append(ctx, app)
				results <- result{stream, recs, err}
			})
		}
		close(start)
		wg.Wait()
		close(results)
		var wins []result
		var losses []error
		for r := range results {
			if r.err == nil {
				wins = append(wins, r)
			} else {
				losses = append(losses, r.err)
			}
		}
		if len(wins) != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, len(wins))
		}
		newPos := wins[0].recs[0].Position
		for _, err := range losses {
			if !errors.As(err, &g) || g.Expected != pos || g.Actual != newPos {
				t.Fatalf("round %d: loser got %v, want a guard conflict %d → %d", round, err, pos, newPos)
			}
		}
		versions[wins[0].stream]++
		pos = newPos
	}
	var streams []string
	err = a.ReadAll(ctx, 0, "", func(r eventstore.Record) error { streams = append(streams, r.Event.GetStream()); return nil })
	if err != nil || len(streams) != 2+1+5 {
		t.Fatalf("ReadAll: %d events %v (%v), want the 8 ledger events only", len(streams), streams, err)
	}
	if p, err := a.LastPosition(ctx); err != nil || p != pos {
		t.Fatalf("LastPosition = %d, %v; want the last ledger event %d, not a guard event", p, err, pos)
	}
}

// TestRetriedAppendIsTheSameWrite: an append sent again with the very same
// events (e.g. after a lost answer) carries the same event ids, so the server
// takes it for the same write: it succeeds with the original positions and
// writes nothing twice.
func TestRetriedAppendIsTheSameWrite(t *testing.T) {
	_, url := startFakeServer(t)
	ctx := t.Context()
	a := openFake(t, url, "retry")
	b := openFake(t, url, "retry") // another process, without a's cache
	evs := events("e", 3)
	first, err := a.Append(ctx, eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	// The other process decided on the same (empty) stream and sends the same events.
	again, err := b.Append(ctx, eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: evs})
	if err == nil {
		for i := range first {
			if again[i].Position != first[i].Position {
				t.Fatalf("retry returned position %d for event %d, first append %d", again[i].Position, i, first[i].Position)
			}
		}
	} else if !eventstore.IsConflict(err) {
		t.Fatalf("retry: %v, want success or a conflict", err)
	}
	recs, err := a.ReadStream(ctx, "billing.org.111111111111")
	if err != nil || len(recs) != 3 {
		t.Fatalf("stream has %d events (%v), want 3", len(recs), err)
	}
	// Different events at the same version are a conflict.
	_, err = b.Append(ctx, eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: events("x", 1)})
	var c *eventstore.ConflictError
	if !errors.As(err, &c) || c.Expected != 0 || c.Actual != 3 {
		t.Fatalf("different events at version 0: %v, want a conflict with actual 3", err)
	}
}

// TestSubscribeSurvivesDrops: when the server drops the subscription, the
// adapter subscribes again after the last delivered position: every event
// arrives once, in order.
func TestSubscribeSurvivesDrops(t *testing.T) {
	f, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s := openFake(t, url, "drops")
	f.SetDrop(2)
	const n = 9
	var want []uint64
	for i := range n {
		recs, err := s.Append(ctx, eventstore.StreamAppend{Stream: "billing.org.111111111111", ExpectedVersion: uint64(i), Events: events(fmt.Sprint(i), 1)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, recs[0].Position)
	}
	before := f.Subscriptions()
	subCtx, stop := context.WithCancel(ctx)
	var got []uint64
	err := s.Subscribe(subCtx, 0, "billing.org.>", func(r eventstore.Record) error {
		got = append(got, r.Position)
		if len(got) == n {
			stop()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	if subs := f.Subscriptions() - before; subs < n/2 {
		t.Fatalf("%d subscriptions for %d events dropped every 2: the drops were not exercised", subs, n)
	}
}

// TestLastPositionMatchingSearchesTheServer: a family whose newest event lies
// further back than the backwards scan is found by the server-side search.
func TestLastPositionMatchingSearchesTheServer(t *testing.T) {
	_, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s := openFake(t, url, "far")
	old, err := s.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-08.03", Events: events("old", 1)})
	if err != nil {
		t.Fatal(err)
	}
	// More than backScan events of other streams after it.
	for i := 0; i < backScan+10; i += 100 {
		if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: fmt.Sprintf("billing.org.%012d", i), Events: events("o", 100)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LastPositionMatching(ctx, "billing.usage.*.03")
	if err != nil || got != old[0].Position {
		t.Fatalf("LastPositionMatching = %d, %v; want %d", got, err, old[0].Position)
	}
	if got, err := s.LastPositionMatching(ctx, "billing.pricing.>"); err != nil || got != 0 {
		t.Fatalf("LastPositionMatching of nothing = %d, %v; want 0", got, err)
	}
}

// TestReadAllFiltersAndResumes covers the reads beyond the conformance
// suite: subject filters, resuming from every position, multi-event appends,
// and events of another namespace and of the server itself interleaved in
// $all, which must never be delivered.
func TestReadAllFiltersAndResumes(t *testing.T) {
	_, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := openFake(t, url, "mine")
	other := openFake(t, url, "other")
	plain := openFake(t, url, "") // no namespace: sees only un-namespaced ledger streams

	var all []eventstore.Record
	versions := map[string]uint64{}
	add := func(stream string, n int) {
		recs, err := s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[stream], Events: events(fmt.Sprintf("%s-%d", stream, versions[stream]), n)})
		if err != nil {
			t.Fatal(err)
		}
		versions[stream] += uint64(n)
		all = append(all, recs...)
		// Another ledger on the same server writes the same stream names.
		if _, err := other.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[stream] - uint64(n), Events: events("other", n)}); err != nil {
			t.Fatal(err)
		}
	}
	add("billing.org.111111111111", 1)
	add("billing.usage.2026-09.p0", 2)
	add("billing.usage.2026-10.p0", 1)
	add("billing.org.222222222222", 1)
	add("billing.transfer.rt-1", 3)
	add("billing.usage.2026-09.p1", 1)
	add("billing.org.111111111111.extra", 1)
	add("billing.org.111111111111", 2)
	add("billing.usage.2026-09", 1)

	if p, err := s.LastPosition(ctx); err != nil || p != all[len(all)-1].Position {
		t.Fatalf("LastPosition = %d, %v; want %d", p, err, all[len(all)-1].Position)
	}
	if p, err := plain.LastPosition(ctx); err != nil || p != 0 {
		t.Fatalf("LastPosition without namespace = %d, %v; want 0 (only namespaced streams exist)", p, err)
	}
	filters := []string{"", ">", "billing.org.*", "billing.org.>", "billing.usage.2026-09.>", "billing.usage.*.p0", "billing.usage.>",
		"billing.transfer.rt-1", "billing.pricing.>", "billing.*.*"}
	for _, filter := range filters {
		var want []eventstore.Record
		for _, r := range all {
			if eventstore.MatchFilter(filter, r.Event.GetStream()) {
				want = append(want, r)
			}
		}
		var last uint64
		if len(want) > 0 {
			last = want[len(want)-1].Position
		}
		if got, err := s.LastPositionMatching(ctx, filter); err != nil || got != last {
			t.Fatalf("LastPositionMatching(%q) = %d, %v; want %d", filter, got, err, last)
		}
		from := append([]uint64{0}, positions(all)...)
		for _, p := range from {
			var later []eventstore.Record
			for _, r := range want {
				if r.Position > p {
					later = append(later, r)
				}
			}
			var got []eventstore.Record
			if err := s.ReadAll(ctx, p, filter, func(r eventstore.Record) error { got = append(got, r); return nil }); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(positions(got)) != fmt.Sprint(positions(later)) {
				t.Fatalf("ReadAll(%d, %q) = %v, want %v", p, filter, positions(got), positions(later))
			}
			for i := range got {
				if got[i].Event.GetEventId() != later[i].Event.GetEventId() {
					t.Fatalf("ReadAll(%d, %q): event %d is %s, want %s", p, filter, i, got[i].Event.GetEventId(), later[i].Event.GetEventId())
				}
			}
		}
	}

	// Subscribe from the middle, then follow live appends.
	mid := all[len(all)/2].Position
	subCtx, stop := context.WithCancel(ctx)
	got := make(chan eventstore.Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(subCtx, mid, "billing.org.>", func(r eventstore.Record) error { got <- r; return nil })
	}()
	add("billing.org.333333333333", 2)
	var want []uint64
	for _, r := range all {
		if r.Position > mid && eventstore.MatchFilter("billing.org.>", r.Event.GetStream()) {
			want = append(want, r.Position)
		}
	}
	var seen []uint64
	for len(seen) < len(want) {
		select {
		case r := <-got:
			seen = append(seen, r.Position)
		case <-ctx.Done():
			t.Fatalf("Subscribe delivered %v, want %v", seen, want)
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe after cancel: %v", err)
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) || len(got) != 0 {
		t.Fatalf("Subscribe delivered %v (+%d), want %v", seen, len(got), want)
	}
	for stream := range versions {
		recs, err := s.ReadStream(ctx, stream)
		if err != nil || uint64(len(recs)) != versions[stream] {
			t.Fatalf("%s: %d events (%v), want %d", stream, len(recs), err, versions[stream])
		}
		if err := eventstore.VerifyChain(stream, recs); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := eventstore.VerifyAll(ctx, s, "", nil)
	if err != nil || !rep.Intact() || rep.Events != uint64(len(all)) {
		t.Fatalf("VerifyAll: %+v, %v; want %d events intact", rep, err, len(all))
	}
}

func positions(recs []eventstore.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}
