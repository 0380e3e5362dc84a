package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// Shape of the benchmark month (DESIGN §7, issue 3 §9): 200 events of 500
// records each, 1,000 accounts in 100 organizations under 5 payers, 5 services.
const (
	benchEvents          = 200
	benchRecordsPerEvent = 500
	benchAccounts        = 1000
)

// fillBenchMonth appends the benchmark month to s and returns the record count.
func fillBenchMonth(b *testing.B, s eventstore.Store) uint64 {
	b.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda", "AmazonRDS", "AmazonCloudFront"}
	versions := map[string]uint64{}
	var records uint64
	for i := 0; i < benchEvents; i++ {
		batch := &billingv1.UsageBatchRecorded{Partition: uint32(i % 8), Month: sep}
		for j := 0; j < benchRecordsPerEvent; j++ {
			acc := rng.IntN(benchAccounts)
			org := acc / 10
			account := fmt.Sprintf("%012d", 200000000000+acc)
			source := fmt.Sprintf("%012d", 200000000000+org*10)
			payer := fmt.Sprintf("%012d", 100000000000+org%5)
			r := usageRecord(fmt.Sprintf("u-%d-%d", i, j), account, services[rng.IntN(len(services))],
				fmt.Sprintf("%d.%06d", rng.IntN(100), rng.IntN(1_000_000)), fmt.Sprintf("%d.%02d", rng.IntN(1000), rng.IntN(100)))
			batch.Records = append(batch.Records, booked(sep, payer, source, r))
		}
		records += benchRecordsPerEvent
		stream := domain.UsageStream(sep, batch.Partition)
		ev := &billingv1.Event{EventId: fmt.Sprintf("bench-%d", i), RecordedAt: ts(t0), Actor: "bench",
			Payload: &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: batch}}
		if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[stream], Events: []*billingv1.Event{ev}}); err != nil {
			b.Fatalf("append: %v", err)
		}
		versions[stream]++
	}
	return records
}

// benchStores runs fn on a memstore and on JetStream (embedded server, file storage).
func benchStores(b *testing.B, fn func(b *testing.B, s eventstore.Store, records uint64)) {
	b.Run("memstore", func(b *testing.B) {
		s := memstore.New()
		fn(b, s, fillBenchMonth(b, s))
	})
	b.Run("jetstream", func(b *testing.B) {
		s := newJetStream(b)
		fn(b, s, fillBenchMonth(b, s))
	})
}

// BenchmarkReplayMonth measures ReplayMonth (R2, DESIGN §7 "Replay") in usage
// records per second, beside "read": a ReadAll of the same events that does
// nothing with them (the store's own cost: copying or decoding the events).
func BenchmarkReplayMonth(b *testing.B) {
	benchStores(b, func(b *testing.B, s eventstore.Store, records uint64) {
		ctx := context.Background()
		b.Run("replay", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, err := projections.ReplayMonth(ctx, s, sep, time.Time{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if got := d.GetDigests()[0].GetTotals()["records"]; got != fmt.Sprint(records) {
					b.Fatalf("replayed %s records, want %d", got, records)
				}
			}
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run("read", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var n uint64
				err := s.ReadAll(ctx, 0, domain.UsageMonthFilter(sep), func(r eventstore.Record) error {
					n += uint64(len(r.Event.GetUsageBatchRecorded().GetRecords()))
					return nil
				})
				if err != nil || n != records {
					b.Fatalf("read %d records: %v", n, err)
				}
			}
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	})
}

// BenchmarkUsageProjection measures the usage projection behind a Runner, from
// an empty read model to the checkpoint at the last event, in records per
// second (the read-model share of end-to-end ingest), into SQLite and into
// PostgreSQL (BILLING_TEST_POSTGRES; skipped without it).
func BenchmarkUsageProjection(b *testing.B) {
	benchStores(b, func(b *testing.B, s eventstore.Store, records uint64) {
		ctx := context.Background()
		last, err := s.LastPosition(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, rm := range readmodeltest.Backends {
			b.Run(string(rm), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					db, err := readmodel.Open(ctx, rm.Target(b))
					if err != nil {
						b.Fatal(err)
					}
					rctx, cancel := context.WithCancel(ctx)
					rn := projections.NewRunner(db, s, projections.Usage{}, projections.RunnerConfig{IdleInterval: time.Hour})
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
		}
	})
}
