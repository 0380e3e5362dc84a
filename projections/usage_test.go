package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
)

const accountZ1 = "555555555501"

func reportBillable(t *testing.T, db *readmodel.DB, month, payer, source string) *billingv1.ReportBillableResponse {
	t.Helper()
	got, err := db.ReportBillable(context.Background(), month, payer, source)
	if err != nil {
		t.Fatalf("ReportBillable(%s, %q, %q): %v", month, payer, source, err)
	}
	return got
}

func assertProto(t *testing.T, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s\n got: %s\nwant: %s", what, prototext.Format(got), prototext.Format(want))
	}
}

func billableRow(month, payer, source, account, service, cost, qty string, n uint64) *billingv1.BillableRow {
	return &billingv1.BillableRow{Month: month, PayerAccountId: payer, SourceAccountId: source, AccountId: account,
		Service: service, BilledCost: cost, UsageQuantity: qty, RecordCount: n, Currency: "USD"}
}

// TestUsageBillable (R1) projects hand-built batches over several payers,
// sources, accounts, services, partitions and months, and checks the exact rows
// and totals ("0.80" + "0.096" + "-0.5" = "0.396"), with one event per
// transaction and with the runner's batches.
func TestUsageBillable(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		ec2, s3 := "AmazonEC2", "AmazonS3"
		appendUsage(t, s, sep, 0, t0, usageBatch{records: []*billingv1.BookedUsage{
			booked(sep, payerA, sourceX, usageRecord("u-1", accountX1, ec2, "0.80", "10")),
			booked(sep, payerA, sourceX, usageRecord("u-2", accountX1, ec2, "0.096", "1")),
			booked(sep, payerA, sourceX, usageRecord("u-3", accountX2, s3, "1.5", "100.5")),
			booked(sep, payerB, sourceY, usageRecord("u-4", accountY1, ec2, "2", "3")),
		}})
		appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0)) // outside the filter
		appendUsage(t, s, sep, 1, t0.Add(time.Hour), usageBatch{records: []*billingv1.BookedUsage{
			booked(sep, payerA, sourceX, usageRecord("u-5", accountX1, ec2, "-0.5", "0")),
			booked(sep, payerA, sourceZ, usageRecord("u-6", accountZ1, ec2, "0.000001", "0.25")),
			booked(sep, payerB, sourceY, usageRecord("u-7", accountY1, s3, "3.10", "7.000")),
		}})
		appendUsage(t, s, oct, 0, t0.Add(2*time.Hour), usageBatch{records: []*billingv1.BookedUsage{
			booked(oct, payerA, sourceX, usageRecord("u-8", accountX1, ec2, "100", "1")),
		}})
		appendUsage(t, s, sep, 0, t0.Add(3*time.Hour), usageBatch{}) // an empty batch changes nothing
		last := lastPosition(t, s)

		rows := []*billingv1.BillableRow{
			billableRow(sep, payerA, sourceX, accountX1, ec2, "0.396", "11", 3),
			billableRow(sep, payerA, sourceX, accountX2, s3, "1.5", "100.5", 1),
			billableRow(sep, payerA, sourceZ, accountZ1, ec2, "0.000001", "0.25", 1),
			billableRow(sep, payerB, sourceY, accountY1, ec2, "2", "3", 1),
			billableRow(sep, payerB, sourceY, accountY1, s3, "3.1", "7", 1),
		}
		for _, batchSize := range []int{1, projections.DefaultBatchSize} {
			t.Run(fmt.Sprintf("batch size %d", batchSize), func(t *testing.T) {
				db := openDB(t, rm.Target(t))
				rn := start(t, db, s, projections.Usage{}, projections.RunnerConfig{BatchSize: batchSize, IdleInterval: time.Hour})
				waitFor(t, rn, last)
				cases := []struct {
					month, payer, source string
					want                 *billingv1.ReportBillableResponse
				}{
					{sep, "", "", &billingv1.ReportBillableResponse{Rows: rows, Total: "6.996001"}},
					{sep, payerB, "", &billingv1.ReportBillableResponse{Rows: rows[3:], Total: "5.1"}},
					{sep, "", sourceX, &billingv1.ReportBillableResponse{Rows: rows[:2], Total: "1.896"}},
					{sep, payerA, sourceZ, &billingv1.ReportBillableResponse{Rows: rows[2:3], Total: "0.000001"}},
					{oct, "", "", &billingv1.ReportBillableResponse{
						Rows: []*billingv1.BillableRow{billableRow(oct, payerA, sourceX, accountX1, ec2, "100", "1", 1)}, Total: "100"}},
					{"2026-11", "", "", &billingv1.ReportBillableResponse{Total: "0"}},
				}
				for _, c := range cases {
					c.want.Checkpoint = last
					assertProto(t, fmt.Sprintf("ReportBillable(%s, %q, %q)", c.month, c.payer, c.source),
						reportBillable(t, db, c.month, c.payer, c.source), c.want)
				}
				assertCheckpoint(t, db, projections.UsageName, last)
			})
		}
	})
}

// TestReportBillableRejectsBadFilters: bad filter values are INVALID_ARGUMENT.
func TestReportBillableRejectsBadFilters(t *testing.T) {
	t.Parallel()
	db := openDB(t, tempDBPath(t))
	ctx := context.Background()
	for _, c := range [][3]string{{"", "", ""}, {"2026-13", "", ""}, {"2026-9", "", ""}, {sep, "12", ""}, {sep, "", "abc"}} {
		_, err := db.ReportBillable(ctx, c[0], c[1], c[2])
		if !errors.Is(err, readmodel.ErrInvalidFilter) || domain.CodeOf(err) != domain.CodeInvalidArgument {
			t.Errorf("ReportBillable(%q, %q, %q) = %v, want an invalid filter", c[0], c[1], c[2], err)
		}
	}
	if _, err := db.MonthDigest(ctx, "September"); !errors.Is(err, readmodel.ErrInvalidFilter) {
		t.Errorf("MonthDigest(September) = %v, want an invalid filter", err)
	}
	if _, err := db.ListDeadLetters(ctx, "NOPE"); !errors.Is(err, readmodel.ErrInvalidFilter) {
		t.Errorf("ListDeadLetters(NOPE) = %v, want an invalid filter", err)
	}
}

func deadLetterIDs(l *billingv1.ListDeadLettersResponse) []string {
	var ids []string
	for _, d := range l.GetDeadLetters() {
		ids = append(ids, d.GetDeadLetterId())
	}
	return ids
}

func rejectedIDs(rs []*billingv1.UsageRejected) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.GetDeadLetterId())
	}
	return ids
}

// TestUsageDeadLetters (U4): rejected records are listed oldest first with
// counts per reason, returned exactly for a redrive, resolved by redriven ids
// (also twice, as when two redrives race); an unknown redriven id stops the
// runner; live and replay digests agree per month, including a dead letter of
// September resolved in October.
func TestUsageDeadLetters(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		ctx := context.Background()
		bad := usageRecord("u-bad", "999999999999", "AmazonEC2", "1.25", "2")
		negative := usageRecord("u-neg", accountX1, "AmazonEC2", "1", "-1")
		raw := []byte("{\"usage_id\": \xff oops\x00")
		dl1 := rejectedRecord("dl-1", domain.ReasonUnknownAccount, bad)
		dl2 := rejectedRaw("dl-2", raw)
		dl3 := rejectedRecord("dl-3", domain.ReasonInvalidQuantity, negative)
		dl4 := rejectedRecord("dl-4", domain.ReasonUnknownAccount, usageRecord("u-oct", "999999999998", "AmazonS3", "3", "1"))
		dl5 := rejectedRecord("dl-5", domain.ReasonUnknownAccount, usageRecord("u-still", "999999999997", "AmazonS3", "4", "1"))

		appendUsage(t, s, sep, 0, t0, usageBatch{
			records:  []*billingv1.BookedUsage{booked(sep, payerA, sourceX, usageRecord("u-1", accountX1, "AmazonEC2", "0.5", "1"))},
			rejected: []*billingv1.UsageRejected{dl1, dl2},
		})
		appendUsage(t, s, sep, 1, t0.Add(time.Minute), usageBatch{rejected: []*billingv1.UsageRejected{dl3}})
		appendUsage(t, s, oct, 1, t0.Add(2*time.Minute), usageBatch{rejected: []*billingv1.UsageRejected{dl4}})
		db := openDB(t, rm.Target(t))
		rn := start(t, db, s, projections.Usage{}, projections.RunnerConfig{BatchSize: 2, IdleInterval: time.Hour})
		waitFor(t, rn, lastPosition(t, s))

		list, err := db.ListDeadLetters(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := deadLetterIDs(list), []string{"dl-1", "dl-2", "dl-3", "dl-4"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("dead letters %v, want %v (oldest first)", got, want)
		}
		if got, want := fmt.Sprint(list.GetByReason()), "map[INVALID_QUANTITY:1 MALFORMED:1 UNKNOWN_ACCOUNT:2]"; got != want {
			t.Fatalf("by_reason %s, want %s", got, want)
		}
		d1 := list.GetDeadLetters()[0]
		if d1.GetReason() != domain.ReasonUnknownAccount || d1.GetMessage() != "why dl-1" || d1.GetUsageId() != "u-bad" ||
			d1.GetOrigin() != "test" || d1.GetRecordedAt() != "2026-08-10T09:00:00Z" {
			t.Fatalf("dl-1 listed as %s", prototext.Format(d1))
		}
		var fromPayload billingv1.UsageRecord
		if err := protojson.Unmarshal([]byte(d1.GetPayload()), &fromPayload); err != nil || !proto.Equal(&fromPayload, bad) ||
			!strings.Contains(d1.GetPayload(), `"usage_id"`) {
			t.Fatalf("dl-1 payload %s (%v) is not the record as JSON with proto names", d1.GetPayload(), err)
		}
		if p := list.GetDeadLetters()[1].GetPayload(); !utf8.ValidString(p) || !strings.Contains(p, "oops") || list.GetDeadLetters()[1].GetUsageId() != "" {
			t.Fatalf("dl-2 payload %q", p)
		}

		filtered, err := db.ListDeadLetters(ctx, "unknown_account")
		if err != nil {
			t.Fatal(err)
		}
		if got := deadLetterIDs(filtered); fmt.Sprint(got) != "[dl-1 dl-4]" || len(filtered.GetByReason()) != 3 {
			t.Fatalf("UNKNOWN_ACCOUNT: %v, by_reason %v", got, filtered.GetByReason())
		}

		// DeadLetterRecords returns the entries exactly as recorded, raw bytes included.
		all, err := db.DeadLetterRecords(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []*billingv1.UsageRejected{dl1, dl2, dl3, dl4} {
			if i >= len(all) || !proto.Equal(all[i], want) {
				t.Fatalf("DeadLetterRecords()[%d] = %v, want %s", i, all, prototext.Format(want))
			}
		}
		some, err := db.DeadLetterRecords(ctx, []string{"dl-3", "dl-1", "dl-3"})
		if err != nil || fmt.Sprint(rejectedIDs(some)) != "[dl-1 dl-3]" {
			t.Fatalf("DeadLetterRecords(dl-3, dl-1) = %v, %v; want dl-1, dl-3", rejectedIDs(some), err)
		}
		_, err = db.DeadLetterRecords(ctx, []string{"dl-1", "dl-404"})
		if !errors.Is(err, readmodel.ErrUnknownDeadLetter) || domain.CodeOf(err) != domain.CodeNotFound || !strings.Contains(err.Error(), `"dl-404"`) {
			t.Fatalf("DeadLetterRecords(unknown) = %v", err)
		}

		// Redrives: dl-1 fixed (its account registered) in September, dl-4 in
		// October together with a record still failing; then dl-1 again (a
		// racing redrive), in October.
		fixed := proto.Clone(bad).(*billingv1.UsageRecord)
		fixed.AccountId = accountX2
		appendUsage(t, s, sep, 0, t0.Add(time.Hour), usageBatch{
			records:  []*billingv1.BookedUsage{booked(sep, payerA, sourceX, fixed)},
			redriven: []string{"dl-1"},
		})
		appendUsage(t, s, oct, 0, t0.Add(2*time.Hour), usageBatch{
			records:  []*billingv1.BookedUsage{booked(oct, payerA, sourceX, usageRecord("u-oct", accountX1, "AmazonS3", "3", "1"))},
			rejected: []*billingv1.UsageRejected{dl5},
			redriven: []string{"dl-4"},
		})
		appendUsage(t, s, oct, 3, t0.Add(3*time.Hour), usageBatch{redriven: []string{"dl-1"}})
		waitFor(t, rn, lastPosition(t, s))

		list, err = db.ListDeadLetters(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := deadLetterIDs(list); fmt.Sprint(got) != "[dl-2 dl-3 dl-5]" {
			t.Fatalf("after the redrives: %v, want dl-2 dl-3 dl-5", got)
		}
		if got, want := fmt.Sprint(list.GetByReason()), "map[INVALID_QUANTITY:1 MALFORMED:1 UNKNOWN_ACCOUNT:1]"; got != want {
			t.Fatalf("by_reason %s, want %s", got, want)
		}
		_, err = db.DeadLetterRecords(ctx, []string{"dl-1"})
		if !errors.Is(err, readmodel.ErrDeadLetterResolved) || domain.CodeOf(err) != domain.CodeFailedPrecondition || !strings.Contains(err.Error(), `"dl-1"`) {
			t.Fatalf("DeadLetterRecords(resolved) = %v", err)
		}
		if all, err = db.DeadLetterRecords(ctx, nil); err != nil || fmt.Sprint(rejectedIDs(all)) != "[dl-2 dl-3 dl-5]" {
			t.Fatalf("DeadLetterRecords() = %v, %v", rejectedIDs(all), err)
		}
		assertProto(t, "September billable", reportBillable(t, db, sep, "", ""), &billingv1.ReportBillableResponse{
			Rows: []*billingv1.BillableRow{
				billableRow(sep, payerA, sourceX, accountX1, "AmazonEC2", "0.5", "1", 1),
				billableRow(sep, payerA, sourceX, accountX2, "AmazonEC2", "1.25", "2", 1),
			},
			Total: "1.75", Checkpoint: lastPosition(t, s),
		})

		// Dead letters count in the month whose streams recorded them,
		// resolutions in the month whose streams recorded the redrive.
		for month, want := range map[string]string{sep: "recorded=3 resolved=1", oct: "recorded=2 resolved=2"} {
			live, err := db.MonthDigest(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			totals := live.GetDigests()[1].GetTotals()
			if got := fmt.Sprintf("recorded=%s resolved=%s", totals["recorded"], totals["resolved"]); got != want {
				t.Errorf("%s dead letter totals %s, want %s", month, got, want)
			}
			replay, err := projections.ReplayMonth(ctx, s, month, time.Time{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			assertProto(t, month+" replay", replay, live)
		}

		// A redrive of an id never recorded means the events are out of order:
		// the runner stops at that event and commits nothing of it.
		cp := rn.Checkpoint()
		badRec := appendUsage(t, s, oct, 2, t0.Add(4*time.Hour), usageBatch{
			records:  []*billingv1.BookedUsage{booked(oct, payerA, sourceX, usageRecord("u-x", accountX1, "AmazonS3", "7", "1"))},
			redriven: []string{"dl-404"},
		})
		err = rn.wait(t)
		var ae *projections.ApplyError
		if !errors.As(err, &ae) || ae.Position != badRec.Position || !errors.Is(err, readmodel.ErrUnknownDeadLetter) {
			t.Fatalf("runner stopped with %v, want an ApplyError at position %d wrapping ErrUnknownDeadLetter", err, badRec.Position)
		}
		assertCheckpoint(t, db, projections.UsageName, cp)
		if got := reportBillable(t, db, oct, "", "").GetTotal(); got != "3" {
			t.Fatalf("October total %s after the failed batch, want 3", got)
		}
		// The live tables still match a replay up to their checkpoint.
		live, err := db.MonthDigest(ctx, oct)
		if err != nil {
			t.Fatal(err)
		}
		replay, err := projections.ReplayMonthWith(ctx, s, oct, projections.ReplayOptions{UpTo: live.GetCheckpoint()})
		if err != nil {
			t.Fatal(err)
		}
		assertProto(t, "October replay up to the checkpoint", replay, live)
	})
}

// randomDecimal is a decimal string with up to 6 fraction digits, trailing
// zeros kept, sometimes negative (credits).
func randomDecimal(rng *rand.Rand, negative bool) string {
	s := fmt.Sprintf("%d", rng.IntN(1000))
	if frac := rng.IntN(7); frac > 0 {
		s += "." + fmt.Sprintf("%0*d", frac, rng.IntN(1_000_000)%pow10(frac))
	}
	if negative && rng.IntN(8) == 0 {
		s = "-" + s
	}
	return s
}

func pow10(n int) int {
	p := 1
	for i := 0; i < n; i++ {
		p *= 10
	}
	return p
}

// usageModel is the test's reference: exact totals per month, kept apart from
// the projection's code.
type usageModel struct {
	cost    map[string]string
	records map[string]uint64
}

func (m *usageModel) add(t *testing.T, month, cost string) {
	t.Helper()
	a, err := domain.ParseDecimal(m.cost[month])
	if err != nil {
		a, _ = domain.ParseDecimal("0")
	}
	b, err := domain.ParseDecimal(cost)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := domain.AddDecimal(a, b)
	if err != nil {
		t.Fatal(err)
	}
	m.cost[month] = domain.CanonicalDecimal(sum)
	m.records[month]++
}

// genUsage appends n random usage events over September and October, four
// partitions, three payers' organizations, dead letters and redrives (some
// repeated, some across months), and records the exact totals in m.
func genUsage(t *testing.T, s eventstore.Store, rng *rand.Rand, m *usageModel, n int, deadLetters *[]string, at time.Time) {
	t.Helper()
	type org struct{ payer, source string }
	accounts := map[string]org{
		accountX1: {payerA, sourceX}, accountX2: {payerA, sourceX},
		accountY1: {payerB, sourceY}, accountZ1: {payerA, sourceZ},
	}
	accountIDs := []string{accountX1, accountX2, accountY1, accountZ1}
	services := []string{"AmazonEC2", "AmazonS3", "AWSLambda"}
	for i := 0; i < n; i++ {
		month := []string{sep, oct}[rng.IntN(2)]
		var b usageBatch
		for j := rng.IntN(30); j > 0; j-- {
			acc := accountIDs[rng.IntN(len(accountIDs))]
			cost := randomDecimal(rng, true)
			r := usageRecord(fmt.Sprintf("u-%d-%d", i, j), acc, services[rng.IntN(len(services))], cost, randomDecimal(rng, false))
			b.records = append(b.records, booked(month, accounts[acc].payer, accounts[acc].source, r))
			m.add(t, month, cost)
		}
		if rng.IntN(3) == 0 {
			id := fmt.Sprintf("dl-%d-%d", at.Unix(), i)
			b.rejected = append(b.rejected, rejectedRecord(id, domain.UsageReasons[rng.IntN(len(domain.UsageReasons))],
				usageRecord("u-rej-"+id, "999999999999", "AmazonEC2", "1", "1")))
			*deadLetters = append(*deadLetters, id)
		}
		if len(*deadLetters) > 1 && rng.IntN(4) == 0 {
			// Any earlier dead letter, possibly one already resolved.
			b.redriven = append(b.redriven, (*deadLetters)[rng.IntN(len(*deadLetters)-1)])
		}
		appendUsage(t, s, month, uint32(rng.IntN(4)), at.Add(time.Duration(i)*time.Second), b)
	}
}

// TestReplayEqualsLive (R2): for random usage, a runner stopped and resumed
// on the same file ends with exactly the digests of a replay of each month,
// and their totals are the exact sums of the records.
func TestReplayEqualsLive(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s eventstore.Store, rm readmodeltest.Backend) {
		ctx := context.Background()
		seed := uint64(time.Now().UnixNano())
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 0))
		m := &usageModel{cost: map[string]string{}, records: map[string]uint64{}}
		var deadLetters []string
		path := rm.Target(t)

		genUsage(t, s, rng, m, 25, &deadLetters, t0)
		db1, err := readmodel.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		rn1 := start(t, db1, s, projections.Usage{}, projections.RunnerConfig{BatchSize: 1 + rng.IntN(4), IdleInterval: time.Hour})
		waitFor(t, rn1, lastPosition(t, s))
		if err := rn1.stop(t); !errors.Is(err, context.Canceled) {
			t.Fatalf("seed %d: first run: %v", seed, err)
		}
		if err := db1.Close(); err != nil {
			t.Fatal(err)
		}

		genUsage(t, s, rng, m, 25, &deadLetters, t0.Add(time.Hour))
		db := openDB(t, path)
		rn := start(t, db, s, projections.Usage{}, projections.RunnerConfig{IdleInterval: time.Hour})
		last := lastPosition(t, s)
		waitFor(t, rn, last)

		for _, month := range []string{sep, oct, "2026-11"} {
			live, err := db.MonthDigest(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			replay, err := projections.ReplayMonth(ctx, s, month, time.Time{}, nil)
			if err != nil {
				t.Fatalf("seed %d: replay %s: %v", seed, month, err)
			}
			if live.GetCheckpoint() != last || replay.GetCheckpoint() != last {
				t.Fatalf("seed %d: checkpoints live %d, replay %d, want %d", seed, live.GetCheckpoint(), replay.GetCheckpoint(), last)
			}
			assertProto(t, fmt.Sprintf("seed %d: %s replay vs live", seed, month), replay, live)

			billable := live.GetDigests()[0]
			wantCost := m.cost[month]
			if wantCost == "" {
				wantCost = "0"
			}
			if billable.GetName() != "billable" || billable.GetTotals()["billed_cost"] != wantCost ||
				billable.GetTotals()["records"] != fmt.Sprint(m.records[month]) {
				t.Fatalf("seed %d: %s totals %v, want billed_cost %s records %d", seed, month, billable.GetTotals(), wantCost, m.records[month])
			}
			report := reportBillable(t, db, month, "", "")
			if report.GetTotal() != wantCost || uint64(len(report.GetRows())) != billable.GetRows() {
				t.Fatalf("seed %d: %s report total %s over %d rows, digest %v", seed, month, report.GetTotal(), len(report.GetRows()), billable)
			}
			assertProto(t, month+" digest of the report rows", projections.BillableDigest(report.GetRows()), billable)
		}
	})
}

// TestReplayAsOf (R2 --as-of): a replay as of T equals the live read models of
// a store holding only the events recorded at or before T, whatever their
// position (recorded_at need not grow with the position), and T itself is
// included.
func TestReplayAsOf(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	day := func(d int) time.Time { return time.Date(2026, 9, d, 12, 0, 0, 0, time.UTC) }
	rec := func(id, cost string) []*billingv1.BookedUsage {
		return []*billingv1.BookedUsage{booked(sep, payerA, sourceX, usageRecord(id, accountX1, "AmazonEC2", cost, "1"))}
	}
	type ev struct {
		at time.Time
		b  usageBatch
	}
	events := []ev{
		{day(5), usageBatch{records: rec("u-1", "1.10")}},
		{day(20), usageBatch{records: rec("u-2", "2.20"), rejected: []*billingv1.UsageRejected{rejectedRaw("dl-a", []byte("x"))}}},
		{day(10), usageBatch{records: rec("u-3", "0.01")}}, // appended after day 20, recorded before
		{day(30), usageBatch{records: rec("u-4", "5"), redriven: []string{"dl-a"}}},
	}
	full := memstore.New()
	for i, e := range events {
		appendUsage(t, full, sep, uint32(i%2), e.at, e.b)
	}
	// live returns the live digest of a store holding the events recorded at or before asOf.
	live := func(asOf time.Time) *billingv1.MonthDigestResponse {
		s := memstore.New()
		for i, e := range events {
			if !e.at.After(asOf) {
				appendUsage(t, s, sep, uint32(i%2), e.at, e.b)
			}
		}
		db := openDB(t, tempDBPath(t))
		rn := start(t, db, s, projections.Usage{}, projections.RunnerConfig{IdleInterval: time.Hour})
		waitFor(t, rn, lastPosition(t, s))
		d, err := db.MonthDigest(ctx, sep)
		if err != nil {
			t.Fatal(err)
		}
		d.Checkpoint = 0
		return d
	}
	cases := []struct {
		asOf          time.Time
		cost, records string
	}{
		{day(1), "0", "0"},
		{day(15), "1.11", "2"},
		{day(20), "3.31", "3"},
		{day(20).Add(-time.Nanosecond), "1.11", "2"},
		{day(30), "8.31", "4"},
		{time.Time{}, "8.31", "4"},
	}
	for _, c := range cases {
		got, err := projections.ReplayMonth(ctx, full, sep, c.asOf, nil)
		if err != nil {
			t.Fatal(err)
		}
		totals := got.GetDigests()[0].GetTotals()
		if totals["billed_cost"] != c.cost || totals["records"] != c.records {
			t.Errorf("as of %s: totals %v, want billed_cost %s records %s", c.asOf, totals, c.cost, c.records)
		}
		got.Checkpoint = 0
		asOf := c.asOf
		if asOf.IsZero() {
			asOf = day(31)
		}
		assertProto(t, fmt.Sprintf("replay as of %s vs live", c.asOf), got, live(asOf))
	}
}

// TestReplayProgressAndUpTo: progress counts events and records; UpTo cuts the
// replay at a position, reported as the checkpoint; other months' events are
// never read.
func TestReplayProgressAndUpTo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := memstore.New()
	var positions []uint64
	for i := 0; i < 5; i++ {
		var b usageBatch
		for j := 0; j <= i; j++ {
			b.records = append(b.records, booked(sep, payerA, sourceX, usageRecord(fmt.Sprintf("u-%d-%d", i, j), accountX1, "AmazonEC2", "1", "1")))
		}
		positions = append(positions, appendUsage(t, s, sep, uint32(i%3), t0, b).Position)
		appendUsage(t, s, oct, 0, t0, usageBatch{records: []*billingv1.BookedUsage{
			booked(oct, payerA, sourceX, usageRecord(fmt.Sprintf("o-%d", i), accountX1, "AmazonEC2", "1", "1"))}})
	}
	var calls [][2]uint64
	got, err := projections.ReplayMonth(ctx, s, sep, time.Time{}, func(events, records uint64) {
		calls = append(calls, [2]uint64{events, records})
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "[[1 1] [2 3] [3 6] [4 10] [5 15]]"; fmt.Sprint(calls) != want {
		t.Fatalf("progress calls %v, want %s", calls, want)
	}
	if got.GetCheckpoint() != lastPosition(t, s) || got.GetDigests()[0].GetTotals()["records"] != "15" {
		t.Fatalf("replay: %s", prototext.Format(got))
	}
	cut, err := projections.ReplayMonthWith(ctx, s, sep, projections.ReplayOptions{UpTo: positions[2]})
	if err != nil {
		t.Fatal(err)
	}
	if cut.GetCheckpoint() != positions[2] || cut.GetDigests()[0].GetTotals()["records"] != "6" {
		t.Fatalf("replay up to %d: %s", positions[2], prototext.Format(cut))
	}
	if _, err := projections.ReplayMonth(ctx, s, "2026-9", time.Time{}, nil); err == nil {
		t.Fatal("replay of month 2026-9 accepted")
	}
}

// TestUsageRefusesCorruptEvents: an event the usage read models cannot take
// stops the runner at that event and fails the replay, so a corrupt history is
// never half-counted or counted differently by the two.
func TestUsageRefusesCorruptEvents(t *testing.T) {
	t.Parallel()
	good := func() *billingv1.BookedUsage {
		return booked(sep, payerA, sourceX, usageRecord("u-1", accountX1, "AmazonEC2", "1", "1"))
	}
	cases := []struct {
		name   string
		stream string
		mutate func(ev *billingv1.Event)
		want   string
	}{
		{"booking month of another stream", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Records[0].BookingMonth = oct
		}, `booking_month "2026-10" on a stream of month "2026-09"`},
		{"batch month of another stream", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Month = oct
		}, `UsageBatchRecorded of month "2026-10"`},
		{"billed cost not a decimal", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Records[0].Record.BilledCost = "1,5"
		}, `billed_cost "1,5" is not a finite decimal`},
		{"quantity infinite", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Records[0].Record.Quantity = "Infinity"
		}, `quantity "Infinity" is not a finite decimal`},
		{"no payer", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Records[0].PayerAccountId = ""
		}, `must all be set`},
		{"no recorded_at", "", func(ev *billingv1.Event) { ev.RecordedAt = nil }, `recorded_at is missing`},
		{"dead letter without reason", "", func(ev *billingv1.Event) {
			ev.GetUsageBatchRecorded().Rejected = []*billingv1.UsageRejected{{DeadLetterId: "dl-1"}}
		}, `must both be set`},
		{"stream without partition", "billing.usage." + sep, nil, `not billing.usage.<YYYY-MM>.<partition>`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := memstore.New()
			okRec := appendUsage(t, s, sep, 0, t0, usageBatch{records: []*billingv1.BookedUsage{good()}})
			ev := usageBatch{records: []*billingv1.BookedUsage{good()}}.event(sep, 1, t0)
			if c.mutate != nil {
				c.mutate(ev)
			}
			stream := c.stream
			if stream == "" {
				stream = domain.UsageStream(sep, 1)
			}
			badRec := appendTo(t, s, stream, ev)[0]

			db := openDB(t, tempDBPath(t))
			rn := start(t, db, s, projections.Usage{}, projections.RunnerConfig{IdleInterval: time.Hour})
			err := rn.wait(t)
			var ae *projections.ApplyError
			if !errors.As(err, &ae) || ae.Position != badRec.Position || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("runner stopped with %v; want an ApplyError at position %d containing %q", err, badRec.Position, c.want)
			}
			// The batch that held the bad event committed nothing; the good
			// event's own batch (if separate) may have.
			if cp, _ := db.Checkpoint(ctx, projections.UsageName); cp >= badRec.Position || (cp != 0 && cp != okRec.Position) {
				t.Fatalf("checkpoint %d after the failure at %d", cp, badRec.Position)
			}
			if c.stream == "" {
				if _, err := projections.ReplayMonth(ctx, s, sep, time.Time{}, nil); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("replay = %v, want an error containing %q", err, c.want)
				}
			}
		})
	}
}

// failingBatch is a BatchProjection whose batches fail with a plain error.
type failingBatch struct{}

func (failingBatch) Name() string   { return "failing_batch" }
func (failingBatch) Filter() string { return usageFilterForTest }
func (failingBatch) Apply(context.Context, *sql.Tx, eventstore.Record) error {
	return errors.New("Apply must not be called on a BatchProjection")
}
func (failingBatch) ApplyBatch(context.Context, *sql.Tx, []eventstore.Record) error {
	return errors.New("boom")
}

// usageFilterForTest is the usage filter, spelled out: the runner test below
// does not depend on the Usage projection.
const usageFilterForTest = "billing.usage.>"

// TestRunnerBatchProjectionError: the runner uses ApplyBatch, and a plain
// error is reported at the batch's first event, commits nothing, and stops it.
func TestRunnerBatchProjectionError(t *testing.T) {
	t.Parallel()
	s := memstore.New()
	appendTo(t, s, transferStream("rt-1"), invited("rt-1", payerA, sourceX, t0))
	first := appendUsage(t, s, sep, 0, t0, usageBatch{})
	appendUsage(t, s, sep, 1, t0, usageBatch{})
	db := openDB(t, tempDBPath(t))
	rn := start(t, db, s, failingBatch{}, projections.RunnerConfig{IdleInterval: time.Hour})
	err := rn.wait(t)
	var ae *projections.ApplyError
	if !errors.As(err, &ae) || ae.Projection != "failing_batch" || ae.Position != first.Position ||
		!strings.Contains(err.Error(), "in a batch of") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Run = %v, want an ApplyError at position %d for the batch", err, first.Position)
	}
	assertCheckpoint(t, db, "failing_batch", 0)
}
