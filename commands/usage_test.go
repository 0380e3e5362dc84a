package commands_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func usageRec(id, account, start, cost string) *billingv1.UsageRecord {
	t, err := time.Parse(time.RFC3339, start)
	if err != nil {
		panic(err)
	}
	return &billingv1.UsageRecord{UsageId: id, AccountId: account, ChargePeriodStart: timestamppb.New(t), ChargePeriodEnd: timestamppb.New(t.Add(time.Hour)),
		Service: "AmazonEC2", UsageType: "BoxUsage", Quantity: "1", Unit: "Hrs", ListUnitPrice: "0.096", BilledCost: cost, Currency: "USD"}
}

// usageWorld registers organizations and returns a writer with a running directory.
func usageWorld(t *testing.T, store eventstore.Store, clock *fixedClock) *commands.UsageWriter {
	t.Helper()
	dir := commands.NewDirectory(store)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = dir.Run(ctx) }()
	<-dir.Ready()
	return commands.NewUsageWriter(store, clock, dir, commands.UsageWriterOptions{Partitions: 4})
}

// booked returns every accepted usage id (with multiplicity) and every dead letter.
func booked(t *testing.T, store eventstore.Store) (map[string]int, []*billingv1.UsageRejected, []string) {
	t.Helper()
	ids := map[string]int{}
	var rejected []*billingv1.UsageRejected
	var redriven []string
	err := store.ReadAll(context.Background(), 0, "billing.usage.>", func(r eventstore.Record) error {
		b := r.Event.GetUsageBatchRecorded()
		for _, u := range b.GetRecords() {
			ids[u.GetRecord().GetUsageId()]++
		}
		rejected = append(rejected, b.GetRejected()...)
		redriven = append(redriven, b.GetRedrivenDeadLetterIds()...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, rejected, redriven
}

func statuses(res *billingv1.IngestBatchResponse) []string {
	var out []string
	for _, r := range res.GetResults() {
		s := r.GetStatus()
		if r.GetReason() != "" {
			s += ":" + r.GetReason()
		}
		out = append(out, s)
	}
	return out
}

func eq(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestU2_DuplicatesAreCountedOnceForEver(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		clock.Set("2026-09-10T00:00:00Z")
		must(t, commands.New(store, clock, commands.Options{}), org("222222222222", "222222222223"))
		w := usageWorld(t, store, clock)
		ctx := context.Background()
		a := usageRec("u-1", "222222222223", "2026-09-03T00:00:00Z", "0.80")
		b := usageRec("u-2", "222222222223", "2026-09-03T00:00:00Z", "0.096")
		// Duplicates inside one batch.
		res, err := w.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{a, b, a})
		if err != nil || !eq(statuses(res), []string{"ACCEPTED", "ACCEPTED", "DUPLICATE"}) || res.GetAccepted() != 2 || res.GetDuplicates() != 1 {
			t.Fatalf("one batch: %v %v", statuses(res), err)
		}
		// Across batches.
		res, _ = w.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{b, a})
		if !eq(statuses(res), []string{"DUPLICATE", "DUPLICATE"}) {
			t.Fatalf("across batches: %v", statuses(res))
		}
		// Across a restart: a new writer (new process) on the same store.
		w2 := usageWorld(t, newStore(), clock)
		res, _ = w2.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{a})
		if !eq(statuses(res), []string{"DUPLICATE"}) {
			t.Fatalf("after restart: %v", statuses(res))
		}
		// 40 days later.
		clock.Set("2026-10-20T00:00:00Z")
		res, _ = w2.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{b})
		if !eq(statuses(res), []string{"DUPLICATE"}) {
			t.Fatalf("40 days later: %v", statuses(res))
		}
		// Same id, different content: a conflict, dead-lettered, even in another month.
		c := usageRec("u-1", "222222222223", "2026-10-03T00:00:00Z", "0.80")
		res, _ = w2.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{c})
		if !eq(statuses(res), []string{"REJECTED:USAGE_ID_CONFLICT"}) || res.GetResults()[0].GetDeadLetterId() == "" {
			t.Fatalf("conflict: %v", res)
		}
		ids, rejected, _ := booked(t, store)
		if len(ids) != 2 || ids["u-1"] != 1 || ids["u-2"] != 1 {
			t.Fatalf("booked %v", ids)
		}
		if len(rejected) != 1 || rejected[0].GetReason() != domain.ReasonUsageIDConflict || rejected[0].GetRecord().GetUsageId() != "u-1" {
			t.Fatalf("dead letters %v", rejected)
		}
	})
}

func TestU2_TwoWritersRacingOnTheSameRecordsBookEachOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		clock.Set("2026-09-10T00:00:00Z")
		must(t, commands.New(store, clock, commands.Options{}), org("222222222222"))
		const n = 400
		var recs []*billingv1.UsageRecord
		for i := 0; i < n; i++ {
			recs = append(recs, usageRec(fmt.Sprintf("u-%d", i), "222222222222", "2026-09-03T00:00:00Z", "0.01"))
		}
		writers := []*commands.UsageWriter{usageWorld(t, newStore(), clock), usageWorld(t, newStore(), clock), usageWorld(t, newStore(), clock)}
		var wg sync.WaitGroup
		accepted := make([]uint32, len(writers))
		for i, w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for start := 0; start < n; start += 50 {
					res, err := w.Ingest(context.Background(), "test", "t", recs[start:start+50])
					if err != nil {
						t.Error(err)
						return
					}
					accepted[i] += res.GetAccepted()
				}
			}()
		}
		wg.Wait()
		if total := accepted[0] + accepted[1] + accepted[2]; total != n {
			t.Fatalf("writers accepted %v records in all, want %d", accepted, n)
		}
		ids, _, _ := booked(t, store)
		if len(ids) != n {
			t.Fatalf("%d distinct ids booked, want %d", len(ids), n)
		}
		for id, c := range ids {
			if c != 1 {
				t.Fatalf("%s booked %d times", id, c)
			}
		}
	})
}

func TestU4_BadRecordsGoToTheDeadLetterAndCanBeRedriven(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		clock := newClock()
		clock.Set("2026-09-10T00:00:00Z")
		p := commands.New(store, clock, commands.Options{})
		must(t, p, org("222222222222"))
		w := usageWorld(t, store, clock)
		ctx := context.Background()
		neg := usageRec("u-neg", "222222222222", "2026-09-03T00:00:00Z", "1")
		neg.Quantity = "-3"
		cur := usageRec("u-cur", "222222222222", "2026-09-03T00:00:00Z", "1")
		cur.Currency = "XXX"
		per := usageRec("u-per", "222222222222", "2026-09-03T00:00:00Z", "1")
		per.ChargePeriodEnd = timestamppb.New(per.GetChargePeriodStart().AsTime().Add(-time.Hour))
		unknown := usageRec("u-unk", "333333333333", "2026-09-03T00:00:00Z", "2.5")
		nan := usageRec("u-nan", "222222222222", "2026-09-03T00:00:00Z", "1")
		nan.Quantity = "lots"
		res, err := w.Ingest(ctx, "test", "t", []*billingv1.UsageRecord{neg, cur, per, unknown, nan, usageRec("u-ok", "222222222222", "2026-09-03T00:00:00Z", "1")})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"REJECTED:INVALID_QUANTITY", "REJECTED:UNKNOWN_CURRENCY", "REJECTED:INVALID_PERIOD", "REJECTED:UNKNOWN_ACCOUNT", "REJECTED:INVALID_QUANTITY", "ACCEPTED"}
		if !eq(statuses(res), want) || res.GetRejectedByReason()[domain.ReasonInvalidQuantity] != 2 {
			t.Fatalf("statuses %v, want %v", statuses(res), want)
		}
		dl, err := w.DeadLetterMalformed(ctx, "test", "nats line 7", []byte(`{"usage_id": oops`), "line 7: invalid JSON")
		if err != nil || dl == "" {
			t.Fatalf("malformed: %q %v", dl, err)
		}
		_, rejected, _ := booked(t, store)
		if len(rejected) != 6 || string(rejected[5].GetRaw()) != `{"usage_id": oops` || rejected[5].GetReason() != domain.ReasonMalformed {
			t.Fatalf("dead letters %v", rejected)
		}
		// Fix the cause (register the account), then re-drive the dead letter.
		must(t, p, org("333333333333"))
		var unkDL string
		for _, r := range rejected {
			if r.GetReason() == domain.ReasonUnknownAccount {
				unkDL = r.GetDeadLetterId()
			}
		}
		res, err = w.IngestItems(ctx, "test", []commands.UsageItem{{Record: unknown, Origin: "redrive", RedriveOf: unkDL}})
		if err != nil || !eq(statuses(res), []string{"ACCEPTED"}) {
			t.Fatalf("redrive: %v %v", statuses(res), err)
		}
		ids, _, redriven := booked(t, store)
		if ids["u-unk"] != 1 || len(redriven) != 1 || redriven[0] != unkDL {
			t.Fatalf("after redrive: ids %v redriven %v", ids, redriven)
		}
	})
}
