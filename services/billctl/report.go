package main

import (
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// reportCmd groups the read-model reports; later issues add proforma, cost,
// invoices, payments and tax next to transfers and billable.
type reportCmd struct {
	Transfers reportTransfersCmd `cmd:"" help:"List transfers (the transfers read model)."`
	Billable  reportBillableCmd  `cmd:"" help:"Billed cost of a month by payer, source organization, account and service (the billable read model)."`
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
