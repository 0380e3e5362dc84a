package projections

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TestSetPlainDecimal: the fast path gives exactly what domain.ParseDecimal
// gives (value, sign, coefficient and exponent), and leaves every other form to it.
func TestSetPlainDecimal(t *testing.T) {
	t.Parallel()
	plain := []string{"0", "-0", "+0", "0.80", "0.096", "-0.5", "+1.25", "123456789012345678", "0.00000000000000001",
		"-99999999999999999.9", "10", "007", "1.000000", "-0.000"}
	other := []string{"", "-", "+", ".", ".5", "5.", "1e3", "1E-3", "1.2.3", "--1", "+-1", "1,5", " 1", "1 ", "Infinity",
		"NaN", "0x10", "1234567890123456789", "0.1234567890123456789", "١"}
	for _, s := range plain {
		var d apd.Decimal
		if !setPlainDecimal(&d, s) {
			t.Errorf("%q: not taken as plain", s)
			continue
		}
		want, err := domain.ParseDecimal(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if d.Form != want.Form || d.Negative != want.Negative || d.Exponent != want.Exponent || d.Coeff.Cmp(&want.Coeff) != 0 {
			t.Errorf("%q: got %+v (%s), want %+v (%s)", s, d, d.String(), *want, want.String())
		}
	}
	for _, s := range other {
		var d apd.Decimal
		if setPlainDecimal(&d, s) {
			t.Errorf("%q: taken as plain (%s)", s, d.String())
		}
	}
	// The general path still sums the other valid forms exactly.
	agg := newBillableAggregate()
	var acc apd.Decimal
	for _, s := range []string{"1e3", "1234567890123456789", ".5", "5.", "0.1234567890123456789"} {
		if err := agg.addDecimal(&acc, "billed_cost", s); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
	if got := domain.CanonicalDecimal(&acc); got != "1234567890123457794.6234567890123456789" {
		t.Fatalf("sum %s", got)
	}
}

// BenchmarkBillableAggregate measures the aggregation alone (no store), per record.
func BenchmarkBillableAggregate(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS", "AmazonCloudFront"}
	batch := &billingv1.UsageBatchRecorded{Month: "2026-09"}
	for j := 0; j < 500; j++ {
		acc := rng.IntN(1000)
		batch.Records = append(batch.Records, &billingv1.BookedUsage{
			Record: &billingv1.UsageRecord{
				AccountId:  fmt.Sprintf("%012d", 200000000000+acc),
				Service:    services[rng.IntN(len(services))],
				BilledCost: fmt.Sprintf("%d.%06d", rng.IntN(100), rng.IntN(1_000_000)),
				Quantity:   fmt.Sprintf("%d.%02d", rng.IntN(1000), rng.IntN(100)),
				Currency:   "USD",
			},
			BookingMonth:    "2026-09",
			PayerAccountId:  fmt.Sprintf("%012d", 100000000000+acc/10%5),
			SourceAccountId: fmt.Sprintf("%012d", 200000000000+acc/10*10),
		})
	}
	ev := usageEvent{rec: eventstore.Record{Position: 1}, batch: batch, month: "2026-09", recordedAt: time.Now()}
	agg := newBillableAggregate()
	b.ReportAllocs()
	for b.Loop() {
		if err := agg.addEvent(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "records/s")
}
