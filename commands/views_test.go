package commands_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/esdb"
	"github.com/billtransfer/ledger/eventstore/esdb/esdbfake"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// forEachViewStore is forEachStore plus the KurrentDB adapter on its fake
// server, with the guard families billingd declares (domain.GuardFamilies):
// the billing views are guarded as one family there too.
func forEachViewStore(t *testing.T, fn func(t *testing.T, newStore func() eventstore.Store)) {
	forEachStore(t, fn)
	t.Run("kurrentdb", func(t *testing.T) {
		f, err := esdbfake.Start(false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		fn(t, func() eventstore.Store {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			s, err := esdb.Open(ctx, esdb.Config{URL: f.URL(), GuardFamilies: domain.GuardFamilies()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		})
	})
}

// interposer is a store whose first Append writing stream first runs before:
// another command commits between a decision and its append, exactly there.
type interposer struct {
	eventstore.Store
	stream string
	before func()
	once   sync.Once
}

func (s *interposer) Append(ctx context.Context, appends ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	for _, a := range appends {
		if a.Stream == s.stream {
			s.once.Do(s.before)
		}
	}
	return s.Store.Append(ctx, appends...)
}

// viewSetup registers payer 111111111111 with view bv-s (every row of its pro
// forma) and returns a pipeline on store.
func viewSetup(t *testing.T, store eventstore.Store) *commands.Pipeline {
	t.Helper()
	p := commands.New(store, newClock(), commands.Options{})
	must(t, p, org("111111111111"), &billingv1.CreateBillingView{BillingViewId: "bv-s", OwnerAccountId: "111111111111", Type: "CUSTOM"})
	return p
}

// TestA2_ViewDeletionAndAViewBuiltOnItNeverBothCommit: DeleteBillingView
// reads every view to find those built on it, and a CUSTOM view reads its
// source views; they write different streams, so only the guard over the
// whole family of view streams (domain.BillingViewFamily) keeps a live view
// from resting on a deleted one. Whichever commits between the other's
// decision and its append makes the other decide again, and fail.
func TestA2_ViewDeletionAndAViewBuiltOnItNeverBothCommit(t *testing.T) {
	custom := &billingv1.CreateBillingView{BillingViewId: "bv-c", OwnerAccountId: "111111111111", Type: "CUSTOM", SourceViewIds: []string{"bv-s"}}
	t.Run("deleted before the view built on it is appended", func(t *testing.T) {
		forEachViewStore(t, func(t *testing.T, newStore func() eventstore.Store) {
			store := newStore()
			other := viewSetup(t, store)
			p := commands.New(&interposer{Store: newStore(), stream: domain.BillingViewStream("bv-c"), before: func() {
				must(t, other, &billingv1.DeleteBillingView{BillingViewId: "bv-s"})
			}}, newClock(), commands.Options{})
			_, err := exec(t, p, custom)
			if domain.CodeOf(err) != domain.CodeNotFound || !strings.Contains(err.Error(), "billing view bv-s was deleted") {
				t.Fatalf("CreateBillingView on a source deleted meanwhile: %v, want NOT_FOUND", err)
			}
			if n := len(events(t, store, domain.BillingViewStream("bv-c"))); n != 0 {
				t.Fatalf("bv-c has %d events, want none", n)
			}
		})
	})
	t.Run("built on before its deletion is appended", func(t *testing.T) {
		forEachViewStore(t, func(t *testing.T, newStore func() eventstore.Store) {
			store := newStore()
			other := viewSetup(t, store)
			p := commands.New(&interposer{Store: newStore(), stream: domain.BillingViewStream("bv-s"), before: func() {
				must(t, other, custom)
			}}, newClock(), commands.Options{})
			_, err := exec(t, p, &billingv1.DeleteBillingView{BillingViewId: "bv-s"})
			if domain.CodeOf(err) != domain.CodeFailedPrecondition || !strings.Contains(err.Error(), "source view of live CUSTOM view(s) bv-c") {
				t.Fatalf("DeleteBillingView of a source used meanwhile: %v, want FAILED_PRECONDITION naming bv-c", err)
			}
			if n := len(events(t, store, domain.BillingViewStream("bv-s"))); n != 1 {
				t.Fatalf("bv-s has %d events, want its creation only", n)
			}
		})
	})
	t.Run("an unrelated view write only makes it decide again", func(t *testing.T) {
		forEachViewStore(t, func(t *testing.T, newStore func() eventstore.Store) {
			store := newStore()
			other := viewSetup(t, store)
			p := commands.New(&interposer{Store: newStore(), stream: domain.BillingViewStream("bv-s"), before: func() {
				must(t, other, &billingv1.CreateBillingView{BillingViewId: "bv-x", OwnerAccountId: "111111111111", Type: "CUSTOM"})
			}}, newClock(), commands.Options{})
			must(t, p, &billingv1.DeleteBillingView{BillingViewId: "bv-s"})
			if b := domain.FoldBillingView(events(t, store, domain.BillingViewStream("bv-s"))); !b.Deleted() {
				t.Fatal("bv-s is not deleted")
			}
		})
	})
}

func events(t *testing.T, s eventstore.Store, stream string) []*billingv1.Event {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
	}
	return out
}

// TestA2_RevokeAndDeleteBillingViewAreIdempotent: a request id replays the
// first outcome and appends nothing more.
func TestA2_RevokeAndDeleteBillingViewAreIdempotent(t *testing.T) {
	forEachViewStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		p := viewSetup(t, store)
		must(t, p, org("222222222222", "222222222223"),
			&billingv1.CreateBillingView{BillingViewId: "bv-g", OwnerAccountId: "111111111111", Type: "CUSTOM", Filter: &billingv1.BillingViewFilter{AccountIds: []string{"222222222223"}}},
			&billingv1.GrantBillingView{BillingViewId: "bv-g", AccountId: "222222222222"})
		for _, cmd := range []any{
			&billingv1.RevokeBillingView{BillingViewId: "bv-g", AccountId: "222222222222", RequestId: "rq-revoke"},
			&billingv1.DeleteBillingView{BillingViewId: "bv-g", RequestId: "rq-delete"},
		} {
			first := must(t, p, cmd)
			before := lastPosition(t, store)
			again := must(t, p, cmd)
			if !again.GetReplayed() || again.GetEventIds()[0] != first.GetEventIds()[0] || lastPosition(t, store) != before {
				t.Fatalf("%T replayed %v (first %v)", cmd, again, first)
			}
		}
		b := domain.FoldBillingView(events(t, store, domain.BillingViewStream("bv-g")))
		if !b.Deleted() || len(b.Grantees()) != 0 || b.GrantedWhenDeleted("222222222222") {
			t.Fatalf("bv-g: deleted %v grantees %v", b.Deleted(), b.Grantees())
		}
	})
}
