package esdb

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// openFake opens a Store on the fake server in its own namespace.
func openFake(t *testing.T, url, namespace string, inProcessGuards bool) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{URL: url, Namespace: namespace, InProcessGuards: inProcessGuards})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformanceOnFakeServer runs the conformance suite through the adapter
// and the real gRPC client against fakeServer (see its comment for what that
// proves and what it does not), skipping the same checks as TestConformance.
func TestConformanceOnFakeServer(t *testing.T) {
	_, url := startFakeServer(t)
	conformance.Run(t, func(t *testing.T) eventstore.Store {
		skipUnsupported(t, true)
		return openFake(t, url, "fake-"+sanitize(t.Name()), true)
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

// TestUnsupportedAppendsWriteNothing: what EventStoreDB cannot do fails with
// the documented errors before anything is sent.
func TestUnsupportedAppendsWriteNothing(t *testing.T) {
	_, url := startFakeServer(t)
	ctx := t.Context()
	s := openFake(t, url, "limits", false)
	_, err := s.Append(ctx,
		eventstore.StreamAppend{Stream: "billing.transfer.rt-1", Events: events("t", 1)},
		eventstore.StreamAppend{Stream: "billing.org.111111111111", Events: events("o", 1)})
	if !errors.Is(err, ErrMultiStreamAppend) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("two streams: %v, want ErrMultiStreamAppend", err)
	}
	_, err = s.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: events("u", 1),
		Guard: &eventstore.Guard{Filter: "billing.usage.*.07"}})
	if !errors.Is(err, ErrWildcardGuard) {
		t.Fatalf("wildcard guard: %v, want ErrWildcardGuard", err)
	}
	if p, err := s.LastPosition(ctx); err != nil || p != 0 {
		t.Fatalf("LastPosition = %d, %v; want nothing written", p, err)
	}
	// A guard on the stream itself is exact and needs no option.
	recs, err := s.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", Events: events("u", 2),
		Guard: &eventstore.Guard{Filter: "billing.usage.2026-09.07"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, eventstore.StreamAppend{Stream: "billing.usage.2026-09.07", ExpectedVersion: 2, Events: events("v", 1),
		Guard: &eventstore.Guard{Filter: "billing.usage.2026-09.07", LastPosition: recs[0].Position}})
	var g *eventstore.GuardConflictError
	if !errors.As(err, &g) || g.Actual != recs[1].Position {
		t.Fatalf("stale literal guard: %v, want a guard conflict at %d", err, recs[1].Position)
	}
}

// TestRetriedAppendIsTheSameWrite: an append sent again with the very same
// events (e.g. after a lost answer) carries the same event ids, so the server
// takes it for the same write: it succeeds with the original positions and
// writes nothing twice.
func TestRetriedAppendIsTheSameWrite(t *testing.T) {
	_, url := startFakeServer(t)
	ctx := t.Context()
	a := openFake(t, url, "retry", false)
	b := openFake(t, url, "retry", false) // another process, without a's cache
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
	s := openFake(t, url, "drops", false)
	f.setDrop(2)
	const n = 9
	var want []uint64
	for i := range n {
		recs, err := s.Append(ctx, eventstore.StreamAppend{Stream: "billing.org.111111111111", ExpectedVersion: uint64(i), Events: events(fmt.Sprint(i), 1)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, recs[0].Position)
	}
	before := f.subscriptions()
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
	if subs := f.subscriptions() - before; subs < n/2 {
		t.Fatalf("%d subscriptions for %d events dropped every 2: the drops were not exercised", subs, n)
	}
}

// TestLastPositionMatchingSearchesTheServer: a family whose newest event lies
// further back than the backwards scan is found by the server-side search.
func TestLastPositionMatchingSearchesTheServer(t *testing.T) {
	_, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s := openFake(t, url, "far", false)
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

// TestReadAllFiltersAndResumes covers, with single-stream appends only, the
// reads of the conformance checks this adapter skips (Filter, ReadAllResume,
// Subscribe, LastPositionMatching): subject filters, resuming from every
// position, multi-event appends, and events of another namespace and of the
// server itself interleaved in $all, which must never be delivered.
func TestReadAllFiltersAndResumes(t *testing.T) {
	_, url := startFakeServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s := openFake(t, url, "mine", false)
	other := openFake(t, url, "other", false)
	plain := openFake(t, url, "", false) // no namespace: sees only un-namespaced ledger streams

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
