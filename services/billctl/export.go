package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// exportCmd groups the exports (R4).
type exportCmd struct {
	Focus exportFocusCmd `cmd:"" help:"Write the billable or pro forma view of a month as a FOCUS 1.2 CSV."`
}

// exportFocusCmd is `billctl export focus --month M --view billable|proforma
// [--payer ID] --out FILE.csv` (DESIGN R4). It reads the view through the
// query API (so a token sees only what it may read) and writes one FOCUS row
// per read-model row:
//
//   - billable: BillingAccountId = payer, SubAccountId = account,
//     x_SourceAccountId = source organization, ServiceName, PricingQuantity =
//     usage quantity, BilledCost = EffectiveCost = billed cost (full
//     precision), BillingCurrency, and for a closed month InvoiceId and
//     InvoiceIssuerName from the invoice the account's usage is on. Importing
//     the file (`usage import --format focus`) into a ledger with the same
//     organizations reproduces the billable view's costs to the last decimal:
//     each row becomes one usage record with a stable x_UsageId.
//   - proforma: BillingAccountId = the pro forma's owner, SubAccountId =
//     account, x_BillingGroupId, ListCost, BilledCost = EffectiveCost = pro
//     forma cost; custom line items are ChargeCategory Adjustment (Credit when
//     negative) with x_CustomLineItemId.
//
// Charge and billing periods are the month ([start of month, start of the
// next month)); rows aggregate the month, so ChargeClass is empty.
type exportFocusCmd struct {
	Month string `required:"" help:"Month, YYYY-MM." placeholder:"YYYY-MM"`
	View  string `required:"" enum:"billable,proforma" help:"View to export: ${enum}." placeholder:"VIEW"`
	Payer string `help:"Only this payer's rows (billable: the payer; proforma: the owner)." placeholder:"ID"`
	Out   string `required:"" help:"CSV file to write; - writes stdout." placeholder:"FILE.csv"`
}

// focusExportColumns are the columns written, FOCUS 1.2 names then x_ extensions.
var focusExportColumns = []string{
	"BillingAccountId", "SubAccountId", "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd",
	"ChargeCategory", "ChargeClass", "ChargeDescription", "ServiceName", "RegionId", "PricingQuantity", "PricingUnit",
	"ListUnitPrice", "ListCost", "BilledCost", "EffectiveCost", "BillingCurrency", "InvoiceIssuerName", "InvoiceId", "Tags",
	"x_UsageId", "x_SourceAccountId", "x_BillingGroupId", "x_CustomLineItemId", "x_RecordCount",
}

// Run writes the file.
func (c *exportFocusCmd) Run(a *app) error {
	m, err := domain.ParseMonth(c.Month)
	if err != nil {
		return invalid("--month %q is not a month (YYYY-MM, e.g. 2026-09)", c.Month)
	}
	if err := checkAccountFlag("payer", c.Payer); err != nil {
		return err
	}
	var rows [][]string
	switch c.View {
	case "billable":
		rows, err = c.billableRows(a, m)
	default:
		rows, err = c.proformaRows(a, m)
	}
	if err != nil {
		return err
	}
	var w io.Writer = a.stdout
	var f *os.File
	if c.Out != "-" {
		if f, err = os.Create(c.Out); err != nil {
			return fmt.Errorf("export focus: %w", err)
		}
		w = f
	}
	cw := csv.NewWriter(w)
	_ = cw.Write(focusExportColumns)
	_ = cw.WriteAll(rows) // flushes
	err = cw.Error()
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			fmt.Fprintf(a.stderr, "exported %d %s rows of %s to %s\n", len(rows), c.View, c.Month, c.Out)
		}
	}
	if err != nil {
		return fmt.Errorf("export focus: %w", err)
	}
	return nil
}

// focusRow builds a row from column values by name.
func focusRow(m domain.Month, values map[string]string) []string {
	start, end := m.Start().Format(time.RFC3339), m.AddMonths(1).Start().Format(time.RFC3339)
	values["BillingPeriodStart"], values["BillingPeriodEnd"] = start, end
	values["ChargePeriodStart"], values["ChargePeriodEnd"] = start, end
	if values["Tags"] == "" {
		values["Tags"] = "{}"
	}
	row := make([]string, len(focusExportColumns))
	for i, col := range focusExportColumns {
		row[i] = values[col]
	}
	return row
}

func (c *exportFocusCmd) billableRows(a *app, m domain.Month) ([][]string, error) {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportBillable(ctx, connect.NewRequest(&billingv1.ReportBillableRequest{Month: c.Month, PayerAccountId: c.Payer}))
	if err != nil {
		return nil, err
	}
	// The invoice each account's usage is on, when the month is closed.
	type inv struct{ id, seller string }
	invoiceOf := map[string]inv{}
	ir, err := a.queryClient().ReportInvoices(ctx, connect.NewRequest(&billingv1.ReportInvoicesRequest{Month: c.Month, PayerAccountId: c.Payer}))
	switch {
	case err == nil:
	case connect.CodeOf(err) == connect.CodePermissionDenied:
		ir = connect.NewResponse(&billingv1.ReportInvoicesResponse{}) // a token that may not read invoices
	default:
		return nil, err
	}
	for _, r := range ir.Msg.GetRows() {
		for _, l := range r.GetLines() {
			invoiceOf[r.GetPayerAccountId()+" "+l.GetAccountId()] = inv{r.GetInvoiceId(), r.GetSeller()}
		}
	}
	var rows [][]string
	for _, r := range res.Msg.GetRows() {
		i := invoiceOf[r.GetPayerAccountId()+" "+r.GetAccountId()]
		rows = append(rows, focusRow(m, map[string]string{
			"BillingAccountId": r.GetPayerAccountId(), "SubAccountId": r.GetAccountId(), "ChargeCategory": "Usage",
			"ChargeDescription": r.GetService() + " usage of " + r.GetMonth(), "ServiceName": r.GetService(),
			"PricingQuantity": r.GetUsageQuantity(), "BilledCost": r.GetBilledCost(), "EffectiveCost": r.GetBilledCost(),
			"BillingCurrency": r.GetCurrency(), "InvoiceIssuerName": i.seller, "InvoiceId": i.id,
			"x_UsageId":         "focus-export-" + strings.Join([]string{r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetAccountId(), r.GetService()}, "-"),
			"x_SourceAccountId": r.GetSourceAccountId(), "x_RecordCount": fmt.Sprint(r.GetRecordCount()),
		}))
	}
	return rows, nil
}

func (c *exportFocusCmd) proformaRows(a *app, m domain.Month) ([][]string, error) {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportProforma(ctx, connect.NewRequest(&billingv1.ReportProformaRequest{Month: c.Month, PayerAccountId: c.Payer}))
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, r := range res.Msg.GetRows() {
		v := map[string]string{
			"BillingAccountId": r.GetOwnerAccountId(), "SubAccountId": r.GetAccountId(), "ServiceName": r.GetService(),
			"ListCost": r.GetListCost(), "BilledCost": r.GetProformaCost(), "EffectiveCost": r.GetProformaCost(),
			"BillingCurrency": "USD", "x_BillingGroupId": r.GetBillingGroupId(), "x_CustomLineItemId": r.GetCustomLineItemId(),
			"x_RecordCount": fmt.Sprint(r.GetRecordCount()), "ChargeCategory": "Usage",
			"ChargeDescription": r.GetService() + " pro forma of " + r.GetMonth(),
		}
		if r.GetCustomLineItemId() != "" {
			v["ChargeCategory"], v["ChargeDescription"] = "Adjustment", "custom line item "+r.GetCustomLineItemId()
			if strings.HasPrefix(r.GetProformaCost(), "-") {
				v["ChargeCategory"] = "Credit"
			}
		}
		rows = append(rows, focusRow(m, v))
	}
	return rows, nil
}
