package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/billtransfer/ledger/services/api"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// proformaRows is a ProformaReader with a usage row, a row of usage in no
// billing group and a custom line item; it remembers the requests.
type proformaRows struct {
	mu       sync.Mutex
	proforma *billingv1.ReportProformaRequest
	cost     *billingv1.ReportCostRequest
}

func (p *proformaRows) ReportProforma(_ context.Context, req *billingv1.ReportProformaRequest) (*billingv1.ReportProformaResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.proforma = req
	m := req.GetMonth()
	return &billingv1.ReportProformaResponse{
		Rows: []*billingv1.ProformaRow{
			{Month: m, OwnerAccountId: "111111111111", AccountId: "111111111112", Service: "AmazonEC2", ListCost: "0.096", ProformaCost: "0.096", RecordCount: 1},
			{Month: m, OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-acme", AccountId: "222222222223", Service: "AmazonEC2",
				ListCost: "0.96", ProformaCost: "0.912", RecordCount: 1},
			{Month: m, OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-acme", AccountId: "222222222222", Service: "promo",
				CustomLineItemId: "cli-credit", ListCost: "0", ProformaCost: "-50"},
		},
		Total: "-48.992",
	}, nil
}

func (p *proformaRows) ReportCost(_ context.Context, req *billingv1.ReportCostRequest) (*billingv1.ReportCostResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cost = req
	m := req.GetMonth()
	return &billingv1.ReportCostResponse{
		Rows: []*billingv1.CostRow{
			{Month: m, OwnerAccountId: "111111111111", BillableCost: "0.09", ProformaCost: "0.096", Margin: "0.006", MarginPercentage: "6.25"},
			{Month: m, OwnerAccountId: "111111111111", BillingGroupId: "tbg-rt-acme", BillableCost: "0.8", ProformaCost: "0", Margin: "-0.8"},
		},
		BillableTotal: "0.89", ProformaTotal: "0.096", MarginTotal: "-0.794", MarginPercentage: "-827.08",
	}, nil
}

func TestReportProforma(t *testing.T) {
	t.Parallel()
	p := &proformaRows{}
	url := newServer(t, api.Options{Proforma: p})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "proforma", "--month", "2026-09",
		"--payer", "111111111111", "--billing-group", "tbg-rt-acme", "--account", "222222222223")
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := `MONTH    PAYER         BILLING_GROUP  ACCOUNT       SERVICE                              LIST_COST  PROFORMA_COST
2026-09  111111111111  (none)         111111111112  AmazonEC2                            0.096      0.096
2026-09  111111111111  tbg-rt-acme    222222222223  AmazonEC2                            0.96       0.912
2026-09  111111111111  tbg-rt-acme    222222222222  promo (custom line item cli-credit)  -          -50
TOTAL                                                                                               -48.992
`
	if stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", stdout, want)
	}
	p.mu.Lock()
	req := p.proforma
	p.mu.Unlock()
	if req.GetPayerAccountId() != "111111111111" || req.GetBillingGroupId() != "tbg-rt-acme" || req.GetAccountId() != "222222222223" {
		t.Fatalf("request = %v", req)
	}

	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "proforma", "--month", "2026-09")
	var doc struct {
		Rows  []map[string]any `json:"rows"`
		Total string           `json:"total"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.Rows) != 3 || doc.Total != "-48.992" {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	for _, k := range []string{"month", "owner_account_id", "billing_group_id", "account_id", "service", "custom_line_item_id", "list_cost", "proforma_cost"} {
		if _, ok := doc.Rows[0][k]; !ok {
			t.Errorf("row lacks %q: %v", k, doc.Rows[0])
		}
	}
	if code, _, _ := runCLI(t, "", "--server", url, "--token", testToken, "report", "proforma"); code != exitUsage {
		t.Fatalf("missing --month: exit %d, want %d", code, exitUsage)
	}
	code, _, stderr = runCLI(t, "", "--server", url, "--token", testToken, "report", "proforma", "--month", "2026-09", "--account", "12")
	if code != 1 || !strings.HasPrefix(stderr, `INVALID_ARGUMENT: account_id "12"`) {
		t.Fatalf("bad account: exit %d stderr %q", code, stderr)
	}
}

func TestReportCost(t *testing.T) {
	t.Parallel()
	p := &proformaRows{}
	url := newServer(t, api.Options{Proforma: p})
	code, stdout, stderr := runCLI(t, "", "--server", url, "--token", testToken, "report", "cost", "--month", "2026-09", "--payer", "111111111111")
	if code != 0 {
		t.Fatalf("exit %d stderr %q", code, stderr)
	}
	want := `MONTH    PAYER         BILLING_GROUP  BILLABLE_COST  PROFORMA_COST  MARGIN  MARGIN_%
2026-09  111111111111  (none)         0.09           0.096          0.006   6.25
2026-09  111111111111  tbg-rt-acme    0.8            0              -0.8    -
TOTAL                                 0.89           0.096          -0.794  -827.08
`
	if stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", stdout, want)
	}
	code, stdout, _ = runCLI(t, "", "--server", url, "--token", testToken, "-o", "json", "report", "cost", "--month", "2026-09")
	var doc struct {
		Rows []map[string]any `json:"rows"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || len(doc.Rows) != 2 {
		t.Fatalf("json: exit %d stdout %s", code, stdout)
	}
	for _, k := range []string{"billing_group_id", "owner_account_id", "billable_cost", "proforma_cost", "margin", "margin_percentage"} {
		if _, ok := doc.Rows[1][k]; !ok {
			t.Errorf("row lacks %q: %v", k, doc.Rows[1])
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cost.GetMonth() != "2026-09" || p.cost.GetPayerAccountId() != "" {
		t.Fatalf("last request = %v", p.cost)
	}
}
