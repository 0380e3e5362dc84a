package main

import (
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// reportCmd groups the read-model reports.
type reportCmd struct {
	Transfers reportTransfersCmd `cmd:"" help:"List transfers (the transfers read model)."`
	Billable  reportBillableCmd  `cmd:"" help:"Billed cost of a month by payer, source organization, account and service (the billable read model)."`
	Proforma  reportProformaCmd  `cmd:"" help:"Pro forma cost of a month by payer, billing group, account and service, with custom line items (the pro forma read model)."`
	Cost      reportCostCmd      `cmd:"" help:"Billable cost, pro forma cost and margin of a month per billing group (the cost report)."`
	Invoices  reportInvoicesCmd  `cmd:"" help:"Invoices issued for a month, with totals, tax, paid, outstanding and status (the invoices read model)."`
	Payments  reportPaymentsCmd  `cmd:"" help:"Per invoice issued, paid, outstanding and status; balances per payer and source organization; payments and their allocations."`
	Tax       reportTaxCmd       `cmd:"" help:"Tax of a month per invoice and jurisdiction: taxable, rate, tax (the tax read model)."`
}

// noGroup is how tables show billing group "": usage no billing group of the
// payer prices, at list cost.
const noGroup = "(none)"

func groupCell(id string) string {
	if id == "" {
		return noGroup
	}
	return id
}

// reportProformaCmd is `billctl report proforma --month M`.
type reportProformaCmd struct {
	Month        string `required:"" help:"Billing month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer        string `help:"Only the billing groups of this payer (its prices)." placeholder:"ID"`
	BillingGroup string `name:"billing-group" help:"Only this billing group." placeholder:"ID"`
	Account      string `help:"Only this account (its usage and the custom line items charged to it)." placeholder:"ID"`
	BillingView  string `name:"billing-view" help:"Only the rows of this billing view (one you own or were granted)." placeholder:"ID"`
}

// Run prints the pro forma rows and a TOTAL line, or with -o json
// {"rows":[{"month":…,"owner_account_id":…,"billing_group_id":…,"account_id":…,"service":…,"proforma_cost":…}],"total":…}.
// A custom line item is a row whose service is the item's name (P5).
func (c *reportProformaCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportProforma(ctx, connect.NewRequest(&billingv1.ReportProformaRequest{
		Month:          c.Month,
		PayerAccountId: c.Payer,
		BillingGroupId: c.BillingGroup,
		AccountId:      c.Account,
		BillingViewId:  c.BillingView,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"MONTH", "PAYER", "BILLING_GROUP", "ACCOUNT", "SERVICE", "LIST_COST", "PROFORMA_COST"}}
	for _, r := range res.Msg.GetRows() {
		service, list := r.GetService(), r.GetListCost()
		if r.GetCustomLineItemId() != "" {
			service += " (custom line item " + r.GetCustomLineItemId() + ")"
			list = ""
		}
		rows = append(rows, []string{r.GetMonth(), r.GetOwnerAccountId(), groupCell(r.GetBillingGroupId()),
			r.GetAccountId(), service, list, r.GetProformaCost()})
	}
	return writeTableWithFooter(a.stdout, rows, []string{"TOTAL", "", "", "", "", "", orZero(res.Msg.GetTotal())})
}

// reportCostCmd is `billctl report cost --month M`.
type reportCostCmd struct {
	Month string `required:"" help:"Billing month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer string `help:"Only the billing groups of this payer." placeholder:"ID"`
}

// Run prints one row per billing group and a TOTAL line, or with -o json
// {"rows":[{"billing_group_id":…,"billable_cost":…,"proforma_cost":…,"margin":…,"margin_percentage":…}],…}.
func (c *reportCostCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportCost(ctx, connect.NewRequest(&billingv1.ReportCostRequest{
		Month:          c.Month,
		PayerAccountId: c.Payer,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"MONTH", "PAYER", "BILLING_GROUP", "BILLABLE_COST", "PROFORMA_COST", "MARGIN", "MARGIN_%"}}
	for _, r := range res.Msg.GetRows() {
		rows = append(rows, []string{r.GetMonth(), r.GetOwnerAccountId(), groupCell(r.GetBillingGroupId()),
			r.GetBillableCost(), r.GetProformaCost(), r.GetMargin(), r.GetMarginPercentage()})
	}
	m := res.Msg
	return writeTableWithFooter(a.stdout, rows, []string{"TOTAL", "", "", orZero(m.GetBillableTotal()),
		orZero(m.GetProformaTotal()), orZero(m.GetMarginTotal()), m.GetMarginPercentage()})
}

// orZero shows an absent total as 0.
func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// reportBillableCmd is `billctl report billable --month M`.
type reportBillableCmd struct {
	Month  string `required:"" help:"Billing month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer  string `help:"Only usage billed to this payer (bill transfer account)." placeholder:"ID"`
	Source string `help:"Only usage of this source organization (management account id)." placeholder:"ID"`
}

// Run prints the billable rows and a TOTAL line, or with -o json
// {"rows":[{"month":…,"payer_account_id":…,…,"billed_cost":…}],"total":…}.
func (c *reportBillableCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportBillable(ctx, connect.NewRequest(&billingv1.ReportBillableRequest{
		Month:           c.Month,
		PayerAccountId:  c.Payer,
		SourceAccountId: c.Source,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"MONTH", "PAYER", "SOURCE", "ACCOUNT", "SERVICE", "BILLED_COST"}}
	for _, r := range res.Msg.GetRows() {
		rows = append(rows, []string{r.GetMonth(), r.GetPayerAccountId(), r.GetSourceAccountId(),
			r.GetAccountId(), r.GetService(), r.GetBilledCost()})
	}
	total := res.Msg.GetTotal()
	if total == "" {
		total = "0"
	}
	return writeTableWithFooter(a.stdout, rows, []string{"TOTAL", "", "", "", "", total})
}

// reportTransfersCmd is `billctl report transfers`.
type reportTransfersCmd struct {
	Payer  string `help:"Only transfers paid by this account." placeholder:"ID"`
	Source string `help:"Only transfers of this source organization." placeholder:"ID"`
	Status string `help:"Only transfers in this status (REQUESTED, ACCEPTED, DECLINED, CANCELED, EXPIRED, WITHDRAWN)." placeholder:"S"`
}

// Run prints the matching transfers as a table, or {"transfers":[…]} with -o json.
func (c *reportTransfersCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ListTransfers(ctx, connect.NewRequest(&billingv1.ListTransfersRequest{
		PayerAccountId:  c.Payer,
		SourceAccountId: c.Source,
		Status:          c.Status,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"TRANSFER", "PAYER", "SOURCE", "STATUS", "START", "END", "PLAN", "EXPIRES"}}
	for _, t := range res.Msg.GetTransfers() {
		rows = append(rows, []string{
			t.GetTransferId(), t.GetPayerAccountId(), t.GetSourceAccountId(), t.GetStatus(),
			t.GetStartTime(), t.GetEndTime(), t.GetPricingPlanId(), t.GetExpiresAt(),
		})
	}
	return writeTable(a.stdout, rows)
}

// clockCmd groups the clock commands.
type clockCmd struct {
	Set clockSetCmd `cmd:"" help:"Move the simulated clock forward (admin; billingd must run with --simulated-clock)."`
}

// clockSetCmd is `billctl clock set TIME`.
type clockSetCmd struct {
	Time string `arg:"" help:"New time: RFC 3339 (2026-05-01T00:00:00Z) or a date (2026-05-01, midnight UTC)." placeholder:"TIME"`
}

// Run validates the time locally, sends it and prints the server's clock.
func (c *clockSetCmd) Run(a *app) error {
	t, err := clock.Parse(c.Time)
	if err != nil {
		return invalid("%v", err)
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().SetClock(ctx, connect.NewRequest(&billingv1.SetClockRequest{Time: t.Format(time.RFC3339Nano)}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	_, err = fmt.Fprintf(a.stdout, "clock set to %s\n", res.Msg.GetNow())
	return err
}

// infoCmd is `billctl info`.
type infoCmd struct{}

// Run prints GetServerInfo.
func (c *infoCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.adminClient().GetServerInfo(ctx, connect.NewRequest(&billingv1.GetServerInfoRequest{}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	m := res.Msg
	return writeTable(a.stdout, [][]string{
		{"server", a.server},
		{"nats_url", m.GetNatsUrl()},
		{"now", m.GetNow()},
		{"simulated_clock", strconv.FormatBool(m.GetSimulatedClock())},
		{"last_position", strconv.FormatUint(m.GetLastPosition(), 10)},
	})
}
