package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

func open(t *testing.T, path string) *readmodel.DB {
	t.Helper()
	db, err := readmodel.OpenSQLite(path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func tempPath(t *testing.T) string { return filepath.Join(t.TempDir(), "rm.db") }

// TestOpenSQLite checks the SQLite connection settings, that a path with a
// query is refused and that ":memory:" works.
func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	db := open(t, tempPath(t))
	ctx := context.Background()
	pragma := func(name string) string {
		var v string
		if err := db.SQL().QueryRowContext(ctx, "PRAGMA "+name).Scan(&v); err != nil {
			t.Fatalf("PRAGMA %s: %v", name, err)
		}
		return v
	}
	for name, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000", "synchronous": "1"} {
		if got := pragma(name); got != want {
			t.Errorf("PRAGMA %s = %s, want %s", name, got, want)
		}
	}
	if _, err := readmodel.OpenSQLite(filepath.Join(t.TempDir(), "a?b.db")); err == nil {
		t.Fatal("a path with '?' was accepted")
	}
	mem := open(t, ":memory:")
	if _, err := mem.Checkpoint(ctx, "x"); err != nil {
		t.Fatalf(":memory: database: %v", err)
	}
	if mem.Backend() != "sqlite" {
		t.Fatalf("Backend() = %q", mem.Backend())
	}
}

// reopen opens target again, closed when the test ends.
func reopen(t *testing.T, target string) *readmodel.DB {
	t.Helper()
	db, err := readmodel.Open(context.Background(), target)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// TestOpenMigratesOnce: migrations run once and are recorded, so reopening an
// existing database is a no-op; two processes opening a new database at the
// same moment apply each migration once.
func TestOpenMigratesOnce(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		ctx := context.Background()
		versions := func(db *readmodel.DB) []int {
			rows, err := db.SQL().QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var out []int
			for rows.Next() {
				var v int
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				out = append(out, v)
			}
			return out
		}
		target := b.Target(t)
		// Concurrent first opens.
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, err := readmodel.Open(ctx, target)
				if err == nil {
					err = db.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent open %d: %v", i, err)
			}
		}
		db := reopen(t, target)
		if db.Backend() != string(b) {
			t.Fatalf("Backend() = %q, want %q", db.Backend(), b)
		}
		if got := versions(db); len(got) != readmodel.SchemaVersion || got[len(got)-1] != readmodel.SchemaVersion {
			t.Fatalf("schema_migrations versions = %v, want 1..%d", got, readmodel.SchemaVersion)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db2 := reopen(t, target)
		if got := versions(db2); len(got) != readmodel.SchemaVersion {
			t.Fatalf("after reopening: versions = %v", got)
		}
	})
}

// TestOpenRefusesNewerSchema: a binary never writes to a schema it does not know.
func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		target := b.Target(t)
		db := reopen(t, target)
		if _, err := db.SQL().Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 'x')`,
			readmodel.SchemaVersion+1); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		db2, err := readmodel.Open(context.Background(), target)
		if err == nil {
			_ = db2.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
			t.Fatalf("Open = %v, want a newer-schema error", err)
		}
	})
}

// TestCheckpoints covers reading and the compare-and-set advance.
func TestCheckpoints(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		if cp, err := db.Checkpoint(ctx, "p"); err != nil || cp != 0 {
			t.Fatalf("unknown projection: checkpoint %d, %v; want 0, nil", cp, err)
		}
		advance := func(from, to uint64) error {
			return db.WithTx(ctx, func(tx *sql.Tx) error { return readmodel.AdvanceCheckpoint(ctx, tx, "p", from, to) })
		}
		if err := advance(0, 5); err != nil {
			t.Fatalf("first advance: %v", err)
		}
		if err := advance(5, 9); err != nil {
			t.Fatalf("second advance: %v", err)
		}
		if err := advance(5, 12); !errors.Is(err, readmodel.ErrCheckpointMoved) {
			t.Fatalf("advance from a stale position = %v, want ErrCheckpointMoved", err)
		}
		if err := advance(0, 12); !errors.Is(err, readmodel.ErrCheckpointMoved) {
			t.Fatalf("advance from 0 over an existing checkpoint = %v, want ErrCheckpointMoved", err)
		}
		if err := advance(9, 9); err == nil {
			t.Fatal("advance to the same position was accepted")
		}
		if cp, err := db.Checkpoint(ctx, "p"); err != nil || cp != 9 {
			t.Fatalf("checkpoint %d, %v; want 9", cp, err)
		}
		// A failed transaction leaves the checkpoint where it was.
		boom := errors.New("boom")
		err := db.WithTx(ctx, func(tx *sql.Tx) error {
			if err := readmodel.AdvanceCheckpoint(ctx, tx, "p", 9, 20); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("WithTx = %v, want boom", err)
		}
		if cp, _ := db.Checkpoint(ctx, "p"); cp != 9 {
			t.Fatalf("checkpoint after a rolled-back advance = %d, want 9", cp)
		}
	})
}

var (
	start = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	end   = time.Date(2026, 10, 31, 23, 59, 59, 999_000_000, time.UTC)
	exp   = time.Date(2026, 8, 25, 9, 0, 0, 0, time.UTC)
	upd   = time.Date(2026, 8, 10, 9, 0, 0, 123_456_789, time.UTC)
)

func seed(t *testing.T, db *readmodel.DB, rows ...*readmodel.TransferRow) {
	t.Helper()
	err := db.WithTx(context.Background(), func(tx *sql.Tx) error {
		for _, r := range rows {
			if err := readmodel.PutTransfer(context.Background(), tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func row(id, payer, source string, st readmodel.TransferStatus, pos uint64) *readmodel.TransferRow {
	return &readmodel.TransferRow{
		TransferID: id, PayerAccountID: payer, SourceAccountID: source, Status: st,
		StartTime: start, ExpiresAt: exp, PricingPlanID: "plan-" + id, Notes: "n",
		EventCount: 1, UpdatedPosition: pos, UpdatedAt: upd,
	}
}

// TestTransferRowRoundTrip: every column survives storage, NULLs included, and
// the API rendering is RFC 3339 UTC.
func TestTransferRowRoundTrip(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		withdrawn := row("rt-1", "111111111111", "333333333333", readmodel.TransferWithdrawn, 7)
		withdrawn.EndTime, withdrawn.EventCount = end, 3
		requested := row("rt-2", "111111111111", "444444444444", readmodel.TransferRequested, 8)
		requested.ExpiresAt, requested.PricingPlanID = time.Time{}, ""
		seed(t, db, withdrawn, requested)

		err := db.WithTx(ctx, func(tx *sql.Tx) error {
			for _, want := range []*readmodel.TransferRow{withdrawn, requested} {
				got, err := readmodel.GetTransfer(ctx, tx, want.TransferID)
				if err != nil {
					return err
				}
				if *got != *want {
					t.Errorf("round trip\n got %+v\nwant %+v", got, want)
				}
			}
			missing, err := readmodel.GetTransfer(ctx, tx, "rt-none")
			if missing != nil || err != nil {
				t.Errorf("missing row: %+v, %v; want nil, nil", missing, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		var endText sql.NullString
		var startText string
		if err := db.SQL().QueryRow(`SELECT start_time, end_time FROM transfers WHERE transfer_id = 'rt-1'`).Scan(&startText, &endText); err != nil {
			t.Fatal(err)
		}
		if startText != "2026-09-01T00:00:00.000000000Z" || endText.String != "2026-10-31T23:59:59.999000000Z" {
			t.Fatalf("stored times %q, %q", startText, endText.String)
		}
		var nullEnd sql.NullString
		if err := db.SQL().QueryRow(`SELECT end_time FROM transfers WHERE transfer_id = 'rt-2'`).Scan(&nullEnd); err != nil || nullEnd.Valid {
			t.Fatalf("end_time of an open-ended transfer = %+v, %v; want NULL", nullEnd, err)
		}

		got, err := db.ListTransfers(ctx, readmodel.TransferFilter{})
		if err != nil {
			t.Fatal(err)
		}
		want := []*billingv1.Transfer{
			{TransferId: "rt-1", PayerAccountId: "111111111111", SourceAccountId: "333333333333", Status: "WITHDRAWN",
				StartTime: "2026-09-01T00:00:00Z", EndTime: "2026-10-31T23:59:59.999Z", PricingPlanId: "plan-rt-1",
				ExpiresAt: "2026-08-25T09:00:00Z", Position: 7},
			{TransferId: "rt-2", PayerAccountId: "111111111111", SourceAccountId: "444444444444", Status: "REQUESTED",
				StartTime: "2026-09-01T00:00:00Z", Position: 8},
		}
		if len(got) != len(want) {
			t.Fatalf("%d transfers, want %d", len(got), len(want))
		}
		for i := range got {
			if !proto.Equal(got[i], want[i]) {
				t.Errorf("transfer %d\n got %v\nwant %v", i, got[i], want[i])
			}
		}
	})
}

// TestStoredTimeOrder: the stored text sorts like the times it holds.
func TestStoredTimeOrder(t *testing.T) {
	t.Parallel()
	times := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 100_000_000, time.UTC),
		time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)), // = 00:00 UTC
		time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	texts := make([]string, len(times))
	for i, tm := range times {
		texts[i] = readmodel.FormatStoredTime(tm)
		back, err := readmodel.ParseStoredTime(texts[i])
		if err != nil || !back.Equal(tm) {
			t.Fatalf("round trip of %v: %v, %v", tm, back, err)
		}
	}
	byText := append([]time.Time(nil), times...)
	sort.SliceStable(byText, func(i, j int) bool {
		return readmodel.FormatStoredTime(byText[i]) < readmodel.FormatStoredTime(byText[j])
	})
	byTime := append([]time.Time(nil), times...)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].Before(byTime[j]) })
	for i := range byText {
		if !byText[i].Equal(byTime[i]) {
			t.Fatalf("text order %v differs from time order %v", byText, byTime)
		}
	}
	if got := readmodel.FormatAPITime(time.Date(2026, 9, 1, 2, 0, 0, 0, time.FixedZone("CEST", 7200))); got != "2026-09-01T00:00:00Z" {
		t.Fatalf("FormatAPITime = %s", got)
	}
}

// TestListTransfersFilters checks each filter, their combination, the order,
// and the errors for bad values.
func TestListTransfersFilters(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		const pa, pb, sx, sy = "111111111111", "222222222222", "333333333333", "444444444444"
		seed(t, db,
			row("rt-c", pa, sx, readmodel.TransferAccepted, 3),
			row("rt-a", pa, sy, readmodel.TransferRequested, 1),
			row("rt-b", pb, sx, readmodel.TransferRequested, 2),
			row("rt-d", pb, sy, readmodel.TransferDeclined, 4),
		)
		cases := []struct {
			name   string
			filter readmodel.TransferFilter
			want   []string
		}{
			{"all, ordered by id", readmodel.TransferFilter{}, []string{"rt-a", "rt-b", "rt-c", "rt-d"}},
			{"payer", readmodel.TransferFilter{PayerAccountID: pa}, []string{"rt-a", "rt-c"}},
			{"source", readmodel.TransferFilter{SourceAccountID: sx}, []string{"rt-b", "rt-c"}},
			{"status", readmodel.TransferFilter{Status: "REQUESTED"}, []string{"rt-a", "rt-b"}},
			{"status in lower case", readmodel.TransferFilter{Status: "declined"}, []string{"rt-d"}},
			{"payer and status", readmodel.TransferFilter{PayerAccountID: pb, Status: "REQUESTED"}, []string{"rt-b"}},
			{"all three", readmodel.TransferFilter{PayerAccountID: pa, SourceAccountID: sx, Status: "ACCEPTED"}, []string{"rt-c"}},
			{"no match", readmodel.TransferFilter{Status: "WITHDRAWN"}, []string{}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := db.ListTransfers(context.Background(), tc.filter)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, tr := range got {
					ids = append(ids, tr.TransferId)
				}
				if strings.Join(ids, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("ids %v, want %v", ids, tc.want)
				}
			})
		}

		bad := []struct {
			name   string
			filter readmodel.TransferFilter
			want   string
		}{
			{"unknown status", readmodel.TransferFilter{Status: "PENDING"}, `status "PENDING" is not a transfer status`},
			{"short payer", readmodel.TransferFilter{PayerAccountID: "1234"}, `payer_account_id "1234" is not a 12-digit account id`},
			{"letters in source", readmodel.TransferFilter{SourceAccountID: "33333333333x"}, `source_account_id "33333333333x" is not a 12-digit account id`},
		}
		for _, tc := range bad {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				_, err := db.ListTransfers(context.Background(), tc.filter)
				if !errors.Is(err, readmodel.ErrInvalidFilter) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error = %v, want ErrInvalidFilter naming %q", err, tc.want)
				}
				if domain.CodeOf(err) != domain.CodeInvalidArgument {
					t.Fatalf("code = %q, want %q", domain.CodeOf(err), domain.CodeInvalidArgument)
				}
			})
		}
	})
}

// TestTransfersSchemaRejectsBadStatus: the table's CHECK guards the status vocabulary.
func TestTransfersSchemaRejectsBadStatus(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		err := db.WithTx(context.Background(), func(tx *sql.Tx) error {
			return readmodel.PutTransfer(context.Background(), tx, row("rt-x", "111111111111", "333333333333", "PENDING", 1))
		})
		if err == nil {
			t.Fatal("a row with status PENDING was stored")
		}
	})
}

// TestListTransfersResponse reads rows and checkpoint from one snapshot, and does
// not wait for a writer holding its transaction open (WAL readers never block).
func TestListTransfersResponse(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		ctx := context.Background()
		seed(t, db, row("rt-1", "111111111111", "333333333333", readmodel.TransferRequested, 4))
		if err := db.WithTx(ctx, func(tx *sql.Tx) error { return readmodel.AdvanceCheckpoint(ctx, tx, "transfers", 0, 6) }); err != nil {
			t.Fatal(err)
		}

		// A writer is in the middle of a transaction that changes both.
		inTx, release, writerDone := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			writerDone <- db.WithTx(ctx, func(tx *sql.Tx) error {
				if err := readmodel.PutTransfer(ctx, tx, row("rt-2", "111111111111", "444444444444", readmodel.TransferRequested, 7)); err != nil {
					return err
				}
				if err := readmodel.AdvanceCheckpoint(ctx, tx, "transfers", 6, 7); err != nil {
					return err
				}
				close(inTx)
				<-release
				return nil
			})
		}()
		<-inTx
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := db.ListTransfersResponse(rctx, "transfers", readmodel.TransferFilter{})
		if err != nil {
			t.Fatalf("read during a write: %v", err)
		}
		if len(resp.Transfers) != 1 || resp.Transfers[0].TransferId != "rt-1" || resp.Checkpoint != 6 {
			t.Fatalf("snapshot during the write = %v, want rt-1 at checkpoint 6", resp)
		}
		close(release)
		if err := <-writerDone; err != nil {
			t.Fatal(err)
		}
		resp, err = db.ListTransfersResponse(ctx, "transfers", readmodel.TransferFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Transfers) != 2 || resp.Checkpoint != 7 {
			t.Fatalf("after the write = %v, want 2 transfers at checkpoint 7", resp)
		}
		if _, err := db.ListTransfersResponse(ctx, "transfers", readmodel.TransferFilter{Status: "nope"}); !errors.Is(err, readmodel.ErrInvalidFilter) {
			t.Fatalf("bad filter = %v, want ErrInvalidFilter", err)
		}
	})
}

// TestExpiredInvitations: only REQUESTED rows whose deadline is at or before now
// are the sweeper's candidates (T3).
func TestExpiredInvitations(t *testing.T) {
	t.Parallel()
	readmodeltest.Each(t, func(t *testing.T, b readmodeltest.Backend) {
		db := b.Open(t)
		late := row("rt-late", "111111111111", "333333333333", readmodel.TransferRequested, 1)
		late.ExpiresAt = time.Date(2026, 8, 25, 12, 0, 0, 0, time.UTC)
		onTime := row("rt-open", "111111111111", "444444444444", readmodel.TransferRequested, 2)
		onTime.ExpiresAt = time.Date(2026, 8, 25, 12, 0, 0, 1, time.UTC)
		accepted := row("rt-acc", "222222222222", "555555555555", readmodel.TransferAccepted, 3)
		accepted.ExpiresAt = late.ExpiresAt
		seed(t, db, late, onTime, accepted)
		got, err := db.ExpiredInvitations(context.Background(), late.ExpiresAt)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != "rt-late" {
			t.Fatalf("expired %v, want [rt-late]", got)
		}
	})
}
