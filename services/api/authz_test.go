package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// self is each principal's own organization.
var self = map[string]string{"P": acctP, "Q": acctQ, "S": acctS, "T": acctT}

// payerOf is the direct payer of each source in 2026-09.
var payerOf = map[string]string{"S": acctP, "T": acctQ}

// foreignTo lists, per source, the account ids it must never see: those of
// every organization but its own and its payer's management account.
var foreignTo = map[string][]string{
	"S": {acctQ, acctT, acctT2, acctP2},
	"T": {acctP, acctP2, acctS, acctS2},
}

// authzCase is one row of the authorization table: a call and the
// principals allowed to make it; every other principal is denied.
type authzCase struct {
	name   string
	method string // the RPC method a denial must name
	call   func(ctx context.Context, f *accessFixture, who string) (proto.Message, error)
	allow  []string
	// write: an allowed call passes authorization but the domain may still
	// reject it (e.g. ALREADY_EXISTS when another principal did it first).
	write bool
	// check verifies an allowed read's rows belong to the caller.
	check func(t *testing.T, who string, res proto.Message)
	// code, when set, is the error an allowed read answers (e.g. NOT_FOUND).
	code connect.Code
}

// Shorthands for the table.
var (
	everyone  = principals
	readers   = []string{"admin", "auditor"}
	adminOnly = []string{"admin"}
)

func with(base []string, more ...string) []string { return append(slices.Clone(base), more...) }

func exec(line string) func(context.Context, *accessFixture, string) (proto.Message, error) {
	return func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
		req := &billingv1.ExecuteRequest{}
		if err := protojson.Unmarshal([]byte(strings.ReplaceAll(line, "WHO", who)), req); err != nil {
			panic(err)
		}
		res, err := f.command.Execute(ctx, bearer(req, f.tokens[who]))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
}

// query calls a QueryService method with a copy of msg (the scope rules
// narrow requests in place on the server, never the caller's message).
func query[Req, Res any](call func(billingv1connect.QueryServiceClient, context.Context, *connect.Request[Req]) (*connect.Response[Res], error), msg *Req) func(context.Context, *accessFixture, string) (proto.Message, error) {
	return func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
		req := proto.Clone(any(msg).(proto.Message)).(any).(*Req)
		res, err := call(f.query, ctx, bearer(req, f.tokens[who]))
		if err != nil {
			return nil, err
		}
		return any(res.Msg).(proto.Message), nil
	}
}

// protoName names a service of billing/v1/api.proto.
func protoName(service string) protoreflect.Name { return protoreflect.Name(service) }

// Row checks.

func checkTransfers(t *testing.T, who string, res proto.Message) {
	rows := res.(*billingv1.ListTransfersResponse).GetTransfers()
	for _, r := range rows {
		switch who {
		case "P", "Q":
			if r.GetPayerAccountId() != self[who] {
				t.Errorf("%s sees transfer %s of payer %s", who, r.GetTransferId(), r.GetPayerAccountId())
			}
		case "S", "T":
			if r.GetSourceAccountId() != self[who] {
				t.Errorf("%s sees transfer %s of source %s", who, r.GetTransferId(), r.GetSourceAccountId())
			}
		}
	}
	if len(rows) == 0 {
		t.Errorf("%s sees no transfer", who)
	}
}

func checkBillable(month string) func(*testing.T, string, proto.Message) {
	return func(t *testing.T, who string, res proto.Message) {
		sawS := false
		for _, r := range res.(*billingv1.ReportBillableResponse).GetRows() {
			if (who == "P" || who == "Q") && r.GetPayerAccountId() != self[who] {
				t.Errorf("%s sees a billable row of payer %s", who, r.GetPayerAccountId())
			}
			sawS = sawS || r.GetSourceAccountId() == acctS
		}
		// A3: P keeps S's September, and never sees S's October.
		if who == "P" && month == "2026-09" && !sawS {
			t.Errorf("P lost S's September rows")
		}
		if who == "P" && month == "2026-10" && sawS {
			t.Errorf("P sees S's October, after the transfer ended")
		}
	}
}

func checkProforma(nonEmpty bool) func(*testing.T, string, proto.Message) {
	return func(t *testing.T, who string, res proto.Message) {
		rows := res.(*billingv1.ReportProformaResponse).GetRows()
		for _, r := range rows {
			switch who {
			case "P", "Q":
				if r.GetOwnerAccountId() != self[who] {
					t.Errorf("%s sees a pro forma row of payer %s", who, r.GetOwnerAccountId())
				}
			case "S", "T":
				if !slices.Contains(accountsOf[who], r.GetAccountId()) {
					t.Errorf("%s sees the pro forma of account %s", who, r.GetAccountId())
				}
			}
		}
		if nonEmpty && len(rows) == 0 {
			t.Errorf("%s sees no pro forma row", who)
		}
	}
}

// checkViews: a payer sees only the views it owns, a source only views
// granted to it, naming itself as the only grantee and no source view;
// nonEmpty: the fixture's views are there (P's bv-p-s and bv-p-all, Q's
// bv-q-t; S is granted bv-p-s, T bv-q-t).
func checkViews(nonEmpty bool) func(*testing.T, string, proto.Message) {
	return func(t *testing.T, who string, res proto.Message) {
		var ids []string
		for _, v := range res.(*billingv1.ListBillingViewsResponse).GetViews() {
			ids = append(ids, v.GetBillingViewId())
			switch who {
			case "P", "Q":
				if v.GetOwnerAccountId() != self[who] {
					t.Errorf("%s sees billing view %s of owner %s", who, v.GetBillingViewId(), v.GetOwnerAccountId())
				}
			case "S", "T":
				if v.GetOwnerAccountId() != payerOf[who] || v.GetDeleted() || !slices.Equal(v.GetGranteeAccountIds(), []string{self[who]}) || len(v.GetSourceViewIds()) > 0 {
					t.Errorf("%s sees billing view %v", who, v)
				}
			}
		}
		want := map[string][]string{"P": {"bv-p-all", "bv-p-s"}, "Q": {"bv-q-t"}, "S": {"bv-p-s"}, "T": {"bv-q-t"},
			"admin": {"bv-p-all", "bv-p-s", "bv-q-t"}, "auditor": {"bv-p-all", "bv-p-s", "bv-q-t"}}[who]
		for _, id := range want {
			if nonEmpty && !slices.Contains(ids, id) {
				t.Errorf("%s does not see billing view %s (it sees %v)", who, id, ids)
			}
		}
	}
}

func checkCost(t *testing.T, who string, res proto.Message) {
	for _, r := range res.(*billingv1.ReportCostResponse).GetRows() {
		if (who == "P" || who == "Q") && r.GetOwnerAccountId() != self[who] {
			t.Errorf("%s sees the cost of payer %s", who, r.GetOwnerAccountId())
		}
	}
}

func checkInvoices(t *testing.T, who string, res proto.Message) {
	rows := res.(*billingv1.ReportInvoicesResponse).GetRows()
	for _, r := range rows {
		if (who == "P" || who == "Q") && r.GetPayerAccountId() != self[who] {
			t.Errorf("%s sees invoice %s of payer %s", who, r.GetInvoiceId(), r.GetPayerAccountId())
		}
	}
	if len(rows) == 0 {
		t.Errorf("%s sees no invoice", who)
	}
}

func checkPayments(t *testing.T, who string, res proto.Message) {
	r := res.(*billingv1.ReportPaymentsResponse)
	if who != "P" && who != "Q" {
		return
	}
	for _, x := range r.GetInvoices() {
		if x.GetPayerAccountId() != self[who] {
			t.Errorf("%s sees invoice %s of payer %s", who, x.GetInvoiceId(), x.GetPayerAccountId())
		}
	}
	for _, x := range r.GetPayments() {
		if x.GetPayerAccountId() != self[who] {
			t.Errorf("%s sees payment %s of payer %s", who, x.GetPaymentId(), x.GetPayerAccountId())
		}
	}
	for _, x := range r.GetPayerBalances() {
		if x.GetPayerAccountId() != self[who] {
			t.Errorf("%s sees the balance of payer %s", who, x.GetPayerAccountId())
		}
	}
}

func checkTax(t *testing.T, who string, res proto.Message) {
	for _, r := range res.(*billingv1.ReportTaxResponse).GetRows() {
		if (who == "P" || who == "Q") && r.GetPayerAccountId() != self[who] {
			t.Errorf("%s sees tax of payer %s", who, r.GetPayerAccountId())
		}
	}
}

func checkTokenList(t *testing.T, _ string, res proto.Message) {
	b, _ := protojson.Marshal(res)
	for who, tok := range fixture.tokens {
		if strings.Contains(string(b), tok) || strings.Contains(string(b), auth.HashToken(tok)) {
			t.Errorf("ListTokens shows the token of %s or its hash", who)
		}
	}
	if n := len(res.(*billingv1.ListTokensResponse).GetTokens()); n < len(principals) {
		t.Errorf("ListTokens lists %d tokens", n)
	}
}

// authzTable is every procedure of the API, with own and foreign data.
func authzTable() []authzCase {
	return []authzCase{
		// CommandService.Execute: a payer acts on what it owns, a source on its
		// own transfers, the admin on everything; auditor and ingest never.
		{name: "Execute RegisterOrganization", method: "Execute", write: true, allow: adminOnly,
			call: exec(`{"register_organization":{"management_account_id":"555555555555","name":"new"}}`)},
		{name: "Execute InviteBillSource as payer P", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"invite_bill_source":{"transfer_id":"rt-again","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-12"}}`)},
		{name: "Execute AcceptTransfer of S's invitation", method: "Execute", write: true, allow: []string{"admin", "S"},
			call: exec(`{"accept_transfer":{"transfer_id":"rt-again"}}`)},
		{name: "Execute CancelTransfer of P's invitation", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"cancel_transfer":{"transfer_id":"rt-again"}}`)},
		{name: "Execute WithdrawTransfer by source T", method: "Execute", write: true, allow: []string{"admin", "T"},
			call: exec(`{"withdraw_transfer":{"transfer_id":"rt-qt","end_month":"2026-11","withdrawn_by":"444444444444"}}`)},
		{name: "Execute WithdrawTransfer by payer Q", method: "Execute", write: true, allow: []string{"admin", "Q"},
			call: exec(`{"withdraw_transfer":{"transfer_id":"rt-qt","end_month":"2026-11"}}`)},
		{name: "Execute CreatePricingRule for P", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"create_pricing_rule":{"pricing_rule_id":"pr-by-WHO","owner_account_id":"111111111111","name":"x","type":"DISCOUNT","scope":"GLOBAL","modifier_percentage":"1"}}`)},
		{name: "Execute UpdatePricingRule of P", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"update_pricing_rule":{"pricing_rule_id":"pr-p","modifier_percentage":"12"}}`)},
		{name: "Execute CreateCustomLineItem on Q's group", method: "Execute", write: true, allow: []string{"admin", "Q"},
			call: exec(`{"create_custom_line_item":{"custom_line_item_id":"cli-by-WHO","billing_group_id":"tbg-rt-qt","name":"fee","charge_type":"FEE","flat_amount":"1","start_month":"2026-11"}}`)},
		{name: "Execute SetTaxSettings of P's member account", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"set_tax_settings":{"account_id":"111111111112","legal_name":"P Labs","country":"US","region":"WA"}}`)},
		{name: "Execute SetTaxRate", method: "Execute", write: true, allow: adminOnly,
			call: exec(`{"set_tax_rate":{"jurisdiction":"US-OR","rate_percentage":"0","effective_from":"2026-01-01"}}`)},
		{name: "Execute CloseMonth of Q", method: "Execute", write: true, allow: []string{"admin", "Q"},
			call: exec(`{"close_month":{"payer_account_id":"333333333333","month":"2026-10"}}`)},
		{name: "Execute RecordPayment of P", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"record_payment":{"payment_id":"pay-by-WHO","payer_account_id":"111111111111","amount":"0.01","currency":"USD","method":"CARD"}}`)},
		{name: "Execute ApplyCredit of P", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"apply_credit":{"payer_account_id":"111111111111","credit_note_id":"INV-by-WHO"}}`)},
		{name: "Execute CreateBillingView for Q", method: "Execute", write: true, allow: []string{"admin", "Q"},
			call: exec(`{"create_billing_view":{"billing_view_id":"bv-by-WHO","owner_account_id":"333333333333","type":"CUSTOM"}}`)},
		{name: "Execute GrantBillingView of P's view", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"grant_billing_view":{"billing_view_id":"bv-p-s","account_id":"222222222222"}}`)},
		// Only the owner revokes, not the grantee (FAILED_PRECONDITION: not granted).
		{name: "Execute RevokeBillingView of P's view", method: "Execute", write: true, allow: []string{"admin", "P"},
			call: exec(`{"revoke_billing_view":{"billing_view_id":"bv-p-all","account_id":"222222222222"}}`)},
		// The admin deletes Q's view; Q is then told it is gone (NOT_FOUND).
		{name: "Execute DeleteBillingView of Q's view", method: "Execute", write: true, allow: []string{"admin", "Q"},
			call: exec(`{"delete_billing_view":{"billing_view_id":"bv-by-Q"}}`)},
		{name: "Execute CreateToken", method: "Execute", write: true, allow: adminOnly,
			call: exec(`{"create_token":{"token_id":"tok-by-WHO","name":"x","role":"auditor","token_sha256":"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"}}`)},

		// QueryService.
		{name: "ListTransfers unfiltered", method: "ListTransfers", allow: with(readers, "P", "Q", "S", "T"), check: checkTransfers,
			call: query(billingv1connect.QueryServiceClient.ListTransfers, &billingv1.ListTransfersRequest{})},
		{name: "ListTransfers of payer Q", method: "ListTransfers", allow: with(readers, "Q", "T"), check: checkTransfers,
			call: query(billingv1connect.QueryServiceClient.ListTransfers, &billingv1.ListTransfersRequest{PayerAccountId: acctQ})},
		{name: "ListTransfers of source T", method: "ListTransfers", allow: with(readers, "Q", "T"), check: checkTransfers,
			call: query(billingv1connect.QueryServiceClient.ListTransfers, &billingv1.ListTransfersRequest{SourceAccountId: acctT})},

		{name: "ReportBillable 2026-09", method: "ReportBillable", allow: with(readers, "P", "Q"), check: checkBillable("2026-09"),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-09"})},
		{name: "ReportBillable 2026-10 (after S's transfer ended)", method: "ReportBillable", allow: with(readers, "P", "Q"), check: checkBillable("2026-10"),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-10"})},
		{name: "ReportBillable of payer Q", method: "ReportBillable", allow: with(readers, "Q"), check: checkBillable(""),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-09", PayerAccountId: acctQ})},
		{name: "ReportBillable of source S in September (A3: kept)", method: "ReportBillable", allow: with(readers, "P"), check: checkBillable("2026-09"),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-09", SourceAccountId: acctS})},
		{name: "ReportBillable of source S in October (A3: not paid)", method: "ReportBillable", allow: readers, check: checkBillable("2026-10"),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-10", SourceAccountId: acctS})},
		{name: "ReportBillable of source T", method: "ReportBillable", allow: with(readers, "Q"), check: checkBillable(""),
			call: query(billingv1connect.QueryServiceClient.ReportBillable, &billingv1.ReportBillableRequest{Month: "2026-09", SourceAccountId: acctT})},

		{name: "MonthDigest", method: "MonthDigest", allow: readers,
			call: query(billingv1connect.QueryServiceClient.MonthDigest, &billingv1.MonthDigestRequest{Month: "2026-09"})},

		{name: "ReportProforma 2026-09", method: "ReportProforma", allow: with(readers, "P", "Q", "S", "T"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09"})},
		{name: "ReportProforma 2026-10", method: "ReportProforma", allow: with(readers, "P", "Q", "S", "T"), check: checkProforma(false),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-10"})},
		{name: "ReportProforma of payer Q", method: "ReportProforma", allow: with(readers, "Q", "T"), check: checkProforma(false),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", PayerAccountId: acctQ})},
		{name: "ReportProforma of T's member account", method: "ReportProforma", allow: with(readers, "Q", "T"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", AccountId: acctT2})},
		{name: "ReportProforma of S's member account", method: "ReportProforma", allow: with(readers, "P", "S"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", AccountId: acctS2})},
		{name: "ReportProforma of Q's billing group", method: "ReportProforma", allow: with(readers, "Q", "T"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingGroupId: "tbg-rt-qt"})},
		{name: "ReportProforma through P's view granted to S", method: "ReportProforma", allow: with(readers, "P", "S"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: "bv-p-s"})},
		{name: "ReportProforma through P's view granted to nobody", method: "ReportProforma", allow: with(readers, "P"), check: checkProforma(true),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: "bv-p-all"})},
		{name: "ReportProforma through P's view, naming T's account", method: "ReportProforma", allow: readers, check: checkProforma(false),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: "bv-p-all", AccountId: acctT2})},
		{name: "ReportProforma through P's view, naming Q's group", method: "ReportProforma", allow: readers, check: checkProforma(false),
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: "bv-p-s", BillingGroupId: "tbg-rt-qt"})},
		// A payer or source cannot tell a missing view from a foreign one.
		{name: "ReportProforma through an unknown view", method: "ReportProforma", allow: readers, code: connect.CodeNotFound,
			call: query(billingv1connect.QueryServiceClient.ReportProforma, &billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: "bv-none"})},

		{name: "ListBillingViews unfiltered", method: "ListBillingViews", allow: with(readers, "P", "Q", "S", "T"), check: checkViews(true),
			call: query(billingv1connect.QueryServiceClient.ListBillingViews, &billingv1.ListBillingViewsRequest{})},
		{name: "ListBillingViews with the deleted ones", method: "ListBillingViews", allow: with(readers, "P", "Q", "S", "T"), check: checkViews(true),
			call: query(billingv1connect.QueryServiceClient.ListBillingViews, &billingv1.ListBillingViewsRequest{IncludeDeleted: true})},
		// A source names an owner to see what that owner granted it (T: nothing of P).
		{name: "ListBillingViews of owner P", method: "ListBillingViews", allow: with(readers, "P", "S", "T"), check: checkViews(false),
			call: query(billingv1connect.QueryServiceClient.ListBillingViews, &billingv1.ListBillingViewsRequest{OwnerAccountId: acctP})},
		{name: "ListBillingViews granted to T", method: "ListBillingViews", allow: with(readers, "P", "Q", "T"), check: checkViews(false),
			call: query(billingv1connect.QueryServiceClient.ListBillingViews, &billingv1.ListBillingViewsRequest{GranteeAccountId: acctT})},

		{name: "ReportCost", method: "ReportCost", allow: with(readers, "P", "Q"), check: checkCost,
			call: query(billingv1connect.QueryServiceClient.ReportCost, &billingv1.ReportCostRequest{Month: "2026-09"})},
		{name: "ReportCost of payer Q", method: "ReportCost", allow: with(readers, "Q"), check: checkCost,
			call: query(billingv1connect.QueryServiceClient.ReportCost, &billingv1.ReportCostRequest{Month: "2026-09", PayerAccountId: acctQ})},

		{name: "ReportInvoices", method: "ReportInvoices", allow: with(readers, "P", "Q"), check: checkInvoices,
			call: query(billingv1connect.QueryServiceClient.ReportInvoices, &billingv1.ReportInvoicesRequest{Month: "2026-09"})},
		{name: "ReportInvoices of source T", method: "ReportInvoices", allow: with(readers, "Q"), check: checkInvoices,
			call: query(billingv1connect.QueryServiceClient.ReportInvoices, &billingv1.ReportInvoicesRequest{Month: "2026-09", SourceAccountId: acctT})},
		{name: "ReportInvoices of payer P", method: "ReportInvoices", allow: with(readers, "P"), check: checkInvoices,
			call: query(billingv1connect.QueryServiceClient.ReportInvoices, &billingv1.ReportInvoicesRequest{Month: "2026-09", PayerAccountId: acctP})},

		{name: "ReportPayments", method: "ReportPayments", allow: with(readers, "P", "Q"), check: checkPayments,
			call: query(billingv1connect.QueryServiceClient.ReportPayments, &billingv1.ReportPaymentsRequest{})},
		{name: "ReportPayments of payer Q", method: "ReportPayments", allow: with(readers, "Q"), check: checkPayments,
			call: query(billingv1connect.QueryServiceClient.ReportPayments, &billingv1.ReportPaymentsRequest{PayerAccountId: acctQ})},
		{name: "ReportPayments of source S (A3: paid for once)", method: "ReportPayments", allow: with(readers, "P"), check: checkPayments,
			call: query(billingv1connect.QueryServiceClient.ReportPayments, &billingv1.ReportPaymentsRequest{SourceAccountId: acctS})},

		{name: "ReportTax", method: "ReportTax", allow: with(readers, "P", "Q"), check: checkTax,
			call: query(billingv1connect.QueryServiceClient.ReportTax, &billingv1.ReportTaxRequest{Month: "2026-09"})},
		{name: "ReportTax of payer Q", method: "ReportTax", allow: with(readers, "Q"), check: checkTax,
			call: query(billingv1connect.QueryServiceClient.ReportTax, &billingv1.ReportTaxRequest{Month: "2026-09", PayerAccountId: acctQ})},

		// UsageService.
		{name: "IngestBatch", method: "IngestBatch", write: true, allow: []string{"admin", "ingest"},
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.usage.IngestBatch(ctx, bearer(&billingv1.IngestBatchRequest{Records: []*billingv1.UsageRecord{{UsageId: "u-bad-" + who}}}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "ListDeadLetters", method: "ListDeadLetters", allow: readers,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.usage.ListDeadLetters(ctx, bearer(&billingv1.ListDeadLettersRequest{}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "RedriveDeadLetters", method: "RedriveDeadLetters", write: true, allow: adminOnly,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.usage.RedriveDeadLetters(ctx, bearer(&billingv1.RedriveDeadLettersRequest{DeadLetterIds: []string{"dl-none"}}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},

		// AdminService.
		{name: "SetClock", method: "SetClock", write: true, allow: adminOnly,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.admin.SetClock(ctx, bearer(&billingv1.SetClockRequest{Time: "2026-10-15T00:00:00Z"}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "GetServerInfo", method: "GetServerInfo", allow: everyone,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.admin.GetServerInfo(ctx, bearer(&billingv1.GetServerInfoRequest{}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "CreateToken", method: "CreateToken", write: true, allow: adminOnly,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.admin.CreateToken(ctx, bearer(&billingv1.CreateTokenRequest{Role: auth.RoleAuditor, Name: "by-" + who}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "ListTokens", method: "ListTokens", allow: adminOnly, check: checkTokenList,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.admin.ListTokens(ctx, bearer(&billingv1.ListTokensRequest{IncludeRevoked: true}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
		{name: "RevokeToken", method: "RevokeToken", write: true, allow: adminOnly,
			call: func(ctx context.Context, f *accessFixture, who string) (proto.Message, error) {
				res, err := f.admin.RevokeToken(ctx, bearer(&billingv1.RevokeTokenRequest{TokenId: "tok-none"}, f.tokens[who]))
				if err != nil {
					return nil, err
				}
				return res.Msg, nil
			}},
	}
}

// TestA2_AuthorizationTable calls every procedure with a real token of every
// role, against its own and foreign data, and asserts the exact outcome:
// allowed (reads answer rows of the caller only; a source never sees billed
// cost, margin or another organization's account) or PERMISSION_DENIED with
// an ErrorInfo naming the procedure (never an empty success). Denied commands
// append nothing.
func TestA2_AuthorizationTable(t *testing.T) {
	f := accessWorld(t)
	ctx := context.Background()
	covered := map[string]bool{}
	for _, tc := range authzTable() {
		covered[tc.method] = true
		for _, who := range principals {
			t.Run(tc.name+"/"+who, func(t *testing.T) {
				before, _ := f.store.LastPosition(ctx)
				res, err := tc.call(ctx, f, who)
				allowed := slices.Contains(tc.allow, who)
				if !allowed {
					if ok, why := isDenied(err, tc.method); !ok {
						t.Fatalf("want PERMISSION_DENIED naming %s: %s (response %v)", tc.method, why, res)
					}
					if after, _ := f.store.LastPosition(ctx); after != before {
						t.Fatalf("a denied call appended events (position %d → %d)", before, after)
					}
					return
				}
				if tc.write {
					if code := connect.CodeOf(err); err != nil && (code == connect.CodePermissionDenied || code == connect.CodeUnauthenticated) {
						t.Fatalf("want authorized, got %v", err)
					}
					return
				}
				if tc.code != 0 {
					if connect.CodeOf(err) != tc.code {
						t.Fatalf("want %v, got %v", tc.code, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				if s := string(mustJSON(t, res)); foreignTo[who] != nil {
					assertNoLeak(t, who, []byte(s))
				}
				if tc.check != nil {
					tc.check(t, who, res)
				}
			})
		}
	}
	// Every method of the API has a row.
	for _, sd := range []string{"CommandService", "QueryService", "UsageService", "AdminService"} {
		desc := billingv1.File_billing_v1_api_proto.Services().ByName(protoName(sd))
		for i := 0; i < desc.Methods().Len(); i++ {
			if m := string(desc.Methods().Get(i).Name()); !covered[m] {
				t.Errorf("the authorization table has no case for %s.%s", sd, m)
			}
		}
	}
}

// TestA2_HTTPRoutesAreAuthorized: POST /v1/usage (as IngestBatch) and GET
// /metrics answer 401 without a token and 403 for the roles the table denies.
func TestA2_HTTPRoutesAreAuthorized(t *testing.T) {
	f := accessWorld(t)
	for _, route := range []struct {
		method, path, body string
		allow              []string
	}{
		{http.MethodPost, api.UsageJSONLinesPath, `{"usage_id":"u-http"}` + "\n", []string{"admin", "ingest"}},
		{http.MethodGet, "/metrics", "", readers},
	} {
		for _, who := range append([]string{"nobody"}, principals...) {
			t.Run(route.path+"/"+who, func(t *testing.T) {
				req, _ := http.NewRequest(route.method, f.url+route.path, strings.NewReader(route.body))
				req.Header.Set("Content-Type", "application/jsonl")
				if tok := f.tokens[who]; tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				res, err := f.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				_ = res.Body.Close()
				want := http.StatusForbidden
				switch {
				case who == "nobody":
					want = http.StatusUnauthorized
				case slices.Contains(route.allow, who):
					want = http.StatusOK
				}
				if res.StatusCode != want {
					t.Fatalf("status %d, want %d: %s", res.StatusCode, want, body)
				}
				if want == http.StatusForbidden && !bytes.Contains(body, []byte("PERMISSION_DENIED")) {
					t.Fatalf("403 without PERMISSION_DENIED: %s", body)
				}
			})
		}
	}
	if res, err := f.http.Get(f.url + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", res, err)
	}
}

// TestA1_RevokedTokenIsRejectedAtOnce: a token created and revoked through
// the API stops working on the next request.
func TestA1_RevokedTokenIsRejectedAtOnce(t *testing.T) {
	f := accessWorld(t)
	ctx := context.Background()
	created, err := f.admin.CreateToken(ctx, bearer(&billingv1.CreateTokenRequest{Role: auth.RolePayer, AccountId: acctQ, Name: "short-lived"}, f.tokens["admin"]))
	if err != nil {
		t.Fatal(err)
	}
	tok, id := created.Msg.GetToken(), created.Msg.GetInfo().GetTokenId()
	if _, err := f.query.ReportCost(ctx, bearer(&billingv1.ReportCostRequest{Month: "2026-09"}, tok)); err != nil {
		t.Fatalf("new token: %v", err)
	}
	if _, err := f.admin.RevokeToken(ctx, bearer(&billingv1.RevokeTokenRequest{TokenId: id, Reason: "test"}, f.tokens["admin"])); err != nil {
		t.Fatal(err)
	}
	if _, err := f.query.ReportCost(ctx, bearer(&billingv1.ReportCostRequest{Month: "2026-09"}, tok)); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("revoked token: %v, want UNAUTHENTICATED", err)
	}
	_, err = f.admin.RevokeToken(ctx, bearer(&billingv1.RevokeTokenRequest{TokenId: "file:admin"}, f.tokens["admin"]))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("revoking the file token: %v", err)
	}
	// Payer and source tokens name a registered management account.
	for _, req := range []*billingv1.CreateTokenRequest{
		{Role: auth.RolePayer},
		{Role: auth.RoleSource, AccountId: acctS2},
		{Role: auth.RoleSource, AccountId: "999999999999"},
		{Role: "root"},
	} {
		if _, err := f.admin.CreateToken(ctx, bearer(req, f.tokens["admin"])); err == nil {
			t.Errorf("CreateToken(%v) accepted", req)
		}
	}
}

// TestA2_PolicyTableCoversEveryProcedure keeps the table complete: every
// procedure of the generated services has a row.
func TestA2_PolicyTableCoversEveryProcedure(t *testing.T) {
	table := api.PolicyTable()
	for _, sd := range []string{"CommandService", "QueryService", "UsageService", "AdminService"} {
		desc := billingv1.File_billing_v1_api_proto.Services().ByName(protoName(sd))
		for i := 0; i < desc.Methods().Len(); i++ {
			proc := fmt.Sprintf("/billing.v1.%s/%s", sd, desc.Methods().Get(i).Name())
			if _, ok := table[proc]; !ok {
				t.Errorf("%s has no row in the authorization table", proc)
			}
		}
	}
}

func mustJSON(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// leakWords are what a source's answer must never mention (A2), in the
// proto and in the JSON (camelCase) spelling, compared case-insensitively.
var leakWords = []string{"billed_cost", "billedcost", "billable_cost", "billablecost", "margin"}

// assertNoLeak fails when body names billed cost, margin or an account of
// another organization.
func assertNoLeak(t *testing.T, who string, body []byte) {
	t.Helper()
	if leak := findLeak(who, body); leak != "" {
		t.Fatalf("%s's answer leaks %s: %s", who, leak, body)
	}
}

func findLeak(who string, body []byte) string {
	lower := strings.ToLower(string(body))
	for _, w := range leakWords {
		if strings.Contains(lower, w) {
			return fmt.Sprintf("%q", w)
		}
	}
	for _, a := range foreignTo[who] {
		if strings.Contains(lower, a) {
			return "account " + a
		}
	}
	return ""
}
