package api_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// fakeProforma returns canned answers and remembers the requests.
type fakeProforma struct {
	mu       sync.Mutex
	proforma *billingv1.ReportProformaRequest
	cost     *billingv1.ReportCostRequest
	calls    int
}

func (f *fakeProforma) ReportProforma(_ context.Context, req *billingv1.ReportProformaRequest) (*billingv1.ReportProformaResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proforma, f.calls = req, f.calls+1
	return &billingv1.ReportProformaResponse{
		Rows: []*billingv1.ProformaRow{{Month: req.GetMonth(), OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-1",
			AccountId: "222222222223", Service: "AmazonEC2", ListCost: "0.96", ProformaCost: "0.912", RecordCount: 1}},
		Total: "0.912",
	}, nil
}

func (f *fakeProforma) ReportCost(_ context.Context, req *billingv1.ReportCostRequest) (*billingv1.ReportCostResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cost, f.calls = req, f.calls+1
	return &billingv1.ReportCostResponse{
		Rows: []*billingv1.CostRow{{Month: req.GetMonth(), OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-1",
			BillableCost: "0.8", ProformaCost: "0.912", Margin: "0.112", MarginPercentage: "12.28"}},
		BillableTotal: "0.8", ProformaTotal: "0.912", MarginTotal: "0.112", MarginPercentage: "12.28",
	}, nil
}

func TestReportProformaAndCost(t *testing.T) {
	t.Parallel()

	t.Run("trim the filters and wait for the last position", func(t *testing.T) {
		t.Parallel()
		p, w := &fakeProforma{}, &fakeWaiter{reached: 8}
		e := newEnv(t, api.Options{Proforma: p, Waiter: w, Positions: fixedPosition(8)})
		res, err := e.query.ReportProforma(context.Background(), withToken(&billingv1.ReportProformaRequest{
			Month: " 2026-09 ", PayerAccountId: "111111111111 ", BillingGroupId: " tbg-rt-1", AccountId: "222222222223",
		}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Msg.GetRows()) != 1 || res.Msg.GetTotal() != "0.912" || res.Msg.GetCheckpoint() != 8 {
			t.Fatalf("response = %v", res.Msg)
		}
		cost, err := e.query.ReportCost(context.Background(), withToken(&billingv1.ReportCostRequest{Month: "2026-09 ", PayerAccountId: " 111111111111"}, adminToken))
		if err != nil {
			t.Fatal(err)
		}
		if cost.Msg.GetMarginTotal() != "0.112" || cost.Msg.GetCheckpoint() != 8 || len(cost.Msg.GetRows()) != 1 {
			t.Fatalf("cost response = %v", cost.Msg)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if got := p.proforma; got.GetMonth() != "2026-09" || got.GetPayerAccountId() != "111111111111" || got.GetBillingGroupId() != "tbg-rt-1" || got.GetAccountId() != "222222222223" {
			t.Fatalf("pro forma request reaching the reader = %v", got)
		}
		if got := p.cost; got.GetMonth() != "2026-09" || got.GetPayerAccountId() != "111111111111" {
			t.Fatalf("cost request reaching the reader = %v", got)
		}
		if !slices.Equal(w.asked, []uint64{8, 8}) {
			t.Fatalf("waited for %v, want [8 8]", w.asked)
		}
	})

	t.Run("invalid requests name the value and never reach the reader", func(t *testing.T) {
		t.Parallel()
		p := &fakeProforma{}
		e := newEnv(t, api.Options{Proforma: p})
		for _, tc := range []struct {
			req  *billingv1.ReportProformaRequest
			want string
		}{
			{&billingv1.ReportProformaRequest{}, "month is required"},
			{&billingv1.ReportProformaRequest{Month: "2026-13"}, `month "2026-13"`},
			{&billingv1.ReportProformaRequest{Month: "2026-09", PayerAccountId: "12"}, `payer_account_id "12"`},
			{&billingv1.ReportProformaRequest{Month: "2026-09", AccountId: "22222222222x"}, `account_id "22222222222x"`},
			{&billingv1.ReportProformaRequest{Month: "2026-09", BillingGroupId: "bg acme"}, `billing_group_id "bg acme"`},
		} {
			_, err := e.query.ReportProforma(context.Background(), withToken(tc.req, adminToken))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), tc.want) {
				t.Errorf("%v: err = %v, want INVALID_ARGUMENT containing %q", tc.req, err, tc.want)
			}
		}
		for _, tc := range []struct {
			req  *billingv1.ReportCostRequest
			want string
		}{
			{&billingv1.ReportCostRequest{Month: "2026/09"}, `month "2026/09"`},
			{&billingv1.ReportCostRequest{Month: "2026-09", PayerAccountId: "abc"}, `payer_account_id "abc"`},
		} {
			_, err := e.query.ReportCost(context.Background(), withToken(tc.req, adminToken))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(errorInfo(t, err).GetMessage(), tc.want) {
				t.Errorf("%v: err = %v, want INVALID_ARGUMENT containing %q", tc.req, err, tc.want)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.calls != 0 {
			t.Fatalf("reader called %d times", p.calls)
		}
	})

	t.Run("unwired, they are unimplemented", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, api.Options{})
		_, err1 := e.query.ReportProforma(context.Background(), withToken(&billingv1.ReportProformaRequest{Month: "2026-09"}, adminToken))
		_, err2 := e.query.ReportCost(context.Background(), withToken(&billingv1.ReportCostRequest{Month: "2026-09"}, adminToken))
		for _, err := range []error{err1, err2} {
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(errorInfo(t, err).GetMessage(), "this process does not serve") {
				t.Errorf("err = %v, want UNIMPLEMENTED", err)
			}
		}
	})

	t.Run("an auditor reads the cost report as it is", func(t *testing.T) {
		t.Parallel()
		p := &fakeProforma{}
		e := newEnv(t, api.Options{Proforma: p})
		res, err := e.query.ReportCost(context.Background(), withToken(&billingv1.ReportCostRequest{Month: "2026-09"}, auditorToken))
		if err != nil || len(res.Msg.GetRows()) != 1 {
			t.Fatalf("auditor: %v, %v", res, err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cost.GetPayerAccountId() != "" {
			t.Fatalf("the auditor's query was narrowed: %v", p.cost)
		}
	})
}
