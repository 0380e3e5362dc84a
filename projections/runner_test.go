package projections_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

// waitTimeout bounds every wait in these tests; a healthy run takes milliseconds.
const waitTimeout = 10 * time.Second

// running is a Runner whose Run executes in a goroutine.
type running struct {
	*projections.Runner
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs a new Runner for p until the test ends or stop is called.
func start(t *testing.T, db *readmodel.DB, s eventstore.Store, p projections.Projection, cfg projections.RunnerConfig) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rn := &running{Runner: projections.NewRunner(db, s, p, cfg), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rn.done)
		rn.err = rn.Run(ctx)
	}()
	t.Cleanup(func() { rn.stop(t) })
	return rn
}

// stop cancels the runner and returns what Run returned.
func (rn *running) stop(t *testing.T) error {
	t.Helper()
	rn.cancel()
	return rn.wait(t)
}

// wait waits for Run to return by itself and returns its error.
func (rn *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-rn.done:
		return rn.err
	case <-time.After(waitTimeout):
		t.Fatalf("runner %s did not stop", rn.Name())
		return nil
	}
}

func waitFor(t *testing.T, rn *running, pos uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := rn.WaitFor(ctx, pos); err != nil {
		t.Fatalf("WaitFor(%d): %v (checkpoint %d)", pos, err, rn.Checkpoint())
	}
}

func listTransfers(t *testing.T, db *readmodel.DB, f readmodel.TransferFilter) []*billingv1.Transfer {
	t.Helper()
	got, err := db.ListTransfers(context.Background(), f)
	if err != nil {
		t.Fatalf("ListTransfers(%+v): %v", f, err)
	}
	return got
}

func assertTransfers(t *testing.T, got, want []*billingv1.Transfer) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = proto.Equal(got[i], want[i])
	}
	if !ok {
		t.Fatalf("transfers\n got: %s\nwant: %s", dump(got), dump(want))
	}
}

func dump(ts []*billingv1.Transfer) string {
	var b strings.Builder
	for _, x := range ts {
		b.WriteString("\n  {" + prototext.MarshalOptions{}.Format(x) + "}")
	}
	return b.String()
}

func assertCheckpoint(t *testing.T, db *readmodel.DB, name string, want uint64) {
	t.Helper()
	got, err := db.Checkpoint(context.Background(), name)
	if err != nil {
		t.Fatalf("checkpoint %s: %v", name, err)
	}
	if got != want {
		t.Fatalf("stored checkpoint of %s = %d, want %d", name, got, want)
	}
}

// TestRunnerAppliesTransferEvents runs the transfers projection over a real store
// and checks the exact rows, through the API's query.
func TestRunnerAppliesTransferEvents(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		appendTo(t, s, "billing.org."+sourceX, orgRegistered(sourceX, t0)) // outside the filter
		appendTo(t, s, transferStream("rt-2"), invited("rt-2", payerA, sourceY, t0.Add(time.Minute)))
		appendTo(t, s, transferStream("rt-1"), accepted("rt-1", t0.Add(time.Hour)))
		rt3 := appendTo(t, s, transferStream("rt-3"),
			invited("rt-3", payerB, sourceZ, t0.Add(2*time.Minute)), canceled("rt-3", t0.Add(3*time.Hour)))
		rt2 := appendTo(t, s, transferStream("rt-2"), declined("rt-2", t0.Add(4*time.Hour)))
		rt1 := appendTo(t, s, transferStream("rt-1"), withdrawn("rt-1", endOct, t0.Add(48*time.Hour)))
		appendTo(t, s, "billing.org."+payerA, orgRegistered(payerA, t0)) // the last event is outside the filter too

		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: time.Hour})
		last := lastPosition(t, s)
		waitFor(t, rn, last) // returns although the last event is not a transfer event

		want := []*billingv1.Transfer{
			{
				TransferId: "rt-1", PayerAccountId: payerA, SourceAccountId: sourceX, Status: "WITHDRAWN",
				StartTime: "2026-09-01T00:00:00Z", EndTime: "2026-10-31T23:59:59.999Z", PricingPlanId: "plan-rt-1",
				ExpiresAt: "2026-08-25T09:00:00Z", Position: rt1[0].Position,
			},
			{
				TransferId: "rt-2", PayerAccountId: payerA, SourceAccountId: sourceY, Status: "DECLINED",
				StartTime: "2026-09-01T00:00:00Z", PricingPlanId: "plan-rt-2",
				ExpiresAt: "2026-08-25T09:00:00Z", Position: rt2[0].Position,
			},
			{
				TransferId: "rt-3", PayerAccountId: payerB, SourceAccountId: sourceZ, Status: "CANCELED",
				StartTime: "2026-09-01T00:00:00Z", PricingPlanId: "plan-rt-3",
				ExpiresAt: "2026-08-25T09:00:00Z", Position: rt3[1].Position,
			},
		}
		assertTransfers(t, listTransfers(t, db, readmodel.TransferFilter{}), want)
		assertTransfers(t, listTransfers(t, db, readmodel.TransferFilter{PayerAccountID: payerB}), want[2:])
		assertTransfers(t, listTransfers(t, db, readmodel.TransferFilter{SourceAccountID: sourceY, Status: "declined"}), want[1:2])
		if got := rn.Checkpoint(); got != last {
			t.Fatalf("runner checkpoint = %d, want %d", got, last)
		}
		assertCheckpoint(t, db, projections.TransfersName, last)

		// Events appended while the runner follows the store arrive too.
		rt4 := appendTo(t, s, transferStream("rt-4"), invited("rt-4", payerB, sourceX, t0.Add(5*time.Hour)))
		waitFor(t, rn, rt4[0].Position)
		got := listTransfers(t, db, readmodel.TransferFilter{Status: "REQUESTED"})
		assertTransfers(t, got, []*billingv1.Transfer{{
			TransferId: "rt-4", PayerAccountId: payerB, SourceAccountId: sourceX, Status: "REQUESTED",
			StartTime: "2026-09-01T00:00:00Z", PricingPlanId: "plan-rt-4",
			ExpiresAt: "2026-08-25T09:00:00Z", Position: rt4[0].Position,
		}})
		if err := rn.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel = %v, want context.Canceled", err)
		}
	})
}

// TestRunnerResumesAfterRestart stops a runner, appends more events, resumes on
// the same database file and checks that every event was applied exactly once:
// per-row event counts match the streams, the checkpoint is the last position, and
// the tables equal a from-scratch rebuild.
func TestRunnerResumesAfterRestart(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		path := rm.Target(t)
		cfg := projections.RunnerConfig{BatchSize: 2, IdleInterval: time.Hour}

		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		appendTo(t, s, transferStream("rt-2"), invited("rt-2", payerA, sourceY, t0.Add(time.Minute)))
		appendTo(t, s, transferStream("rt-3"), invited("rt-3", payerB, sourceZ, t0.Add(2*time.Minute)))
		appendTo(t, s, "billing.org."+sourceX, orgRegistered(sourceX, t0))
		last1 := lastPosition(t, s)

		db1, err := readmodel.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		rn1 := start(t, db1, s, projections.Transfers{}, cfg)
		waitFor(t, rn1, last1)
		if err := rn1.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("first run = %v, want context.Canceled", err)
		}
		if err := db1.Close(); err != nil {
			t.Fatal(err)
		}

		// While no runner is running: more events, some changing rows already stored.
		appendTo(t, s, transferStream("rt-1"), accepted("rt-1", t0.Add(time.Hour)))
		appendTo(t, s, transferStream("rt-2"), expired("rt-2", expiresAt))
		appendTo(t, s, transferStream("rt-4"), invited("rt-4", payerB, sourceY, t0.Add(3*time.Hour)))
		appendTo(t, s, transferStream("rt-1"), withdrawn("rt-1", endOct, t0.Add(48*time.Hour)))
		appendTo(t, s, "billing.org."+payerA, orgRegistered(payerA, t0))
		last2 := lastPosition(t, s)

		db2 := openDB(t, path)
		assertCheckpoint(t, db2, projections.TransfersName, last1) // the restart starts here
		rn2 := start(t, db2, s, projections.Transfers{}, cfg)
		waitFor(t, rn2, last2)
		// Live events after the restart, too.
		appendTo(t, s, transferStream("rt-3"), accepted("rt-3", t0.Add(50*time.Hour)))
		last3 := lastPosition(t, s)
		waitFor(t, rn2, last3)
		assertCheckpoint(t, db2, projections.TransfersName, last3)

		rows, err := db2.TransferRows(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		// Each row counts each event of its stream once.
		for _, row := range rows {
			stream, err := s.ReadStream(context.Background(), transferStream(row.TransferID))
			if err != nil {
				t.Fatal(err)
			}
			if row.EventCount != uint64(len(stream)) || row.UpdatedPosition != stream[len(stream)-1].Position {
				t.Errorf("%s: event_count %d at position %d, stream has %d events up to %d",
					row.TransferID, row.EventCount, row.UpdatedPosition, len(stream), stream[len(stream)-1].Position)
			}
		}
		wantStatus := map[string]readmodel.TransferStatus{
			"rt-1": readmodel.TransferWithdrawn, "rt-2": readmodel.TransferExpired,
			"rt-3": readmodel.TransferAccepted, "rt-4": readmodel.TransferRequested,
		}
		if len(rows) != len(wantStatus) {
			t.Fatalf("%d rows, want %d", len(rows), len(wantStatus))
		}
		for _, row := range rows {
			if row.Status != wantStatus[row.TransferID] {
				t.Errorf("%s: status %s, want %s", row.TransferID, row.Status, wantStatus[row.TransferID])
			}
		}

		// A from-scratch rebuild gives the same table (R2).
		fresh := openDB(t, rm.Target(t))
		rn3 := start(t, fresh, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: time.Hour})
		waitFor(t, rn3, last3)
		rebuilt, err := fresh.TransferRows(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rows, rebuilt) {
			t.Fatalf("resumed rows differ from a rebuild\nresumed %+v\nrebuilt %+v", rows, rebuilt)
		}
	})
}

// applyLog is a test projection that records every position it applies in a
// table whose primary key is the position: applying an event twice fails the
// transaction, so the runner would stop with an error. failAt, when set, makes it
// write the row of that event and then fail, like a crash halfway through the
// transaction.
type applyLog struct {
	name   string
	filter string
	failAt uint64
}

func (p applyLog) Name() string   { return p.name }
func (p applyLog) Filter() string { return p.filter }

func (p applyLog) Apply(ctx context.Context, tx *sql.Tx, rec eventstore.Record) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+p.name+` (position, stream) VALUES ($1, $2)`,
		int64(rec.Position), rec.Event.GetStream()); err != nil {
		return err
	}
	if rec.Position == p.failAt {
		return fmt.Errorf("injected failure at position %d", rec.Position)
	}
	return nil
}

func createApplyLog(t *testing.T, db *readmodel.DB, name string) {
	t.Helper()
	if _, err := db.SQL().Exec(`CREATE TABLE IF NOT EXISTS ` + name + ` (position BIGINT PRIMARY KEY, stream TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func appliedPositions(t *testing.T, db *readmodel.DB, name string) []uint64 {
	t.Helper()
	rows, err := db.SQL().Query(`SELECT position FROM ` + name + ` ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var p int64
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, uint64(p))
	}
	return out
}

// matchingPositions lists the positions of the store's events under filter, up to max.
func matchingPositions(t *testing.T, s eventstore.Store, filter string, max uint64) []uint64 {
	t.Helper()
	var out []uint64
	err := s.ReadAll(context.Background(), 0, filter, func(r eventstore.Record) error {
		if r.Position <= max {
			out = append(out, r.Position)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRunnerExactlyOnceAcrossRestarts stops and restarts runners at random
// moments while a writer appends, with random batch sizes, and checks that each
// matching event was applied exactly once and that rows and checkpoint always
// agree. The seed is printed on failure.
func TestRunnerExactlyOnceAcrossRestarts(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		seed := uint64(time.Now().UnixNano())
		rng := rand.New(rand.NewPCG(seed, 0))
		t.Logf("seed %d", seed)
		p := applyLog{name: "apply_log", filter: "billing.transfer.>"}
		path := rm.Target(t)

		const total = 300
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			wrng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < total; i++ {
				stream := fmt.Sprintf("billing.transfer.rt-%d", wrng.IntN(7))
				if wrng.IntN(3) == 0 {
					stream = fmt.Sprintf("billing.org.%012d", wrng.IntN(5))
				}
				ctx := context.Background()
				have, err := s.ReadStream(ctx, stream)
				if err == nil {
					_, err = s.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: uint64(len(have)),
						Events: []*billingv1.Event{orgRegistered(sourceX, t0.Add(time.Duration(i)*time.Second))}})
				}
				if err != nil {
					t.Errorf("writer: append %s: %v", stream, err) // not Fatal: this is not the test goroutine
					return
				}
				if wrng.IntN(20) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()

		for i := 0; i < 8; i++ {
			db, err := readmodel.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			createApplyLog(t, db, p.name)
			rn := start(t, db, s, p, projections.RunnerConfig{BatchSize: 1 + rng.IntN(16), IdleInterval: time.Millisecond})
			time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
			if err := rn.stop(t); !errors.Is(err, context.Canceled) {
				t.Fatalf("seed %d: restart %d: Run = %v, want context.Canceled", seed, i, err)
			}
			// Rows and checkpoint always agree: exactly the matching events up to the checkpoint.
			cp, err := db.Checkpoint(context.Background(), p.name)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := appliedPositions(t, db, p.name), matchingPositions(t, s, p.filter, cp); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d: restart %d: applied %v, want %v (checkpoint %d)", seed, i, got, want, cp)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()

		db := openDB(t, path)
		rn := start(t, db, s, p, projections.RunnerConfig{BatchSize: 5, IdleInterval: time.Hour})
		last := lastPosition(t, s)
		waitFor(t, rn, last)
		if got, want := appliedPositions(t, db, p.name), matchingPositions(t, s, p.filter, last); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: applied %v, want %v", seed, got, want)
		}
		assertCheckpoint(t, db, p.name, last)
	})
}

// TestFailedBatchCommitsNothing injects a failure after the projection has
// written the failing event's row: the transaction rolls back, so rows and
// checkpoint still agree (no row beyond the checkpoint, none missing before
// it), the runner stops with the error, and a restart applies every event once.
func TestFailedBatchCommitsNothing(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		for i := 0; i < 20; i++ {
			appendTo(t, s, fmt.Sprintf("billing.transfer.rt-%d", i%4), orgRegistered(sourceX, t0))
		}
		last := lastPosition(t, s)
		failAt := uint64(13)
		db := openDB(t, rm.Target(t))
		p := applyLog{name: "apply_log", filter: "billing.transfer.>", failAt: failAt}
		createApplyLog(t, db, p.name)

		rn := start(t, db, s, p, projections.RunnerConfig{BatchSize: 8, IdleInterval: time.Hour, Logger: quiet})
		err := rn.wait(t)
		var ae *projections.ApplyError
		if !errors.As(err, &ae) || ae.Position != failAt || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("Run = %v, want *ApplyError at position %d", err, failAt)
		}
		cp, err := db.Checkpoint(context.Background(), p.name)
		if err != nil {
			t.Fatal(err)
		}
		if cp >= failAt {
			t.Fatalf("checkpoint %d moved past the failing event %d", cp, failAt)
		}
		if got, want := appliedPositions(t, db, p.name), matchingPositions(t, s, p.filter, cp); !reflect.DeepEqual(got, want) {
			t.Fatalf("after the failure: applied %v, want %v (checkpoint %d)", got, want, cp)
		}

		p.failAt = 0
		rn2 := start(t, db, s, p, projections.RunnerConfig{IdleInterval: time.Hour})
		waitFor(t, rn2, last)
		if got, want := appliedPositions(t, db, p.name), matchingPositions(t, s, p.filter, last); !reflect.DeepEqual(got, want) {
			t.Fatalf("after the restart: applied %v, want %v", got, want)
		}
	})
}

// TestProjectionErrorStopsRunner feeds the transfers projection a history it
// cannot apply: the runner stops, logs and returns the error naming the event,
// never skips it (a restart stops at the same event), and WaitFor reports it.
func TestProjectionErrorStopsRunner(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		bad := appendTo(t, s, transferStream("rt-9"), accepted("rt-9", t0.Add(time.Hour)))[0]
		appendTo(t, s, transferStream("rt-2"), invited("rt-2", payerA, sourceY, t0))
		last := lastPosition(t, s)
		db := openDB(t, rm.Target(t))

		for attempt := 0; attempt < 2; attempt++ {
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{Logger: logger, IdleInterval: time.Hour})
			err := rn.wait(t)
			var ae *projections.ApplyError
			if !errors.As(err, &ae) {
				t.Fatalf("attempt %d: Run = %v, want *ApplyError", attempt, err)
			}
			if ae.Position != bad.Position || ae.Stream != "billing.transfer.rt-9" || ae.Projection != projections.TransfersName ||
				!strings.Contains(err.Error(), `TransferAccepted for transfer "rt-9", which was never invited`) {
				t.Fatalf("attempt %d: error = %v (%+v)", attempt, err, ae)
			}
			if !strings.Contains(logs.String(), "projection runner stopped") || !strings.Contains(logs.String(), "never invited") {
				t.Fatalf("attempt %d: error not logged; log: %s", attempt, logs.String())
			}
			if cp := rn.Checkpoint(); cp >= bad.Position {
				t.Fatalf("attempt %d: checkpoint %d passed the failing event %d", attempt, cp, bad.Position)
			}
			werr := rn.WaitFor(context.Background(), last)
			if !errors.Is(werr, projections.ErrRunnerStopped) || !errors.As(werr, &ae) {
				t.Fatalf("attempt %d: WaitFor = %v, want ErrRunnerStopped wrapping the ApplyError", attempt, werr)
			}
			for _, tr := range listTransfers(t, db, readmodel.TransferFilter{}) {
				if tr.TransferId != "rt-1" {
					t.Fatalf("attempt %d: row %s written past the failing event", attempt, tr.TransferId)
				}
			}
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestWaitFor checks that WaitFor returns once the projection has caught up,
// also when the position belongs to an event outside its filter, and respects
// its context.
func TestWaitFor(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: time.Hour})

		waitFor(t, rn, 0) // nothing to wait for

		// Blocks until a later append is applied.
		got := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			got <- rn.WaitFor(ctx, 1)
		}()
		select {
		case err := <-got:
			t.Fatalf("WaitFor(1) returned %v before anything was appended", err)
		case <-time.After(50 * time.Millisecond):
		}
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		if err := <-got; err != nil {
			t.Fatalf("WaitFor(1) = %v", err)
		}
		if n := len(listTransfers(t, db, readmodel.TransferFilter{})); n != 1 {
			t.Fatalf("WaitFor returned before the row was readable: %d rows", n)
		}

		// Positions of events outside the filter are reached too, without the idle tick.
		recs := appendTo(t, s, "billing.org."+sourceX, orgRegistered(sourceX, t0), orgRegistered(sourceX, t0))
		waitFor(t, rn, recs[1].Position)
		assertCheckpoint(t, db, projections.TransfersName, recs[1].Position)

		// Context cancellation: a position the store never reaches.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := rn.WaitFor(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitFor(1000) = %v, want context.DeadlineExceeded", err)
		}
		ctx2, cancel2 := context.WithCancel(context.Background())
		cancel2()
		if err := rn.WaitFor(ctx2, 1000); !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitFor with a canceled context = %v, want context.Canceled", err)
		}

		// After the runner stops, WaitFor answers at once.
		if err := rn.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
		if err := rn.WaitFor(context.Background(), 1000); !errors.Is(err, projections.ErrRunnerStopped) || !errors.Is(err, context.Canceled) {
			t.Fatalf("WaitFor after stop = %v, want ErrRunnerStopped wrapping context.Canceled", err)
		}
		if err := rn.WaitFor(context.Background(), 1); err != nil {
			t.Fatalf("WaitFor of a reached position after stop = %v", err)
		}
	})
}

// TestIdleRunnerAdvancesCheckpoint: with no WaitFor at all, an idle runner moves
// its stored checkpoint past events outside its filter on its idle tick.
func TestIdleRunnerAdvancesCheckpoint(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		appendTo(t, s, "billing.org."+sourceX, orgRegistered(sourceX, t0))
		last := lastPosition(t, s)
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: 5 * time.Millisecond})
		deadline := time.Now().Add(waitTimeout)
		for rn.Checkpoint() < last {
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint stuck at %d, want %d", rn.Checkpoint(), last)
			}
			time.Sleep(2 * time.Millisecond)
		}
		assertCheckpoint(t, db, projections.TransfersName, last)
	})
}

// TestKickAdvancesCheckpointAtOnce: Kick makes an idle runner move its
// checkpoint past events outside its filter without waiting for its idle tick
// (a query in another process asks this over NATS).
func TestKickAdvancesCheckpointAtOnce(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: time.Hour})
		waitFor(t, rn, 1)
		appendTo(t, s, "billing.org."+sourceX, orgRegistered(sourceX, t0))
		last := lastPosition(t, s)
		rn.Kick()
		deadline := time.Now().Add(waitTimeout)
		for rn.Checkpoint() < last {
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint stuck at %d, want %d", rn.Checkpoint(), last)
			}
			time.Sleep(2 * time.Millisecond)
		}
		assertCheckpoint(t, db, projections.TransfersName, last)
	})
}

// TestSecondRunnerCannotDoubleApply: when the stored checkpoint moves under a
// runner (another runner on the same database applied those events), its next
// commit fails with readmodel.ErrCheckpointMoved instead of applying them again.
func TestSecondRunnerCannotDoubleApply(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Transfers{}, projections.RunnerConfig{IdleInterval: time.Hour, Logger: quiet})
		waitFor(t, rn, 1)
		if _, err := db.SQL().Exec(`UPDATE checkpoints SET position = 1000 WHERE projection = $1`, projections.TransfersName); err != nil {
			t.Fatal(err)
		}
		appendTo(t, s, transferStream("rt-1"), accepted("rt-1", t0.Add(time.Hour)))
		if err := rn.wait(t); !errors.Is(err, readmodel.ErrCheckpointMoved) {
			t.Fatalf("Run = %v, want ErrCheckpointMoved", err)
		}
		got := listTransfers(t, db, readmodel.TransferFilter{})
		if len(got) != 1 || got[0].Status != "REQUESTED" {
			t.Fatalf("rows = %s, want rt-1 still REQUESTED", dump(got))
		}
	})
}

// TestRunTwice: a Runner is used once.
func TestRunTwice(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		db := openDB(t, rm.Target(t))
		rn := projections.NewRunner(db, s, projections.Transfers{}, projections.RunnerConfig{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := rn.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("first Run = %v, want context.Canceled", err)
		}
		if err := rn.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
			t.Fatalf("second Run = %v", err)
		}
	})
}

// quiet is a logger for runs that are meant to fail.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
