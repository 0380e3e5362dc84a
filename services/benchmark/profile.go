package main

// The in-process harness (--profile DIR): billingd has no pprof endpoint, so
// this wires the same parts billingd's server.go wires for the ingest paths —
// an embedded NATS server with JetStream file storage, the event store, the
// directory, the usage writer, the NATS ingest responders (services/ingest),
// and the transfers, usage and proforma projection runners on a SQLite read
// model — and runs the batch path, the durable path and a replay under
// runtime/pprof.
//
// Every goroutine carries a pprof label "side": "natsserver" (the embedded
// server, including its per-connection goroutines), "ledger" (the writer,
// responders and projectors, and their NATS client connection) or "client"
// (the benchmark's publishers). Look at one side with
//
//	go tool pprof -tagfocus side=ledger -top DIR/batch.cpu.pprof
//
// It also times each stage of the ingest path alone, single-threaded, over the
// same records (stages.json lines): JSON decoding, validation, content hashing,
// booking, event encoding, event decoding, projection sums, and the usage and
// proforma projections behind a Runner at several events per transaction.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/ingest"
)

// fixedClock is a clock that does not move.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// labeled runs fn with the pprof label side=side on this goroutine and on every
// goroutine it starts.
func labeled(ctx context.Context, side string, fn func(ctx context.Context)) {
	pprof.Do(ctx, pprof.Labels("side", side), fn)
}

// inproc is the in-process ledger.
type inproc struct {
	emb    *jetstream.Embedded
	nc     *nats.Conn
	store  *jetstream.Store
	db     *readmodel.DB
	usage  *projections.Runner
	pf     *projections.Runner // the proforma runner, as billingd runs it
	dir    *commands.Directory
	cancel context.CancelFunc
	done   chan struct{}
}

func startInproc(ctx context.Context, dir string, cfg config) (*inproc, error) {
	accounts := cfg.accounts
	p := &inproc{done: make(chan struct{})}
	var err error
	labeled(ctx, "natsserver", func(context.Context) {
		p.emb, err = jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: dir, Listen: "127.0.0.1:0", ServerName: "bench"})
	})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := fixedClock{time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)}
	labeled(ctx, "ledger", func(lctx context.Context) {
		if p.nc, err = nats.Connect(p.emb.ClientURL(), nats.Name("billingd")); err != nil {
			return
		}
		if p.store, err = jetstream.Open(lctx, p.nc, jetstream.Config{}); err != nil {
			return
		}
		pipe := commands.New(p.store, clk, commands.Options{})
		for k := 0; k*orgSize < accounts; k++ {
			first, end := k*orgSize, min((k+1)*orgSize, accounts)
			var members []string
			for i := first + 1; i < end; i++ {
				members = append(members, accountID(i))
			}
			if _, err = pipe.Execute(lctx, "admin", &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
				ManagementAccountId: accountID(first), Name: fmt.Sprintf("Bench Org %d", k), MemberAccountIds: members,
			}}}); err != nil {
				return
			}
		}
		if p.db, err = readmodel.OpenSQLite(filepath.Join(dir, "readmodel.db")); err != nil {
			return
		}
		runCtx, cancel := context.WithCancel(context.WithoutCancel(lctx))
		p.cancel = cancel
		tr := projections.NewRunner(p.db, p.store, projections.Transfers{}, projections.RunnerConfig{Logger: quiet})
		if !cfg.noProjection {
			p.usage = projections.NewRunner(p.db, p.store, projections.Usage{}, projections.RunnerConfig{Logger: quiet, BatchSize: cfg.runnerBatch})
		}
		if !cfg.noProforma {
			p.pf = projections.NewRunner(p.db, p.store, projections.Proforma{}, projections.RunnerConfig{Logger: quiet, BatchSize: cfg.runnerBatch})
		}
		d := commands.NewDirectory(p.store)
		p.dir = d
		w := commands.NewUsageWriter(p.store, clk, d, commands.UsageWriterOptions{})
		var v *auth.Verifier
		if ingestToken, err = auth.NewToken(); err != nil {
			return
		}
		if v, err = auth.NewVerifier(auth.TokenRecord{Name: "bench", Role: auth.RoleIngest, SHA256: auth.HashToken(ingestToken)}); err != nil {
			return
		}
		is := &ingest.Server{NC: p.nc, Writer: w, Log: quiet, FetchBatch: cfg.fetchBatch, Verifier: v}
		parts := []func(context.Context) error{tr.Run, d.Run}
		if p.usage != nil {
			parts = append(parts, p.usage.Run)
		}
		if p.pf != nil {
			parts = append(parts, p.pf.Run)
		}
		n := len(parts) + 1
		finished := make(chan struct{}, n)
		for _, run := range parts {
			go func() { _ = run(runCtx); finished <- struct{}{} }()
		}
		<-d.Ready()
		go func() { _ = is.Run(runCtx); finished <- struct{}{} }()
		go func() {
			for range n {
				<-finished
			}
			close(p.done)
		}()
	})
	if err != nil {
		p.close()
		return nil, err
	}
	// Wait for the durable stream the ingest server creates.
	js, err := natsjs.New(p.nc)
	if err != nil {
		p.close()
		return nil, err
	}
	for i := 0; ; i++ {
		if _, err := js.Consumer(ctx, ingest.DurableStream, ingest.DurableConsumer); err == nil {
			break
		} else if i > 200 {
			p.close()
			return nil, fmt.Errorf("ingest consumer not created: %w", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return p, nil
}

func (p *inproc) close() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	if p.db != nil {
		_ = p.db.Close()
	}
	if p.nc != nil {
		_ = p.nc.Drain()
	}
	if p.emb != nil {
		p.emb.Shutdown()
	}
}

// count is a recordCounter: it waits until the usage runner has applied the
// store's last position, then reads the month's digest.
func (p *inproc) count(ctx context.Context, month string) (uint64, string, error) {
	if p.usage == nil { // --no-usage-projection: count from the events
		d, err := projections.ReplayMonthWith(ctx, p.store, month, projections.ReplayOptions{})
		if err != nil {
			return 0, "", err
		}
		return digestRecords(d)
	}
	last, err := p.store.LastPosition(ctx)
	if err != nil {
		return 0, "", err
	}
	if err := p.usage.WaitFor(ctx, last); err != nil {
		return 0, "", err
	}
	if p.pf != nil { // billingd answers once every read model has it
		if err := p.pf.WaitFor(ctx, last); err != nil {
			return 0, "", err
		}
	}
	d, err := p.db.MonthDigest(ctx, month)
	if err != nil {
		return 0, "", err
	}
	return digestRecords(d)
}

// profiled runs fn under the CPU profiler, writing DIR/name.cpu.pprof.
func profiled(dir, name string, fn func() error) error {
	f, err := os.Create(filepath.Join(dir, name+".cpu.pprof"))
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	err = fn()
	pprof.StopCPUProfile()
	return err
}

func writeHeap(dir, name string) error {
	runtime.GC()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// runProfile is --profile DIR.
func runProfile(ctx context.Context, cfg config) error {
	if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
		return err
	}
	em, closeOut, err := newEmitter(cfg.out)
	if err != nil {
		return err
	}
	defer closeOut()
	em.emit(machine())
	N := cfg.records
	wb := generate(1, cfg.accounts, batchMonth, "bb", N, cfg.batch)
	wd := generate(2, cfg.accounts, durableMonth, "bd", N, cfg.batch)

	tmp, err := os.MkdirTemp("", "ledger-bench-inproc-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	p, err := startInproc(ctx, tmp, cfg)
	if err != nil {
		return err
	}
	defer p.close()
	if err := profiled(cfg.profileDir, "stages", func() error { return stages(em, wb, p.dir) }); err != nil {
		return err
	}
	if cfg.stagesOnly {
		logf("profiles in %s", cfg.profileDir)
		return nil
	}

	var runErr error
	labeled(ctx, "client", func(cctx context.Context) {
		nc, err := nats.Connect(p.emb.ClientURL(), nats.Name("benchmark"))
		if err != nil {
			runErr = err
			return
		}
		defer nc.Close()
		logf("in-process batch path: %d records", N)
		var rb, rd e2eResult
		if runErr = profiled(cfg.profileDir, "batch", func() (err error) {
			rb, err = ingestBatchE2E(cctx, nc, wb, cfg.requesters, p.count, 0)
			return err
		}); runErr != nil {
			return
		}
		em.emit(obj{{"figure", "inproc_ingest_batch_e2e"}, {"value", rate(N, rb.total)}, {"unit", "records/s"}, {"records", N}, {"seconds", secs(rb.total)},
			{"replied_seconds", secs(rb.acked)}, {"profile", filepath.Join(cfg.profileDir, "batch.cpu.pprof")}})
		logf("in-process durable path: %d records", N)
		if runErr = profiled(cfg.profileDir, "durable", func() (err error) {
			rd, err = ingestDurableE2E(cctx, nc, wd, cfg.window, p.count)
			return err
		}); runErr != nil {
			return
		}
		em.emit(obj{{"figure", "inproc_ingest_durable_e2e"}, {"value", rate(N, rd.total)}, {"unit", "records/s"}, {"records", N}, {"seconds", secs(rd.total)},
			{"acked_seconds", secs(rd.acked)}, {"profile", filepath.Join(cfg.profileDir, "durable.cpu.pprof")}})
		if runErr = writeHeap(cfg.profileDir, "after_ingest.heap.pprof"); runErr != nil {
			return
		}
		logf("in-process replay of %s", batchMonth)
		var best time.Duration
		if runErr = profiled(cfg.profileDir, "replay", func() error {
			for range 5 {
				start := time.Now()
				d, err := projections.ReplayMonthWith(cctx, p.store, batchMonth, projections.ReplayOptions{})
				if err != nil {
					return err
				}
				if n, _, _ := digestRecords(d); n != uint64(N) {
					return fmt.Errorf("replay counted %d records, want %d", n, N)
				}
				if el := time.Since(start); best == 0 || el < best {
					best = el
				}
			}
			return nil
		}); runErr != nil {
			return
		}
		em.emit(obj{{"figure", "inproc_replay"}, {"value", rate(N, best)}, {"unit", "records/s"}, {"records", N}, {"seconds", secs(best)},
			{"profile", filepath.Join(cfg.profileDir, "replay.cpu.pprof")}})
	})
	if runErr != nil {
		return runErr
	}
	logf("profiles in %s", cfg.profileDir)
	return nil
}

// stages times each step of the ingest path alone, single-threaded, over the
// batch workload's records, and prints ns/record per stage.
func stages(em *emitter, w *workload, view domain.View) error {
	n := len(w.lines)
	now := time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC)
	emit := func(stage string, d time.Duration, note string) {
		em.emit(obj{{"figure", "stage_" + stage}, {"value", round(float64(d.Nanoseconds())/float64(n), 0)}, {"unit", "ns/record"},
			{"records_per_s_one_core", rate(n, d)}, {"records", n}, {"note", note}})
	}

	// 1. JSON Lines → UsageRecord (ingest.ParseLines: protojson).
	var items []commands.UsageItem
	start := time.Now()
	for _, b := range w.batches {
		its, _ := ingest.ParseLines(b, "nats:usage.v1.batch")
		items = append(items, its...)
	}
	emit("json_decode", time.Since(start), "ingest.ParseLines (protojson.Unmarshal per line, fmt.Sprintf origin)")
	recs := make([]*billingv1.UsageRecord, len(items))
	for i, it := range items {
		if it.Record == nil {
			return fmt.Errorf("record %d malformed: %s", i, it.MalformedReason)
		}
		recs[i] = it.Record
	}

	// 2. Validation.
	start = time.Now()
	for _, r := range recs {
		if rj := domain.ValidateUsage(r, now); rj != nil {
			return fmt.Errorf("invalid: %s", rj.Message)
		}
	}
	emit("validate", time.Since(start), "domain.ValidateUsage")

	// 3. Content hash (deterministic proto.Marshal + SHA-256); the writer computes it twice per record.
	start = time.Now()
	for _, r := range recs {
		_ = domain.UsageContentHash(r)
	}
	emit("content_hash", time.Since(start), "domain.UsageContentHash, once (the writer calls it twice per accepted record: decide and BookUsage)")

	// 4. Partitioning (FNV of the usage id).
	start = time.Now()
	for _, r := range recs {
		_ = domain.UsagePartition(r.GetUsageId(), commands.DefaultUsagePartitions)
	}
	emit("partition", time.Since(start), "domain.UsagePartition")

	// 5. Booking, against a static directory view.
	booked := make([]*billingv1.BookedUsage, len(recs))
	start = time.Now()
	for i, r := range recs {
		b, rj, err := domain.BookUsage(view, r, nil)
		if err != nil || rj != nil {
			return fmt.Errorf("book: %v %v", err, rj)
		}
		booked[i] = b
	}
	emit("book", time.Since(start), "domain.BookUsage (includes one content hash) with the in-memory commands.Directory")

	// 6. Event encoding: ~31 records per event (500-record requests over 16 partitions).
	const perEvent = 31
	var events [][]byte
	start = time.Now()
	for i := 0; i < len(booked); i += perEvent {
		ev := &billingv1.Event{EventId: "e", RecordedAt: timestamppb.New(now), Actor: "ingest:nats",
			Payload: &billingv1.Event_UsageBatchRecorded{UsageBatchRecorded: &billingv1.UsageBatchRecorded{Month: batchMonth, Records: booked[i:min(i+perEvent, len(booked))]}}}
		b, err := proto.Marshal(ev)
		if err != nil {
			return err
		}
		events = append(events, b)
	}
	emit("event_encode", time.Since(start), fmt.Sprintf("proto.Marshal of UsageBatchRecorded events of %d records", perEvent))

	// 7. Event decoding (what the projector, the writer's catch-up and replay pay).
	decoded := make([]*billingv1.Event, len(events))
	start = time.Now()
	for i, b := range events {
		ev := new(billingv1.Event)
		if err := proto.Unmarshal(b, ev); err != nil {
			return err
		}
		decoded[i] = ev
	}
	emit("event_decode", time.Since(start), "proto.Unmarshal of the same events")

	// 8. The usage projection (ApplyBatch + commit) on a fresh SQLite read
	// model, with g events per transaction: the runner commits what has arrived,
	// so while ingesting live it sees about one request's events (16) per
	// transaction; 256 is its cap; "all" is one transaction.
	var recsOut []eventstore.Record
	for i, ev := range decoded {
		ev.Stream = domain.UsageStream(batchMonth, uint32(i%commands.DefaultUsagePartitions))
		recsOut = append(recsOut, eventstore.Record{Event: ev, Position: uint64(i + 1)})
	}
	for _, g := range []int{1, 16, 64, 256, len(recsOut)} {
		dir, err := os.MkdirTemp("", "ledger-bench-proj-")
		if err != nil {
			return err
		}
		db, err := readmodel.OpenSQLite(filepath.Join(dir, "rm.db"))
		if err != nil {
			return err
		}
		ctx := context.Background()
		start = time.Now()
		for i := 0; i < len(recsOut); i += g {
			chunk := recsOut[i:min(i+g, len(recsOut))]
			if err := db.WithTx(ctx, func(tx *sql.Tx) error { return projections.Usage{}.ApplyBatch(ctx, tx, chunk) }); err != nil {
				return err
			}
		}
		el := time.Since(start)
		_ = db.Close()
		_ = os.RemoveAll(dir)
		name := fmt.Sprint(g)
		if g == len(recsOut) {
			name = "all"
		}
		emit("projection_"+name+"_events_per_tx", el, fmt.Sprintf("projections.Usage.ApplyBatch + commit, %d events of ~%d records per transaction, %d billable rows", g, perEvent, rowsOf(booked)))
	}
	// 9. The usage and proforma projections behind a Runner (their row caches
	// included), g events per transaction, from an empty read model.
	for _, proj := range []projections.Projection{projections.Usage{}, projections.Proforma{}} {
		for _, g := range []int{1, 16, 64, 256} {
			el, err := runnerStage(recsOut, proj, g)
			if err != nil {
				return err
			}
			emit(fmt.Sprintf("runner_%s_%d_events_per_tx", proj.Name(), g), el,
				fmt.Sprintf("projections.Runner (BatchSize %d, no linger) of the %s projection over %d events of ~%d records, until its checkpoint is at the last",
					g, proj.Name(), len(recsOut), perEvent))
		}
	}
	return nil
}

// runnerStage times a Runner of proj over recs on a fresh SQLite read model.
func runnerStage(recs []eventstore.Record, proj projections.Projection, batch int) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "ledger-bench-runner-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := readmodel.OpenSQLite(filepath.Join(dir, "rm.db"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = db.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rn := projections.NewRunner(db, sliceStore(recs), proj, projections.RunnerConfig{BatchSize: batch, Linger: -1, IdleInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- rn.Run(ctx) }()
	if err := rn.WaitFor(ctx, recs[len(recs)-1].Position); err != nil {
		return 0, err
	}
	el := time.Since(start)
	cancel()
	<-done
	return el, nil
}

// sliceStore is a read-only eventstore.Store over records in memory, in
// position order, which it hands out as they are (no copy, no decoding):
// the projection's own cost.
type sliceStore []eventstore.Record

func (s sliceStore) Append(context.Context, ...eventstore.StreamAppend) ([]eventstore.Record, error) {
	return nil, fmt.Errorf("sliceStore is read-only")
}

func (s sliceStore) ReadStream(context.Context, string) ([]eventstore.Record, error) { return nil, nil }

func (s sliceStore) ReadAll(ctx context.Context, from uint64, _ string, fn func(eventstore.Record) error) error {
	for _, r := range s {
		if r.Position <= from {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (s sliceStore) Subscribe(ctx context.Context, from uint64, filter string, fn func(eventstore.Record) error) error {
	if err := s.ReadAll(ctx, from, filter, fn); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s sliceStore) LastPosition(context.Context) (uint64, error) {
	if len(s) == 0 {
		return 0, nil
	}
	return s[len(s)-1].Position, nil
}

func (s sliceStore) LastPositionMatching(ctx context.Context, _ string) (uint64, error) {
	return s.LastPosition(ctx)
}

// rowsOf counts the billable rows the records fall into.
func rowsOf(booked []*billingv1.BookedUsage) int {
	type key struct{ payer, source, account, service, currency string }
	rows := map[key]bool{}
	for _, b := range booked {
		r := b.GetRecord()
		rows[key{b.GetPayerAccountId(), b.GetSourceAccountId(), r.GetAccountId(), r.GetService(), r.GetCurrency()}] = true
	}
	return len(rows)
}
