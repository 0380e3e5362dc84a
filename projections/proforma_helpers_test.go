package projections_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/readmodel/readmodeltest"
	"github.com/billtransfer/ledger/services/clock"
)

// pricingWorld drives the real command pipeline and the real usage writer on a
// store, with a simulated clock, so the pro forma tests project the events the
// ledger really writes.
type pricingWorld struct {
	t     *testing.T
	store eventstore.Store
	clock *clock.Simulated
	pipe  *commands.Pipeline
}

func newPricingWorld(t *testing.T, s eventstore.Store, now string) *pricingWorld {
	t.Helper()
	w := &pricingWorld{t: t, store: s, clock: clock.NewSimulated(mustTime(t, now), nil)}
	w.pipe = commands.New(s, w.clock, commands.Options{})
	return w
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	at, err := clock.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// setClock moves the ledger clock forward.
func (w *pricingWorld) setClock(s string) {
	w.t.Helper()
	if err := w.clock.Set(context.Background(), mustTime(w.t, s)); err != nil {
		w.t.Fatal(err)
	}
}

// apply executes commands written as `billctl apply` lines and fails the test
// on the first rejection.
func (w *pricingWorld) apply(lines ...string) {
	w.t.Helper()
	for _, line := range lines {
		if _, err := w.pipe.Execute(context.Background(), "test", commandLine(w.t, line)); err != nil {
			w.t.Fatalf("%s: %v", line, err)
		}
	}
}

// commandLine parses {"command":"Name", ...fields} into an ExecuteRequest.
func commandLine(t testing.TB, line string) *billingv1.ExecuteRequest {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &fields); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	var name string
	if err := json.Unmarshal(fields["command"], &name); err != nil {
		t.Fatalf("%s: command: %v", line, err)
	}
	delete(fields, "command")
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	req := &billingv1.ExecuteRequest{}
	m := req.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("command")
	for i := 0; i < od.Fields().Len(); i++ {
		fd := od.Fields().Get(i)
		if string(fd.Message().Name()) != name {
			continue
		}
		msg := m.NewField(fd).Message()
		if err := protojson.Unmarshal(body, msg.Interface()); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		m.Set(fd, protoreflect.ValueOfMessage(msg))
		return req
	}
	t.Fatalf("%s: unknown command %q", line, name)
	return nil
}

// ingest books usage records; every one must be accepted. Each call uses a
// new usage writer whose directory has loaded every organization event so far:
// a long-lived directory follows the store with a lag, which a test applying
// commands and ingesting at once would race with.
func (w *pricingWorld) ingest(records ...*billingv1.UsageRecord) {
	w.t.Helper()
	dir := commands.NewDirectory(w.store)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() { defer close(done); _ = dir.Run(ctx) }()
	<-dir.Ready()
	writer := commands.NewUsageWriter(w.store, w.clock, dir, commands.UsageWriterOptions{Partitions: 4})
	res, err := writer.Ingest(context.Background(), "test", "test", records)
	if err != nil {
		w.t.Fatal(err)
	}
	if int(res.GetAccepted()) != len(records) {
		w.t.Fatalf("ingest: %d of %d accepted: %v", res.GetAccepted(), len(records), res.GetResults())
	}
}

// use is a usage record of account in the month of day (YYYY-MM-DD):
// quantity × list unit price, billed cost.
func use(id, account, day, service, usageType, qty, price, billed string) *billingv1.UsageRecord {
	start, err := time.Parse("2006-01-02", day)
	if err != nil {
		panic(err)
	}
	return &billingv1.UsageRecord{
		UsageId: id, AccountId: account, ChargePeriodStart: ts(start), ChargePeriodEnd: ts(start.Add(time.Hour)),
		Service: service, UsageType: usageType, Operation: "Op", Region: "us-east-1", Quantity: qty, Unit: "u",
		ListUnitPrice: price, BilledCost: billed, Currency: "USD",
	}
}

// runProforma runs the proforma projection on a new read model of rm and
// waits until it has applied the whole store.
func runProforma(t *testing.T, s eventstore.Store, rm readmodeltest.Backend, p projections.Proforma, batch int) (*readmodel.DB, *running) {
	t.Helper()
	db := openDB(t, rm.Target(t))
	rn := start(t, db, s, p, projections.RunnerConfig{BatchSize: batch, IdleInterval: time.Hour})
	waitFor(t, rn, lastPosition(t, s))
	return db, rn
}

func reportProforma(t *testing.T, db *readmodel.DB, month, payer, group, account string) *billingv1.ReportProformaResponse {
	t.Helper()
	got, err := db.ReportProforma(context.Background(), month, payer, group, account)
	if err != nil {
		t.Fatalf("ReportProforma(%s, %q, %q, %q): %v", month, payer, group, account, err)
	}
	got.Checkpoint = 0
	return got
}

func reportCost(t *testing.T, db *readmodel.DB, month, payer string) *billingv1.ReportCostResponse {
	t.Helper()
	got, err := db.ReportCost(context.Background(), month, payer)
	if err != nil {
		t.Fatalf("ReportCost(%s, %q): %v", month, payer, err)
	}
	got.Checkpoint = 0
	return got
}

// pfRow is a usage row of the pro forma view.
func pfRow(month, owner, group, account, service, list, cost string, n uint64) *billingv1.ProformaRow {
	return &billingv1.ProformaRow{Month: month, OwnerAccountId: owner, BillingGroupId: group, AccountId: account,
		Service: service, ListCost: list, ProformaCost: cost, RecordCount: n}
}

// itemRow is a custom line item row of the pro forma view.
func itemRow(month, owner, group, account, name, id, cost string) *billingv1.ProformaRow {
	return &billingv1.ProformaRow{Month: month, OwnerAccountId: owner, BillingGroupId: group, AccountId: account,
		Service: name, CustomLineItemId: id, ListCost: "0", ProformaCost: cost}
}

func costRow(month, owner, group, billable, proforma, margin, pct string) *billingv1.CostRow {
	return &billingv1.CostRow{Month: month, OwnerAccountId: owner, BillingGroupId: group, BillableCost: billable,
		ProformaCost: proforma, Margin: margin, MarginPercentage: pct}
}

// assertReplayEqualsLive replays month with the pro forma read models up to
// the live checkpoint and requires the "proforma" and "cost" digests to be
// exactly the live ones (R2).
func assertReplayEqualsLive(t *testing.T, s eventstore.Store, db *readmodel.DB, month string) {
	t.Helper()
	ctx := context.Background()
	live, err := db.ProformaDigests(ctx, month)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := projections.ReplayMonthWith(ctx, s, month, projections.ReplayOptions{Proforma: true, ProformaUpTo: live[0].GetCheckpoint()})
	if err != nil {
		t.Fatalf("replay %s: %v", month, err)
	}
	got := replay.GetDigests()[2:]
	if len(got) != 2 {
		t.Fatalf("replay %s: digests %v", month, replay.GetDigests())
	}
	for i := range live {
		assertProto(t, month+" "+live[i].GetName()+" replay vs live", got[i], live[i])
	}
}
