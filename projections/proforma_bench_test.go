package projections_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
)

// BenchmarkProformaRerate measures a re-rate (P4): one PricingRuleUpdated on
// the plan of a payer's billing group, applied by the proforma projection in
// one transaction on a SQLite file, which re-prices the payer's whole month.
// The month holds `skus` distinct SKUs (accounts × usage types) and
// `records/sku` usage records each. The cost grows with the SKUs and not with
// the records: the re-rate reads the per-SKU aggregates, never the events
// (compare records/sku=1 with records/sku=20 at the same SKU count; ns/sku
// is the time per re-rate divided by the SKU count).
//
//	go test -run '^$' -bench ProformaRerate -benchtime 20x ./projections/
func BenchmarkProformaRerate(b *testing.B) {
	for _, skus := range []int{100, 1000, 10000} {
		for _, perSKU := range []int{1, 20} {
			b.Run(fmt.Sprintf("skus=%d/records_per_sku=%d", skus, perSKU), func(b *testing.B) {
				benchRerate(b, skus, perSKU)
			})
		}
	}
}

func benchRerate(b *testing.B, skus, perSKU int) {
	ctx := context.Background()
	db, err := readmodel.OpenSQLite(b.TempDir() + "/readmodel.db")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	p := projections.Proforma{}
	pos := uint64(0)
	apply := func(evs ...*billingv1.Event) {
		b.Helper()
		recs := make([]eventstore.Record, len(evs))
		for i, ev := range evs {
			pos++
			recs[i] = eventstore.Record{Event: ev, Position: pos}
		}
		if err := db.WithTx(ctx, func(tx *sql.Tx) error { return p.ApplyBatch(ctx, tx, recs) }); err != nil {
			b.Fatal(err)
		}
	}
	const payer, source = "111111111111", "222222222222"
	const usageTypes = 10
	accounts := skus / usageTypes
	var members []string
	for a := 0; a < accounts; a++ {
		members = append(members, fmt.Sprintf("%012d", 300000000000+a))
	}
	rule := func(mod string) *billingv1.PricingRule {
		return &billingv1.PricingRule{PricingRuleId: "pr-g", OwnerAccountId: payer, Name: "g", Type: billingv1.PricingRuleType_PRICING_RULE_TYPE_MARKUP,
			Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_GLOBAL, ModifierPercentage: mod}
	}
	apply(
		domain.NewEvent(&billingv1.PricingRuleCreated{Rule: rule("10")}),
		domain.NewEvent(&billingv1.PricingPlanCreated{PricingPlanId: "pp", OwnerAccountId: payer, Name: "pp",
			Rules: []*billingv1.PricingRuleKey{{PricingRuleId: "pr-g", Scope: billingv1.PricingRuleScope_PRICING_RULE_SCOPE_GLOBAL}}}),
		domain.NewEvent(&billingv1.TransferBillingGroupCreated{BillingGroupId: "tbg-rt", OwnerAccountId: payer, TransferId: "rt",
			PrimaryAccountId: source, AccountIds: members, PricingPlanId: "pp", StartMonth: sep}),
	)
	// perSKU rounds of one record per SKU, 500 records per event.
	n := 0
	batch := &billingv1.UsageBatchRecorded{Month: sep}
	flush := func() {
		if len(batch.Records) == 0 {
			return
		}
		apply(&billingv1.Event{Stream: domain.UsageStream(sep, 0), RecordedAt: ts(t0),
			Payload: &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: batch}})
		batch = &billingv1.UsageBatchRecorded{Month: sep}
	}
	for round := 0; round < perSKU; round++ {
		for a := 0; a < accounts; a++ {
			for u := 0; u < usageTypes; u++ {
				n++
				r := usageRecord(fmt.Sprintf("u-%d", n), members[a], "AmazonEC2", "0.8", "10")
				r.UsageType = fmt.Sprintf("BoxUsage:type-%d", u)
				batch.Records = append(batch.Records, booked(sep, payer, source, r))
				if len(batch.Records) == 500 {
					flush()
				}
			}
		}
	}
	flush()
	var rows int
	if err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+"proforma_usage").Scan(&rows); err != nil || rows != skus {
		b.Fatalf("%d SKU aggregates (%v), want %d", rows, err, skus)
	}

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply(domain.NewEvent(&billingv1.PricingRuleUpdated{Rule: rule(fmt.Sprintf("%d", 11+i%2))}))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(skus), "ns/sku")
	b.ReportMetric(float64(n), "records")
	got, err := db.ReportCost(ctx, sep, payer)
	if err != nil || len(got.GetRows()) != 1 {
		b.Fatalf("cost report %v, %v", got, err)
	}
}

// BenchmarkProformaProjection is BenchmarkUsageProjection for the proforma
// projection: the benchmark month (no billing groups: every record priced at
// list cost in its payer's "" row) from an empty SQLite file, in records per
// second; and the month's replay with the pro forma read models.
func BenchmarkProformaProjection(b *testing.B) {
	benchStores(b, func(b *testing.B, s eventstore.Store, records uint64) {
		ctx := context.Background()
		last, err := s.LastPosition(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("runner", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				db, err := readmodel.OpenSQLite(fmt.Sprintf("%s/rm.db", b.TempDir()))
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				rn := projections.NewRunner(db, s, projections.Proforma{}, projections.RunnerConfig{IdleInterval: time.Hour})
				done := make(chan error, 1)
				b.StartTimer()
				go func() { done <- rn.Run(rctx) }()
				if err := rn.WaitFor(ctx, last); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cancel()
				<-done
				_ = db.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run("replay", func(b *testing.B) {
			for b.Loop() {
				d, err := projections.ReplayMonthWith(ctx, s, sep, projections.ReplayOptions{Proforma: true})
				if err != nil {
					b.Fatal(err)
				}
				if got := d.GetDigests()[2].GetTotals()["records"]; got != fmt.Sprint(records) {
					b.Fatalf("replayed %s records, want %d", got, records)
				}
			}
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	})
}
