package sim

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Each known bug (knownBugs) has a short deterministic scenario here that
// shows it. A scenario is skipped while its bug is tolerated: SIM_STRICT=<id>
// (or 1) runs it, and it fails until the bug is fixed; once the bug's entry is
// deleted from knownBugs, it runs in every `make test`.

func requireStrict(t *testing.T, id string) {
	t.Helper()
	if lenient(os.Getenv("SIM_STRICT"))[id] {
		t.Skipf("known bug %s (SIM_STRICT=%s runs this scenario): %s", id, id, knownBugs[id])
	}
}

// scenario is a system on a memstore with its clock at start.
func scenario(t *testing.T, start string) *system {
	t.Helper()
	at, err := time.Parse(time.RFC3339, start)
	if err != nil {
		t.Fatal(err)
	}
	sys, err := newSystem(memstore.New(), t.TempDir(), at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.close)
	return sys
}

func (s *system) must(t *testing.T, cmds ...proto.Message) {
	t.Helper()
	for _, c := range cmds {
		if _, code, err := s.exec(0, c); err != nil || code != "" {
			t.Fatalf("%s: %s %v", brief(c), code, err)
		}
	}
}

func (s *system) at(t *testing.T, when string) {
	t.Helper()
	at, err := time.Parse(time.RFC3339, when)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.setClock(at); err != nil {
		t.Fatal(err)
	}
}

// usTax configures what a close of org's month needs: US-WA tax settings,
// the US seller of record and a 10% rate.
func usTax(org string) []proto.Message {
	return []proto.Message{
		&billingv1.SetTaxSettings{AccountId: org, LegalName: "Org", Country: "US", Region: "WA"},
		&billingv1.SetSellerOfRecord{Country: "US", Seller: sellers["US"].name, DefaultCurrency: "USD"},
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "10", EffectiveFrom: "2026-01-01"},
	}
}

// TestKnownBugExpireNamesSourceTwice: B invites A; the invitation expires
// without being swept; A then invites B, who accepts. Expiring the first
// invitation must succeed (T3), but its decision appends to A's organization
// stream twice (as the source, and as the top payer of the payer B), which
// the store refuses: the expiry sweeper fails on it for ever.
func TestKnownBugExpireNamesSourceTwice(t *testing.T) {
	requireStrict(t, bugExpireTwice)
	sys := scenario(t, "2026-08-10T12:00:00Z")
	a, b := orgID(1), orgID(2)
	sys.must(t,
		&billingv1.RegisterOrganization{ManagementAccountId: a, Name: "a"},
		&billingv1.RegisterOrganization{ManagementAccountId: b, Name: "b"},
		&billingv1.InviteBillSource{TransferId: "t1", PayerAccountId: b, SourceAccountId: a, StartMonth: "2026-09"})
	sys.at(t, "2026-08-26T00:00:00Z") // t1 expired on 2026-08-25T12:00Z (15 days)
	sys.must(t,
		&billingv1.InviteBillSource{TransferId: "t2", PayerAccountId: a, SourceAccountId: b, StartMonth: "2026-09"},
		&billingv1.AcceptTransfer{TransferId: "t2"})
	_, code, err := sys.exec(0, &billingv1.ExpireTransfer{TransferId: "t1"})
	if err != nil || code != "" {
		t.Fatalf("ExpireTransfer t1: %s %v; want it accepted", code, err)
	}
}

// TestKnownBugUsageRetryOrder: a usage writer whose partition index is stale
// (a close wrote its markers since it last wrote there) receives a batch, all
// in one partition, of a record of this month, a late record with usage id U,
// and a record with the same id U and other content. U2 books the first
// content of U and dead-letters the second as a conflict; after the guard
// conflict the writer decides again month group by month group, so it books
// the second content and dead-letters the first.
func TestKnownBugUsageRetryOrder(t *testing.T) {
	requireStrict(t, bugRetryOrder)
	sys := scenario(t, "2026-09-10T12:00:00Z")
	a := orgID(1)
	sys.must(t, &billingv1.RegisterOrganization{ManagementAccountId: a, Name: "a"})
	sys.must(t, usTax(a)...)
	if err := sys.view.refresh(sys.ctx); err != nil {
		t.Fatal(err)
	}
	// Three usage ids of one partition.
	var ids []string
	p := domain.UsagePartition("u-0", domain.UsagePartitions)
	for i := 0; len(ids) < 3; i++ {
		if id := fmt.Sprintf("u-%d", i); domain.UsagePartition(id, domain.UsagePartitions) == p {
			ids = append(ids, id)
		}
	}
	rec := func(id, start, billed string) *billingv1.UsageRecord {
		at, _ := time.Parse(time.RFC3339, start)
		return &billingv1.UsageRecord{UsageId: id, AccountId: a, ChargePeriodStart: timestamppb.New(at),
			ChargePeriodEnd: timestamppb.New(at.Add(time.Hour)), Service: "AmazonEC2", UsageType: "BoxUsage", Quantity: "1",
			Unit: "Hrs", BilledCost: billed, Currency: "USD"}
	}
	ingest := func(recs ...*billingv1.UsageRecord) *billingv1.IngestBatchResponse {
		t.Helper()
		res, err := sys.writer.Ingest(context.Background(), "sim", "scenario", recs)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	ingest(rec(ids[0], "2026-09-01T00:00:00Z", "1")) // the writer loads the partition
	sys.at(t, "2026-10-02T00:00:00Z")
	sys.must(t, &billingv1.CloseMonth{PayerAccountId: a, Month: "2026-09"}) // markers: the index is stale
	first, second := rec(ids[2], "2026-08-20T00:00:00Z", "2"), rec(ids[2], "2026-08-20T00:00:00Z", "3")
	res := ingest(rec(ids[1], "2026-10-01T00:00:00Z", "1"), first, second)
	var got []string
	for _, r := range res.GetResults() {
		got = append(got, r.GetStatus()+":"+r.GetReason())
	}
	if want := "[ACCEPTED: ACCEPTED: REJECTED:USAGE_ID_CONFLICT]"; fmt.Sprint(got) != want {
		t.Errorf("answers %v, want %s: the first content of %s is the one booked (U2)", got, want, ids[2])
	}
	err := sys.store.ReadAll(context.Background(), 0, "billing.usage.>", func(r eventstore.Record) error {
		for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
			if b.GetRecord().GetUsageId() == ids[2] && b.GetRecord().GetBilledCost() != "2" {
				t.Errorf("%s booked with billed cost %s, want the first content's 2", ids[2], b.GetRecord().GetBilledCost())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKnownBugCreditInvoiceOutstanding: a month whose usage is a credit
// closes with a negative invoice. The receivable (the write side that decides
// payments) says it owes nothing, so it never takes a payment; the payments
// read model must say the same (Y3) (it once showed the negative total as
// outstanding and added it to the balances). The invoice is a credit note:
// both sides show it CREDIT, with its credit remaining and counted in the
// balance.
func TestKnownBugCreditInvoiceOutstanding(t *testing.T) {
	requireStrict(t, bugCreditOutstanding)
	sys := scenario(t, "2026-08-10T12:00:00Z")
	p := orgID(1)
	sys.must(t, &billingv1.RegisterOrganization{ManagementAccountId: p, Name: "p"})
	sys.must(t, usTax(p)...)
	if err := sys.view.refresh(sys.ctx); err != nil {
		t.Fatal(err)
	}
	at, _ := time.Parse(time.RFC3339, "2026-08-05T00:00:00Z")
	res, err := sys.writer.Ingest(context.Background(), "sim", "scenario", []*billingv1.UsageRecord{{UsageId: "credit-1", AccountId: p,
		ChargePeriodStart: timestamppb.New(at), ChargePeriodEnd: timestamppb.New(at.Add(time.Hour)), Service: "AmazonEC2",
		UsageType: "BoxUsage", Quantity: "1", Unit: "Hrs", BilledCost: "-10", Currency: "USD"}})
	if err != nil || res.GetAccepted() != 1 {
		t.Fatalf("ingest: %v %v", res, err)
	}
	sys.at(t, "2026-09-02T00:00:00Z")
	sys.must(t, &billingv1.CloseMonth{PayerAccountId: p, Month: "2026-08"})
	if err := sys.wait(nil, true); err != nil {
		t.Fatal(err)
	}
	recs, err := sys.store.ReadStream(context.Background(), domain.ReceivableStream(p))
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]*billingv1.Event, len(recs))
	for i, r := range recs {
		evs[i] = r.Event
	}
	receivable := domain.FoldReceivable(evs)
	report, err := sys.db.ReportPayments(context.Background(), &billingv1.ReportPaymentsRequest{PayerAccountId: p})
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range report.GetInvoices() {
		ri, _ := receivable.Invoice(inv.GetInvoiceId())
		if inv.GetOutstanding() != ri.Outstanding() {
			t.Errorf("invoice %s (issued %s): the read model's outstanding is %s, the receivable's %s", inv.GetInvoiceId(),
				inv.GetIssued(), inv.GetOutstanding(), ri.Outstanding())
		}
		// Since credit notes (Y2): the negative invoice is a credit note with
		// all its credit remaining, on both sides.
		if inv.GetStatus() != string(ri.Status()) || ri.Status() != domain.InvoiceCredit || inv.GetRemainingCredit() != ri.RemainingCredit() {
			t.Errorf("invoice %s (issued %s): the read model says %s with %s remaining, the receivable %s with %s", inv.GetInvoiceId(),
				inv.GetIssued(), inv.GetStatus(), inv.GetRemainingCredit(), ri.Status(), ri.RemainingCredit())
		}
	}
	for _, b := range report.GetPayerBalances() {
		if rb := receivable.Balance(b.GetCurrency()); b.GetOutstanding() != rb.Outstanding || b.GetCreditNotes() != rb.CreditNotes || b.GetBalance() != rb.Balance {
			t.Errorf("payer balance %s: the read model's outstanding, credit notes and balance are %s %s %s, the receivable's %s %s %s", b.GetCurrency(),
				b.GetOutstanding(), b.GetCreditNotes(), b.GetBalance(), rb.Outstanding, rb.CreditNotes, rb.Balance)
		}
	}
}
