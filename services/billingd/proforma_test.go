package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// TestBillingd_ProformaCostAndReplay runs pricing end to end on a real
// billingd: a transfer with a plan and custom line items, usage over the API,
// the pro forma and cost reports (read-your-writes through the proforma
// runner), a re-rate, MonthDigest with the pro forma and cost digests equal to
// a replay from JetStream, and the same figures after the read model is
// deleted and rebuilt.
func TestBillingd_ProformaCostAndReplay(t *testing.T) {
	dir := t.TempDir()
	s, cancel := start(t, dir, nil)
	c := newClient(t, s, dir)
	ctx := context.Background()
	exec := func(req *billingv1.ExecuteRequest) { c.do(req) }
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
		ManagementAccountId: "111111111111", Name: "Partner"}}})
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
		ManagementAccountId: "222222222222", Name: "Acme", MemberAccountIds: []string{"222222222223"}}}})
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_CreatePricingRule{CreatePricingRule: &billingv1.CreatePricingRule{
		PricingRuleId: "pr-m", OwnerAccountId: "111111111111", Name: "m", Type: "MARKUP", Scope: "GLOBAL", ModifierPercentage: "10"}}})
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_CreatePricingPlan{CreatePricingPlan: &billingv1.CreatePricingPlan{
		PricingPlanId: "pp", OwnerAccountId: "111111111111", Name: "pp", PricingRuleIds: []string{"pr-m"}}}})
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{InviteBillSource: &billingv1.InviteBillSource{
		TransferId: "rt-1", PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09", PricingPlanId: "pp"}}})
	exec(acceptReq("rt-1"))
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_CreateCustomLineItem{CreateCustomLineItem: &billingv1.CreateCustomLineItem{
		CustomLineItemId: "cli-fee", BillingGroupId: "tbg-rt-1", Name: "support", ChargeType: "FEE", FlatAmount: "5", StartMonth: "2026-09"}}})
	if _, err := c.admin.SetClock(ctx, connect.NewRequest(&billingv1.SetClockRequest{Time: "2026-09-15T00:00:00Z"})); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 9, 3, 0, 0, 0, 0, time.UTC)
	res, err := c.usage.IngestBatch(ctx, connect.NewRequest(&billingv1.IngestBatchRequest{Records: []*billingv1.UsageRecord{
		{UsageId: "u-1", AccountId: "222222222223", ChargePeriodStart: timestamppb.New(at), ChargePeriodEnd: timestamppb.New(at.Add(time.Hour)),
			Service: "AmazonEC2", UsageType: "BoxUsage", Quantity: "10", ListUnitPrice: "0.1", BilledCost: "0.9", Currency: "USD"},
	}}))
	if err != nil || res.Msg.GetAccepted() != 1 {
		t.Fatalf("ingest: %v %v", res, err)
	}
	// 10 × 0.1 = 1 list, +10% = 1.1; support 5: 6.1. Billable 0.9, margin 5.2.
	wantProforma := &billingv1.ReportProformaResponse{Rows: []*billingv1.ProformaRow{
		{Month: "2026-09", OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-1", AccountId: "222222222223", Service: "AmazonEC2",
			ListCost: "1", ProformaCost: "1.1", RecordCount: 1},
		{Month: "2026-09", OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-1", AccountId: "222222222222", Service: "support",
			CustomLineItemId: "cli-fee", ListCost: "0", ProformaCost: "5"},
	}, Total: "6.1"}
	wantCost := &billingv1.ReportCostResponse{Rows: []*billingv1.CostRow{{Month: "2026-09", OwnerAccountId: "111111111111",
		BillingGroupId: "tbg-rt-1", BillableCost: "0.9", ProformaCost: "6.1", Margin: "5.2", MarginPercentage: "85.25"}},
		BillableTotal: "0.9", ProformaTotal: "6.1", MarginTotal: "5.2", MarginPercentage: "85.25"}
	check := func(what string, proforma *billingv1.ReportProformaResponse, cost *billingv1.ReportCostResponse) {
		t.Helper()
		pr, err := c.query.ReportProforma(ctx, connect.NewRequest(&billingv1.ReportProformaRequest{Month: "2026-09", PayerAccountId: "111111111111"}))
		if err != nil {
			t.Fatal(err)
		}
		cr, err := c.query.ReportCost(ctx, connect.NewRequest(&billingv1.ReportCostRequest{Month: "2026-09"}))
		if err != nil {
			t.Fatal(err)
		}
		if pr.Msg.GetCheckpoint() == 0 || cr.Msg.GetCheckpoint() == 0 {
			t.Fatalf("%s: checkpoints %d, %d", what, pr.Msg.GetCheckpoint(), cr.Msg.GetCheckpoint())
		}
		pr.Msg.Checkpoint, cr.Msg.Checkpoint = 0, 0
		if !proto.Equal(pr.Msg, proforma) || !proto.Equal(cr.Msg, cost) {
			t.Fatalf("%s:\npro forma %v\n     want %v\ncost %v\nwant %v", what, pr.Msg, proforma, cr.Msg, cost)
		}
		verifyReplay(t, c, s.NATSURL)
	}
	check("after usage", wantProforma, wantCost)

	// A re-rate (P4): the markup goes to 20%.
	exec(&billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_UpdatePricingRule{UpdatePricingRule: &billingv1.UpdatePricingRule{
		PricingRuleId: "pr-m", ModifierPercentage: "20"}}})
	wantProforma.Rows[0].ProformaCost, wantProforma.Total = "1.2", "6.2"
	wantCost.Rows[0].ProformaCost, wantCost.Rows[0].Margin, wantCost.Rows[0].MarginPercentage = "6.2", "5.3", "85.48"
	wantCost.ProformaTotal, wantCost.MarginTotal, wantCost.MarginPercentage = "6.2", "5.3", "85.48"
	check("after the re-rate", wantProforma, wantCost)
	stop(t, s, cancel)

	// The read model is rebuilt from the events.
	for _, f := range []string{"readmodel.db", "readmodel.db-wal", "readmodel.db-shm"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	s, cancel = start(t, dir, nil)
	defer stop(t, s, cancel)
	c = newClient(t, s, dir)
	check("after the rebuild", wantProforma, wantCost)
}

// verifyReplay is `billctl replay --verify` for September: MonthDigest holds
// the four digests, and a replay from JetStream, each read model up to its
// live checkpoint, gives the very same.
func verifyReplay(t *testing.T, c *client, natsURL string) {
	t.Helper()
	verifyReplayMonth(t, c, natsURL, "2026-09")
}

// verifyReplayMonth is verifyReplay for month.
func verifyReplayMonth(t *testing.T, c *client, natsURL, month string) {
	t.Helper()
	ctx := context.Background()
	live, err := c.query.MonthDigest(ctx, connect.NewRequest(&billingv1.MonthDigestRequest{Month: month}))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	var pfUpTo, invUpTo, payUpTo uint64
	for _, d := range live.Msg.GetDigests() {
		names = append(names, d.GetName())
		switch d.GetName() {
		case "proforma":
			pfUpTo = d.GetCheckpoint()
		case "invoices":
			invUpTo = d.GetCheckpoint()
		case "payments":
			payUpTo = d.GetCheckpoint()
		}
	}
	if fmt.Sprint(names) != "[billable deadletters proforma cost invoices tax payments]" || pfUpTo == 0 {
		t.Fatalf("live digests %v (proforma checkpoint %d)", names, pfUpTo)
	}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	replay, err := projections.ReplayMonthWith(ctx, store, month, projections.ReplayOptions{
		UpTo: live.Msg.GetCheckpoint(), Proforma: true, ProformaUpTo: pfUpTo, Invoices: true, InvoicesUpTo: invUpTo, PaymentsUpTo: payUpTo})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(replay, live.Msg) {
		t.Fatalf("replay %v\n   live %v", replay, live.Msg)
	}
}
