package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/conformance"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// startServer runs an embedded server on a random port with its data in dir.
func startServer(t testing.TB, dir string, syncAlways bool) *jetstream.Embedded {
	t.Helper()
	e, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", SyncAlways: syncAlways, ServerName: "test"})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	return e
}

// connect opens a client connection that the test closes at its end.
func connect(t testing.TB, e *jetstream.Embedded) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func open(t testing.TB, nc *nats.Conn) *jetstream.Store {
	t.Helper()
	s, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// newStore starts a server of its own in a temporary directory and opens a store on it.
func newStore(t testing.TB) (*jetstream.Store, *jetstream.Embedded, *nats.Conn) {
	t.Helper()
	e := startServer(t, t.TempDir(), false)
	t.Cleanup(e.Shutdown) // registered first, so it runs after the connection closes
	nc := connect(t, e)
	return open(t, nc), e, nc
}

func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T) eventstore.Store {
		s, _, _ := newStore(t)
		return s
	})
}

func event(id string) *billingv1.Event {
	return &billingv1.Event{
		EventId:    id,
		RecordedAt: timestamppb.New(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)),
		Actor:      "test",
		Payload: &billingv1.Event_OrganizationRegistered{OrganizationRegistered: &billingv1.OrganizationRegistered{
			ManagementAccountId: "111111111111",
			Name:                id,
		}},
	}
}

func events(prefix string, n int) []*billingv1.Event {
	out := make([]*billingv1.Event, n)
	for i := range out {
		out[i] = event(fmt.Sprintf("%s-%d", prefix, i+1))
	}
	return out
}

func readAll(t *testing.T, ctx context.Context, s eventstore.Store) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	if err := s.ReadAll(ctx, 0, "", func(r eventstore.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return out
}

func requireSame(t *testing.T, what string, got, want []eventstore.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i].Position != want[i].Position || !proto.Equal(got[i].Event, want[i].Event) {
			t.Fatalf("%s: record %d differs: got %d %v, want %d %v", what, i, got[i].Position, got[i].Event, want[i].Position, want[i].Event)
		}
	}
}

// TestRestartKeepsAcknowledgedEvents stops the embedded server after a mix of
// single and batched appends, starts it again on the same directory, and
// checks that every acknowledged event is back, chains intact, and that the
// chains continue across the restart.
func TestRestartKeepsAcknowledgedEvents(t *testing.T) {
	for _, syncAlways := range []bool{false, true} {
		t.Run("SyncAlways="+strconv.FormatBool(syncAlways), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			dir := t.TempDir()

			e := startServer(t, dir, syncAlways)
			nc, err := nats.Connect(e.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			s := open(t, nc)
			streams := []string{"billing.org.111111111111", "billing.transfer.rt-1", "billing.usage.2026-09.p0"}
			versions := map[string]uint64{}
			var acked []eventstore.Record
			for i := range 60 {
				st := streams[i%len(streams)]
				n := 1 + i%4 // 1 event (plain publish) or 2..4 (atomic batch)
				appends := []eventstore.StreamAppend{{Stream: st, ExpectedVersion: versions[st], Events: events(fmt.Sprintf("e%d", i), n)}}
				if i%5 == 0 { // and some multi-stream batches
					other := streams[(i+1)%len(streams)]
					appends = append(appends, eventstore.StreamAppend{Stream: other, ExpectedVersion: versions[other], Events: events(fmt.Sprintf("f%d", i), 1)})
				}
				recs, err := s.Append(ctx, appends...)
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				for _, a := range appends {
					versions[a.Stream] += uint64(len(a.Events))
				}
				acked = append(acked, recs...)
			}
			nc.Close()
			e.Shutdown()

			e = startServer(t, dir, syncAlways)
			t.Cleanup(e.Shutdown)
			s = open(t, connect(t, e))
			requireSame(t, "after restart", readAll(t, ctx, s), acked)
			if last, err := s.LastPosition(ctx); err != nil || last != acked[len(acked)-1].Position {
				t.Fatalf("LastPosition after restart = %d, %v; want %d", last, err, acked[len(acked)-1].Position)
			}
			for _, st := range streams {
				recs, err := s.ReadStream(ctx, st)
				if err != nil {
					t.Fatal(err)
				}
				if uint64(len(recs)) != versions[st] {
					t.Fatalf("%s: %d events after restart, want %d", st, len(recs), versions[st])
				}
				if err := eventstore.VerifyChain(st, recs); err != nil {
					t.Fatal(err)
				}
				// A fresh Store (empty cache) continues the chain and the versions.
				if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: st, ExpectedVersion: versions[st] - 1, Events: events("stale", 1)}); !eventstore.IsConflict(err) {
					t.Fatalf("%s: stale append after restart: %v, want conflict", st, err)
				}
				if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: st, ExpectedVersion: versions[st], Events: events("after", 2)}); err != nil {
					t.Fatal(err)
				}
				recs, err = s.ReadStream(ctx, st)
				if err != nil {
					t.Fatal(err)
				}
				if err := eventstore.VerifyChain(st, recs); err != nil || uint64(len(recs)) != versions[st]+2 {
					t.Fatalf("%s after restart and append: %d events, %v", st, len(recs), err)
				}
			}
		})
	}
}

// TestTwoStoresRace runs two Store instances on two connections against one
// server; their caches go stale in turn, and exactly one wins each version.
func TestTwoStoresRace(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s1, e, _ := newStore(t)
	s2 := open(t, connect(t, e))
	stores := []*jetstream.Store{s1, s2}

	const stream = "billing.org.222222222222"
	var version uint64
	for round := range 40 {
		n := 1 + round%3
		start := make(chan struct{})
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() {
				<-start
				_, errs[i] = s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: version, Events: events(fmt.Sprintf("r%d-s%d", round, i), n)})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			var c *eventstore.ConflictError
			if !errors.As(err, &c) || *c != (eventstore.ConflictError{Stream: stream, Expected: version, Actual: version + uint64(n)}) {
				t.Fatalf("round %d: loser got %v", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins)
		}
		version += uint64(n)
	}
	for _, s := range stores {
		recs, err := s.ReadStream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(recs)) != version {
			t.Fatalf("stream has %d events, want %d", len(recs), version)
		}
		if err := eventstore.VerifyChain(stream, recs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchChecksExpectedSequenceOfEverySubject verifies on raw atomic batches
// what the adapter relies on: the server enforces
// Nats-Expected-Last-Subject-Sequence on every subject's first message inside
// a batch, not only on the batch's first message, rejects the whole batch, and
// refuses the header on a later message of a subject the batch already wrote.
func TestBatchChecksExpectedSequenceOfEverySubject(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, _, nc := newStore(t)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const a, b, c = "billing.org.1", "billing.org.2", "billing.org.3"
	ack, err := js.Publish(ctx, b, []byte("b1"))
	if err != nil {
		t.Fatal(err)
	}
	bSeq := ack.Sequence

	msg := func(subject string, expect ...uint64) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte(subject)
		for _, e := range expect {
			m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(e, 10))
		}
		return m
	}
	expect := func(n uint64) []uint64 { return []uint64{n} }
	cases := []struct {
		name string
		msgs []*nats.Msg
		code natsjs.ErrorCode // 0 = accepted
	}{
		{"wrong on the second subject", []*nats.Msg{msg(a, expect(0)...), msg(b, expect(0)...), msg(c, expect(0)...)}, natsjs.JSErrCodeStreamWrongLastSequence},
		{"wrong on the commit message", []*nats.Msg{msg(a, expect(0)...), msg(c, expect(0)...), msg(b, expect(bSeq+1)...)}, natsjs.JSErrCodeStreamWrongLastSequence},
		{"wrong on the first subject", []*nats.Msg{msg(b, expect(0)...), msg(a, expect(0)...)}, natsjs.JSErrCodeStreamWrongLastSequence},
		{"header on a subject's second message", []*nats.Msg{msg(a, expect(0)...), msg(a, expect(0)...)}, natsjs.JSErrCodeStreamWrongLastSequenceConstant},
		{"header only on a subject's second message", []*nats.Msg{msg(a), msg(a, expect(0)...)}, natsjs.JSErrCodeStreamWrongLastSequenceConstant},
	}
	for _, tc := range cases {
		_, err := jetstreamext.PublishMsgBatch(ctx, js, tc.msgs)
		var apiErr *natsjs.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.code {
			t.Fatalf("%s: got %v, want error code %d", tc.name, err, tc.code)
		}
		if last, err := s.LastPosition(ctx); err != nil || last != bSeq {
			t.Fatalf("%s: rejected batch wrote something: last sequence %d (%v), want %d", tc.name, last, err, bSeq)
		}
	}
	// The right expectations on every subject commit the whole batch.
	bat, err := jetstreamext.PublishMsgBatch(ctx, js, []*nats.Msg{msg(a, expect(0)...), msg(a), msg(b, expect(bSeq)...), msg(c, expect(0)...)})
	if err != nil {
		t.Fatal(err)
	}
	if bat.BatchSize != 4 || bat.Sequence != bSeq+4 {
		t.Fatalf("batch ack %+v, want 4 messages ending at %d", *bat, bSeq+4)
	}
}

// TestBatchChecksGuard verifies on raw publishes and atomic batches what
// guarded appends rely on: the server checks
// Nats-Expected-Last-Subject-Sequence against the newest message on any
// subject matching Nats-Expected-Last-Subject-Sequence-Subject (a wildcard
// filter), on a plain publish, on a batch's first message and on a later
// subject's first message; a failed guard rejects the whole batch; and a guard
// is evaluated against the stream before the batch, not seeing the batch's
// own earlier messages.
func TestBatchChecksGuard(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, _, nc := newStore(t)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const family = "billing.usage.*.07"
	msg := func(subject string, guard ...uint64) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte(subject)
		for _, g := range guard {
			m.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(g, 10))
			m.Header.Set(natsjs.ExpectedLastSubjSeqSubjHeader, family)
		}
		return m
	}
	requireCode := func(what string, err error, code natsjs.ErrorCode, actual uint64) {
		t.Helper()
		var apiErr *natsjs.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != code || !strings.HasSuffix(apiErr.Description, fmt.Sprintf(": %d", actual)) {
			t.Fatalf("%s: got %v, want error code %d naming sequence %d", what, err, code, actual)
		}
	}
	requireLast := func(what string, want uint64) {
		t.Helper()
		if last, err := s.LastPosition(ctx); err != nil || last != want {
			t.Fatalf("%s: last sequence %d (%v), want %d", what, last, err, want)
		}
	}

	// Plain publishes: 0 = nothing matches; a sibling subject counts.
	ack, err := js.PublishMsg(ctx, msg("billing.usage.2026-09.07", 0))
	if err != nil || ack.Sequence != 1 {
		t.Fatalf("first guarded publish: %v, %v", ack, err)
	}
	_, err = js.PublishMsg(ctx, msg("billing.usage.2026-10.07", 0))
	requireCode("guard 0 after a sibling", err, natsjs.JSErrCodeStreamWrongLastSequence, 1)
	if _, err := js.Publish(ctx, "billing.usage.2026-10.08", nil); err != nil { // another partition: outside the family
		t.Fatal(err)
	}
	if ack, err = js.PublishMsg(ctx, msg("billing.usage.2026-10.07", 1)); err != nil || ack.Sequence != 3 {
		t.Fatalf("guarded publish to a sibling: %v, %v", ack, err)
	}
	requireLast("after plain publishes", 3)

	cases := []struct {
		name string
		msgs []*nats.Msg
	}{
		{"stale guard on the batch's first message", []*nats.Msg{msg("billing.usage.2026-11.07", 1), msg("billing.usage.2026-11.07")}},
		{"stale guard on a later subject", []*nats.Msg{msg("billing.org.1"), msg("billing.org.1"), msg("billing.usage.2026-11.07", 1), msg("billing.usage.2026-11.07")}},
		{"stale guard on the commit message", []*nats.Msg{msg("billing.org.1"), msg("billing.usage.2026-11.07", 2)}},
		{"stale guard beside a good one", []*nats.Msg{msg("billing.usage.2026-11.07", 3), msg("billing.usage.2026-12.07", 2)}},
		{"guard that would see the batch's own message", []*nats.Msg{msg("billing.usage.2026-12.07", 3), msg("billing.usage.2026-11.07", 4)}},
	}
	for _, tc := range cases {
		_, err := jetstreamext.PublishMsgBatch(ctx, js, tc.msgs)
		requireCode(tc.name, err, natsjs.JSErrCodeStreamWrongLastSequence, 3)
		requireLast(tc.name, 3)
	}
	// Guards on several subjects of the family, and after a message of the
	// family in the same batch, all checked against the stream before the batch.
	bat, err := jetstreamext.PublishMsgBatch(ctx, js, []*nats.Msg{
		msg("billing.org.1"), msg("billing.usage.2026-11.07", 3), msg("billing.usage.2026-11.07"), msg("billing.usage.2026-12.07", 3),
	})
	if err != nil || bat.BatchSize != 4 || bat.Sequence != 7 {
		t.Fatalf("guarded batch: %+v, %v; want 4 messages ending at 7", bat, err)
	}
}

// TestGuardWithStaleCache checks that a guard does not let a stale expected
// version through: another Store appends to the stream, so this Store's cache
// still holds the older version; a guarded append with the family's current
// position but that older version must fail with *ConflictError, not write a
// second event at the same version.
func TestGuardWithStaleCache(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s1, e, _ := newStore(t)
	s2 := open(t, connect(t, e))
	const family, stream = "billing.usage.*.07", "billing.usage.2026-09.07"
	guarded := func(version, last uint64, id string) eventstore.StreamAppend {
		return eventstore.StreamAppend{Stream: stream, ExpectedVersion: version, Events: events(id, 1), Guard: &eventstore.Guard{Filter: family, LastPosition: last}}
	}
	r1, err := s1.Append(ctx, guarded(0, 0, "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Append(ctx, guarded(1, r1[0].Position, "s2")); err != nil {
		t.Fatal(err)
	}
	last, err := s1.LastPositionMatching(ctx, family)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s1.Append(ctx, guarded(1, last, "stale"))
	var c *eventstore.ConflictError
	if !errors.As(err, &c) || *c != (eventstore.ConflictError{Stream: stream, Expected: 1, Actual: 2}) {
		t.Fatalf("stale version under a current guard: got %v, want conflict expected 1 actual 2", err)
	}
	if _, err := s1.Append(ctx, guarded(2, last, "fresh")); err != nil {
		t.Fatal(err)
	}
	recs, err := s1.ReadStream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := eventstore.VerifyChain(stream, recs); err != nil || len(recs) != 3 {
		t.Fatalf("%d events, chain %v; want 3 events and an intact chain", len(recs), err)
	}
}

// TestReadStreamManyEvents reads a stream longer than one direct-get batch,
// interleaved with another stream.
func TestReadStreamManyEvents(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, _, _ := newStore(t)
	const long, other = "billing.usage.2026-09.p0", "billing.usage.2026-09.p1"
	var want []eventstore.Record
	for i := range 5 {
		recs, err := s.Append(ctx,
			eventstore.StreamAppend{Stream: long, ExpectedVersion: uint64(i * 700), Events: events(fmt.Sprintf("l%d", i), 700)},
			eventstore.StreamAppend{Stream: other, ExpectedVersion: uint64(i * 300), Events: events(fmt.Sprintf("o%d", i), 300)},
		)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, recs[:700]...)
	}
	start := time.Now()
	got, err := s.ReadStream(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ReadStream of %d events took %s", len(got), time.Since(start))
	requireSame(t, "ReadStream", got, want)
	if err := eventstore.VerifyChain(long, got); err != nil {
		t.Fatal(err)
	}
}

func TestAppendOutsideStreamSubjects(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	_, err := s.Append(t.Context(), eventstore.StreamAppend{Stream: "audit.log", Events: events("x", 1)})
	if !errors.Is(err, eventstore.ErrInvalidStream) || !strings.Contains(err.Error(), "billing.>") {
		t.Fatalf("got %v, want ErrInvalidStream naming the stream's subjects", err)
	}
}

// TestOpenConfiguresStream checks the stream's settings and that Open is idempotent.
func TestOpenConfiguresStream(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, _, nc := newStore(t)
	open(t, nc) // again, on an existing stream
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, jetstream.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Storage != natsjs.FileStorage || cfg.Replicas != 1 || !cfg.AllowAtomicPublish || !cfg.AllowDirect ||
		!cfg.DenyDelete || !cfg.DenyPurge || cfg.Discard != natsjs.DiscardNew || cfg.MaxAge != 0 ||
		cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 || cfg.MaxMsgsPerSubject != -1 || cfg.AllowRollup ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != jetstream.DefaultSubject {
		t.Fatalf("stream config %+v", cfg)
	}
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("deleting a message succeeded on a DenyDelete stream")
	}
}

func TestStartEmbedded(t *testing.T) {
	t.Parallel()
	for _, cfg := range []jetstream.EmbeddedConfig{
		{Listen: "127.0.0.1:0"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1:port"},
		{DataDir: t.TempDir(), Listen: "127.0.0.1:70000"},
	} {
		if e, err := jetstream.StartEmbedded(cfg); err == nil {
			e.Shutdown()
			t.Fatalf("StartEmbedded(%+v) succeeded", cfg)
		}
	}
	e := startServer(t, t.TempDir(), false)
	defer e.Shutdown()
	if !strings.HasPrefix(e.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(e.ClientURL(), ":0") {
		t.Fatalf("ClientURL = %q", e.ClientURL())
	}
	// A second server cannot take the same port.
	port := e.ClientURL()[strings.LastIndexByte(e.ClientURL(), ':')+1:]
	if e2, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:" + port}); err == nil {
		e2.Shutdown()
		t.Fatal("second server on a used port started")
	}
}
