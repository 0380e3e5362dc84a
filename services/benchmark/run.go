package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// Months of the run: the batch path books into batchMonth, the durable path into
// durableMonth, so each end-to-end figure waits for its own month's count.
const (
	batchMonth   = "2026-09"
	durableMonth = "2026-08"
)

// Targets of issue #3 §9 (2 cores).
const (
	targetBatch        = 100_000
	targetDurableRatio = 0.4
	targetReplay       = 500_000
)

// run is the benchmark against a billingd subprocess.
func run(ctx context.Context, cfg config) error {
	if cfg.records <= 0 || cfg.accounts <= 0 || cfg.batch <= 0 || cfg.requesters <= 0 || cfg.window <= 0 {
		return fmt.Errorf("--records, --accounts, --batch, --requesters and --window must be positive")
	}
	em, closeOut, err := newEmitter(cfg.out)
	if err != nil {
		return err
	}
	defer closeOut()
	tmp, err := os.MkdirTemp("", "ledger-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			logf("kept %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	bin := cfg.billingd
	if bin == "" {
		logf("building billingd")
		if bin, err = buildBillingd(ctx, tmp); err != nil {
			return err
		}
	}
	N := cfg.records
	logf("generating 2 × %d usage records for %d accounts", N, cfg.accounts)
	wb := generate(1, cfg.accounts, batchMonth, "bb", N, cfg.batch)
	wd := generate(2, cfg.accounts, durableMonth, "bd", N, cfg.batch)
	avgBytes := wd.bytes / max(1, len(wd.lines))
	logf("records are %d bytes on average; batch payloads %d bytes", avgBytes, len(wb.batches[0]))

	srv, err := startBillingd(ctx, bin, tmp)
	if err != nil {
		return err
	}
	defer func() {
		logf("stopping billingd")
		srv.stop()
	}()
	logf("billingd pid %d, http %s, nats %s", srv.cmd.Process.Pid, srv.base, srv.natsURL)
	ingestToken = srv.token
	em.emit(machine())

	logf("registering %d accounts", cfg.accounts)
	if err := srv.register(ctx, cfg.accounts); err != nil {
		return err
	}
	idle := srv.rss()

	nc, err := nats.Connect(srv.natsURL, nats.Name("benchmark"))
	if err != nil {
		return err
	}
	defer nc.Close()

	// Raw baselines: the same messages, no decoding, dedup or projection.
	dropRaw, err := createRawStream(ctx, nc)
	if err != nil {
		return err
	}
	pid := fmt.Sprint(srv.cmd.Process.Pid)
	logf("raw async publish: %d one-record messages (window %d)", N, cfg.window)
	cpuRaw := sampleCPU(pid)
	raw1, err := publishAsync(ctx, nc, rawSubject, wd.lines, cfg.window)
	if err != nil {
		dropRaw()
		return err
	}
	logf("raw async publish: %d-record messages (window %d), %d at a time for at least 1 s", cfg.batch, cfg.rawWindow, len(wb.batches))
	rawCPU := cpuSince(cpuRaw, pid, 0)
	rawB, err := publishAsyncFor(ctx, nc, rawBatchSubject, wb.batches, cfg.rawWindow, time.Second, 20)
	dropRaw()
	if err != nil {
		return err
	}
	raw1Rate := rate(raw1.msgs, raw1.elapsed)
	rawBRate := rate(rawB.msgs, rawB.elapsed)
	rawBase := baseline("jetstream_async_publish_raw", raw1Rate, "msg/s",
		kv{"messages", raw1.msgs}, kv{"message_bytes", raw1.bytes / max(1, raw1.msgs)}, kv{"window", cfg.window}, kv{"seconds", secs(raw1.elapsed)}, kv{"cpu", rawCPU})

	// (a) Batch path.
	logf("batch path: %d requests of %d records, %d in flight", len(wb.batches), cfg.batch, cfg.requesters)
	count := srv.monthRecords
	cpuBatch := sampleCPU(pid)
	rb, err := ingestBatchE2E(ctx, nc, wb, cfg.requesters, count, 0)
	if err != nil {
		return fmt.Errorf("batch path: %w", err)
	}
	batchCPU := cpuSince(cpuBatch, pid, N)
	rssBatch := srv.rss()
	batchRate := rate(N, rb.total)
	em.emit(obj{
		{"figure", "ingest_batch_e2e"}, {"value", batchRate}, {"unit", "records/s"},
		{"baseline", rawBase}, {"ratio", ratio(batchRate, raw1Rate)},
		{"records", N}, {"seconds", secs(rb.total)},
		{"replied_seconds", secs(rb.acked)}, {"replied_records_per_s", rate(N, rb.acked)},
		{"batch", cfg.batch}, {"requests", len(wb.batches)}, {"requesters", cfg.requesters},
		{"raw_batch_messages", baseline("jetstream_async_publish_raw_"+fmt.Sprint(cfg.batch), rawBRate, "msg/s",
			kv{"records_per_s", rate(rawB.msgs/len(wb.batches)*N, rawB.elapsed)}, kv{"messages", rawB.msgs}, kv{"message_bytes", rawB.bytes / max(1, rawB.msgs)},
			kv{"window", cfg.rawWindow}, kv{"seconds", secs(rawB.elapsed)})},
		{"ratio_to_raw_batch_messages", ratio(batchRate, rate(rawB.msgs/len(wb.batches)*N, rawB.elapsed))},
		{"cpu", batchCPU},
		{"target", targetBatch}, {"meets_target", batchRate >= targetBatch},
	})

	// Durable path.
	logf("durable path: %d one-record JetStream messages (window %d)", N, cfg.window)
	cpuDurable := sampleCPU(pid)
	rd, err := ingestDurableE2E(ctx, nc, wd, cfg.window, count)
	if err != nil {
		return fmt.Errorf("durable path: %w", err)
	}
	durableCPU := cpuSince(cpuDurable, pid, N)
	rssDurable := srv.rss()
	durableRate := rate(N, rd.total)
	em.emit(obj{
		{"figure", "ingest_durable_e2e"}, {"value", durableRate}, {"unit", "records/s"},
		{"baseline", rawBase}, {"ratio", ratio(durableRate, raw1Rate)},
		{"records", N}, {"seconds", secs(rd.total)},
		{"acked_seconds", secs(rd.acked)}, {"acked_records_per_s", rate(N, rd.acked)},
		{"window", cfg.window}, {"cpu", durableCPU},
		{"target_ratio", targetDurableRatio}, {"meets_target", ratio(durableRate, raw1Rate) >= targetDurableRatio},
	})

	// (b) Replay, beside a raw read of the same messages, in child processes.
	logf("replay of %s (%d records) and raw ordered-consumer read, best of 3 each", batchMonth, N)
	raw, rep, err := replayPair(ctx, srv.natsURL, batchMonth, N)
	if err != nil {
		return err
	}
	em.emit(replayFigure("replay", raw, rep))
	rssReplay := srv.rss()

	// Replay memory as the month grows: double it and replay again.
	var rep2 childResult
	if !cfg.noDouble {
		logf("doubling %s: %d more records on the batch path", batchMonth, N)
		wx := generate(3, cfg.accounts, batchMonth, "bx", N, cfg.batch)
		cpuX := sampleCPU(pid)
		rx, err := ingestBatchE2E(ctx, nc, wx, cfg.requesters, count, uint64(N))
		if err != nil {
			return fmt.Errorf("doubling the month: %w", err)
		}
		xCPU := cpuSince(cpuX, pid, N)
		logf("batch path again (store already holding %d records): %d records/s", 2*N, int(rate(N, rx.total)))
		var raw2 childResult
		raw2, rep2, err = replayPair(ctx, srv.natsURL, batchMonth, 2*N)
		if err != nil {
			return err
		}
		f := replayFigure("replay_2x", raw2, rep2)
		f = append(f, kv{"ingest_batch_e2e_second_run", rate(N, rx.total)}, kv{"ingest_batch_e2e_second_run_cpu", xCPU})
		em.emit(f)
		em.emit(obj{
			{"figure", "replay_peak_rss"}, {"value", mb(rep2.HWMKB)}, {"unit", "MB"},
			{"baseline", baseline("replay_peak_rss_half_month", mb(rep.HWMKB), "MB", kv{"records", N}, kv{"events", rep.Events})},
			{"ratio", ratio(float64(rep2.HWMKB), float64(rep.HWMKB))},
			{"records", 2 * N}, {"events", rep2.Events},
			{"raw_read_peak_rss_mb", mb(max(raw.HWMKB, raw2.HWMKB))},
			{"note", "VmHWM of a child process that only runs ReplayMonthWith; flat (ratio ~1) when memory is bounded by rows"},
		})
	} else {
		em.emit(obj{
			{"figure", "replay_peak_rss"}, {"value", mb(rep.HWMKB)}, {"unit", "MB"},
			{"baseline", baseline("raw_read_peak_rss", mb(raw.HWMKB), "MB")},
			{"ratio", ratio(float64(rep.HWMKB), float64(raw.HWMKB))},
			{"records", N}, {"events", rep.Events},
		})
	}

	// (c) billingd's peak RSS.
	final := srv.rss()
	ingested := 2 * N
	if !cfg.noDouble {
		ingested = 3 * N
	}
	em.emit(obj{
		{"figure", "billingd_peak_rss"}, {"value", mb(final.hwm)}, {"unit", "MB"},
		{"baseline", baseline("billingd_idle_peak_rss", mb(idle.hwm), "MB", kv{"note", "after registering the accounts"})},
		{"ratio", ratio(float64(final.hwm), float64(idle.hwm))},
		{"after_batch_ingest_mb", mb(rssBatch.hwm)}, {"after_durable_ingest_mb", mb(rssDurable.hwm)},
		{"after_replay_mb", mb(rssReplay.hwm)}, {"rss_now_mb", mb(final.now)},
		{"go_heap_inuse_mb", obj{{"idle", idle.heapInuse}, {"after_batch_ingest", rssBatch.heapInuse}, {"after_durable_ingest", rssDurable.heapInuse}, {"end", final.heapInuse}}},
		{"go_live_heap_est_mb", obj{{"idle", idle.liveHeap}, {"after_batch_ingest", rssBatch.liveHeap}, {"after_durable_ingest", rssDurable.liveHeap}, {"end", final.liveHeap}}},
		{"records", ingested}, {"note", "VmHWM of billingd; records = every record it ingested in the run (batch, durable and the doubling of the month)"},
	})
	return nil
}

// replayPair measures the raw read and the replay of month.
func replayPair(ctx context.Context, natsURL, month string, records int) (childResult, childResult, error) {
	raw, err := bestOf(ctx, 3, "rawread", natsURL, month, 0)
	if err != nil {
		return raw, childResult{}, err
	}
	rep, err := bestOf(ctx, 3, "replay", natsURL, month, records)
	if err != nil {
		return raw, rep, err
	}
	if raw.Events != rep.Events {
		return raw, rep, fmt.Errorf("raw read saw %d messages, replay %d events", raw.Events, rep.Events)
	}
	return raw, rep, nil
}

// replayFigure is a replay line.
func replayFigure(name string, raw, rep childResult) obj {
	d := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	repRate := rate(int(rep.Records), d(rep.Seconds))
	rawRate := rate(int(rep.Records), d(raw.Seconds)) // the same records, read without decoding
	return obj{
		{"figure", name}, {"value", repRate}, {"unit", "records/s"},
		{"baseline", baseline("jetstream_ordered_consumer_raw_read", rawRate, "records/s",
			kv{"msg_per_s", rate(int(raw.Events), d(raw.Seconds))}, kv{"messages", raw.Events}, kv{"bytes", raw.Bytes}, kv{"seconds", round(raw.Seconds, 3)})},
		{"ratio", ratio(repRate, rawRate)},
		{"records", rep.Records}, {"events", rep.Events}, {"seconds", round(rep.Seconds, 3)},
		{"events_per_s", rate(int(rep.Events), d(rep.Seconds))},
		{"records_per_event", round(float64(rep.Records)/float64(max(1, rep.Events)), 1)},
		{"peak_rss_mb", mb(rep.HWMKB)},
		{"target", targetReplay}, {"meets_target", repRate >= targetReplay},
	}
}
