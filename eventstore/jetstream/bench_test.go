package jetstream_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
)

// benchStreams is how many streams the append benchmarks spread their events over.
const benchStreams = 1000

// benchStore starts an embedded server in a temporary directory.
func benchStore(b *testing.B, syncAlways bool) *jetstream.Store {
	b.Helper()
	e := startServer(b, b.TempDir(), syncAlways)
	b.Cleanup(e.Shutdown)
	return open(b, connect(b, e))
}

// BenchmarkAppend measures append throughput against the embedded server, with
// JetStream's default sync interval and with SyncAlways (fsync per write or batch):
//
//   - single: one event per append (a plain publish), streams in turn;
//   - single-parallel: the same from GOMAXPROCS×4 goroutines, each with its own streams;
//   - batch10, batch100: 10 or 100 events to one stream per atomic append;
//   - batch10-parallel: batches of 10 from GOMAXPROCS×4 goroutines;
//   - 10streams: one event to each of 10 streams per atomic append.
//
// events/s counts events, so batches compare directly with single appends.
func BenchmarkAppend(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		mode := "sync=interval"
		if syncAlways {
			mode = "sync=always"
		}
		b.Run(mode+"/single", func(b *testing.B) { benchSerial(b, syncAlways, 1, 1) })
		b.Run(mode+"/single-parallel", func(b *testing.B) { benchParallel(b, syncAlways, 1) })
		b.Run(mode+"/batch10", func(b *testing.B) { benchSerial(b, syncAlways, 1, 10) })
		b.Run(mode+"/batch10-parallel", func(b *testing.B) { benchParallel(b, syncAlways, 10) })
		b.Run(mode+"/batch100", func(b *testing.B) { benchSerial(b, syncAlways, 1, 100) })
		b.Run(mode+"/10streams", func(b *testing.B) { benchSerial(b, syncAlways, 10, 1) })
	}
}

// benchSerial appends perStream events to each of streams streams per Append.
func benchSerial(b *testing.B, syncAlways bool, streams, perStream int) {
	s := benchStore(b, syncAlways)
	ctx := context.Background()
	versions := make([]uint64, benchStreams)
	batch := make([]eventstore.StreamAppend, streams)
	next := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			k := next % benchStreams
			next++
			batch[i] = eventstore.StreamAppend{
				Stream:          fmt.Sprintf("billing.org.%012d", k),
				ExpectedVersion: versions[k],
				Events:          events("bench", perStream),
			}
			versions[k] += uint64(perStream)
		}
		if _, err := s.Append(ctx, batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*streams*perStream)/b.Elapsed().Seconds(), "events/s")
}

// benchParallel appends perAppend events per Append from many goroutines, each
// to its own streams.
func benchParallel(b *testing.B, syncAlways bool, perAppend int) {
	s := benchStore(b, syncAlways)
	ctx := context.Background()
	var worker atomic.Int64
	var total atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		const own = 50
		versions := make([]uint64, own)
		n := 0
		for pb.Next() {
			k := n % own
			n++
			stream := fmt.Sprintf("billing.org.w%d-%d", w, k)
			if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: versions[k], Events: events("bench", perAppend)}); err != nil {
				b.Error(err)
				return
			}
			versions[k] += uint64(perAppend)
		}
		total.Add(int64(n * perAppend))
	})
	b.ReportMetric(float64(total.Load())/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadStream reads one stream of 1,000 events that is interleaved with others.
func BenchmarkReadStream(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	const stream = "billing.transfer.rt-bench"
	for i := range 10 {
		if _, err := s.Append(ctx,
			eventstore.StreamAppend{Stream: stream, ExpectedVersion: uint64(i * 100), Events: events("r", 100)},
			eventstore.StreamAppend{Stream: fmt.Sprintf("billing.org.%012d", i), Events: events("o", 100)},
		); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		recs, err := s.ReadStream(ctx, stream)
		if err != nil || len(recs) != 1000 {
			b.Fatalf("ReadStream: %d records, %v", len(recs), err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadAll replays 10,000 events, as a projector rebuilding a month would.
func BenchmarkReadAll(b *testing.B) {
	s := benchStore(b, false)
	ctx := context.Background()
	for i := range 100 {
		if _, err := s.Append(ctx, eventstore.StreamAppend{Stream: fmt.Sprintf("billing.usage.2026-09.p%d", i), Events: events("u", 100)}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := s.ReadAll(ctx, 0, "billing.usage.2026-09.>", func(eventstore.Record) error { n++; return nil }); err != nil || n != 10_000 {
			b.Fatalf("ReadAll: %d records, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*10_000)/b.Elapsed().Seconds(), "events/s")
}
