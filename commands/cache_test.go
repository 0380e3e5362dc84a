package commands_test

import (
	"context"
	"sync"
	"testing"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
)

// countingStore counts whole-stream and tail reads per stream.
type countingStore struct {
	eventstore.Store
	mu          sync.Mutex
	whole, tail map[string]int
}

func (s *countingStore) ReadStream(ctx context.Context, stream string) ([]eventstore.Record, error) {
	s.mu.Lock()
	s.whole[stream]++
	s.mu.Unlock()
	return s.Store.ReadStream(ctx, stream)
}

func (s *countingStore) ReadStreamAfter(ctx context.Context, stream string, last eventstore.Record) ([]eventstore.Record, error) {
	s.mu.Lock()
	s.tail[stream]++
	s.mu.Unlock()
	return s.Store.(eventstore.TailReader).ReadStreamAfter(ctx, stream, last)
}

func (s *countingStore) reads(stream string) (whole, tail int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.whole[stream], s.tail[stream]
}

// TestPipeline_StreamCacheReadsOnlyTheTailAndSeesOtherWriters: a pipeline
// reads a stream whole once, then only what was appended since (a payer with
// many sources is read at every invitation), and a decision still sees what
// another process appended in between: T9's quota counts the other process's
// invitation, and a stale decision is never taken.
func TestPipeline_StreamCacheReadsOnlyTheTailAndSeesOtherWriters(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		base := newStore()
		store := &countingStore{Store: base, whole: map[string]int{}, tail: map[string]int{}}
		clock := newClock()
		p := commands.New(store, clock, commands.Options{Policy: domain.Policy{MaxInboundTransfers: 3}})
		other := commands.New(base, clock, commands.Options{Policy: domain.Policy{MaxInboundTransfers: 3}}) // another process
		const payer = "111111111111"
		payerStream := "billing.org." + payer
		must(t, p, org(payer), org("222222222222"), org("333333333333"), org("444444444444"), org("555555555555"))
		must(t, p, invite("rt-1", payer, "222222222222", "2026-09"))
		whole1, _ := store.reads(payerStream)
		must(t, p, invite("rt-2", payer, "333333333333", "2026-09"))
		whole2, tail2 := store.reads(payerStream)
		if whole2 != whole1 || tail2 == 0 {
			t.Fatalf("second invitation read the payer whole %d more times and its tail %d times; want 0 and at least 1", whole2-whole1, tail2)
		}
		// Another process invites a third source: the quota of 3 live inbound
		// transfers is now reached, and this pipeline's next decision must know.
		must(t, other, invite("rt-3", payer, "444444444444", "2026-09"))
		if _, err := exec(t, p, invite("rt-4", payer, "555555555555", "2026-09")); domain.CodeOf(err) != domain.CodeQuotaExceeded {
			t.Fatalf("a fourth invitation after another process's third: %v, want QUOTA_EXCEEDED (T9)", err)
		}
		recs, rerr := base.ReadStream(context.Background(), payerStream)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if whole3, _ := store.reads(payerStream); whole3 != whole1 {
			t.Fatalf("the payer was read whole %d times after the first decision", whole3-whole1)
		}
		if n := len(recs); n != 1+3 {
			t.Fatalf("payer stream holds %d events, want the registration and 3 links", n)
		}
	})
}
