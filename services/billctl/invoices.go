package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Month close, invoices, payments and tax (DESIGN X5, Y2, Y3, R1; §6):
// `billctl close`, `report invoices`, `report payments`, `report tax`.

// checkMonthFlag validates a YYYY-MM flag before anything is sent, naming
// the flag ("" passes: kong enforces the required ones).
func checkMonthFlag(flag, v string) error {
	if v == "" {
		return nil
	}
	if _, err := domain.ParseMonth(v); err != nil {
		return invalid("--%s %q is not a month (YYYY-MM, e.g. 2026-09)", flag, v)
	}
	return nil
}

// checkAccountFlag validates an optional 12-digit account id flag.
func checkAccountFlag(flag, v string) error {
	if v != "" && !domain.ValidAccountID(v) {
		return invalid("--%s %q is not a 12-digit account id", flag, v)
	}
	return nil
}

// closeCmd is `billctl close --payer ID --month M`.
type closeCmd struct {
	Payer     string `required:"" help:"Payer (bill transfer account) whose month to close." placeholder:"ID"`
	Month     string `required:"" help:"Month to close, YYYY-MM; it must have ended on the ledger clock." placeholder:"YYYY-MM"`
	RequestID string `name:"request-id" help:"Idempotency key: a retry with the same key returns the first result." placeholder:"KEY"`
}

// Run executes CloseMonth and prints the command result: "CloseMonth ok
// payer=… month=…", what the command created (invoice_count=…
// invoice_ids=…), "events=N position=P", then the event ids; or with -o json
// the CommandResult (aggregate_id, event_ids, position, replayed, created).
func (c *closeCmd) Run(a *app) error {
	if err := checkAccountFlag("payer", c.Payer); err != nil {
		return err
	}
	if err := checkMonthFlag("month", c.Month); err != nil {
		return err
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.commandClient().Execute(ctx, connect.NewRequest(&billingv1.ExecuteRequest{
		Command: &billingv1.ExecuteRequest_CloseMonth{CloseMonth: &billingv1.CloseMonth{
			PayerAccountId: c.Payer, Month: c.Month, RequestId: c.RequestID,
		}},
	}))
	if err != nil {
		return err
	}
	r := res.Msg.GetResult()
	if a.output == "json" {
		return writeProtoJSON(a.stdout, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CloseMonth ok payer=%s month=%s", c.Payer, c.Month)
	if id := r.GetAggregateId(); id != "" && id != c.Payer {
		fmt.Fprintf(&b, " id=%s", id)
	}
	// What the command created (e.g. invoice_count, invoice_ids), less what
	// the line already says.
	shown := map[string]string{"payer_account_id": c.Payer, "month": c.Month}
	keys := make([]string, 0, len(r.GetCreated()))
	for k, v := range r.GetCreated() {
		if shown[k] != v {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", k, r.GetCreated()[k])
	}
	fmt.Fprintf(&b, " events=%d position=%d", len(r.GetEventIds()), r.GetPosition())
	if r.GetReplayed() {
		b.WriteString(" replayed=true")
	}
	b.WriteByte('\n')
	if ids := r.GetEventIds(); len(ids) > 0 {
		fmt.Fprintf(&b, "event ids: %s\n", strings.Join(ids, " "))
	}
	fmt.Fprintf(&b, "invoices: billctl report invoices --month %s --payer %s\n", c.Month, c.Payer)
	_, err = io.WriteString(a.stdout, b.String())
	return err
}

// reportInvoicesCmd is `billctl report invoices --month M`.
type reportInvoicesCmd struct {
	Month  string `required:"" help:"Billing month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer  string `help:"Only the invoices of this payer." placeholder:"ID"`
	Source string `help:"Only the invoices of this source organization." placeholder:"ID"`
	Lines  bool   `help:"Also print every invoice's lines and taxes (-o table)."`
}

// Run prints one row per invoice and a TOTAL line per currency (with --lines
// also the lines and taxes), or with -o json the ReportInvoicesResponse:
// {"rows":[{"invoice_id":…,"seller":…,"currency":…,"source_account_id":…,
// "invoice_unit_id":…,"invoice_unit_name":…,"receiver_account_id":…,
// "invoice_date":…,"lines":[…],"taxes":[…],"subtotal":…,"tax":…,"total":…,
// "paid":…,"outstanding":…,"status":…}],"totals":[…],"checkpoint":…}.
func (c *reportInvoicesCmd) Run(a *app) error {
	if err := checkMonthFlag("month", c.Month); err != nil {
		return err
	}
	if err := checkAccountFlag("payer", c.Payer); err != nil {
		return err
	}
	if err := checkAccountFlag("source", c.Source); err != nil {
		return err
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportInvoices(ctx, connect.NewRequest(&billingv1.ReportInvoicesRequest{
		Month: c.Month, PayerAccountId: c.Payer, SourceAccountId: c.Source,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"INVOICE", "PAYER", "SOURCE", "UNIT", "RECEIVER", "SELLER", "DATE", "CURRENCY",
		"SUBTOTAL", "TAX", "TOTAL", "PAID", "OUTSTANDING", "STATUS"}}
	for _, r := range res.Msg.GetRows() {
		rows = append(rows, []string{r.GetInvoiceId(), r.GetPayerAccountId(), r.GetSourceAccountId(), unitCell(r),
			r.GetReceiverAccountId(), r.GetSeller(), r.GetInvoiceDate(), r.GetCurrency(), r.GetSubtotal(), r.GetTax(),
			r.GetTotal(), r.GetPaid(), r.GetOutstanding(), r.GetStatus()})
	}
	var footers [][]string
	for _, t := range res.Msg.GetTotals() {
		footers = append(footers, []string{"TOTAL", "", "", "", "", "", "", t.GetCurrency(), t.GetSubtotal(), t.GetTax(),
			t.GetTotal(), t.GetPaid(), t.GetOutstanding(), ""})
	}
	if err := writeTableWithFooters(a.stdout, rows, footers); err != nil {
		return err
	}
	if !c.Lines || len(res.Msg.GetRows()) == 0 {
		return nil
	}
	lines := [][]string{{"INVOICE", "LINE", "ACCOUNT", "SERVICE", "CHARGE_MONTH", "CLASS", "JURISDICTION", "TAX_REASON",
		"BILLED_COST", "FX_RATE", "AMOUNT"}}
	taxes := [][]string{{"INVOICE", "JURISDICTION", "REASON", "RATE_%", "TAXABLE", "TAX"}}
	for _, r := range res.Msg.GetRows() {
		for _, l := range r.GetLines() {
			lines = append(lines, []string{r.GetInvoiceId(), strconv.FormatUint(uint64(l.GetLineNumber()), 10), l.GetAccountId(),
				l.GetService(), l.GetChargeMonth(), l.GetChargeClass(), l.GetJurisdiction(), l.GetTaxReason(),
				l.GetBilledCost() + " " + l.GetUsageCurrency(), l.GetFxRate(), l.GetAmount() + " " + r.GetCurrency()})
		}
		for _, t := range r.GetTaxes() {
			taxes = append(taxes, []string{r.GetInvoiceId(), t.GetJurisdiction(), t.GetReason(), t.GetRatePercentage(),
				t.GetTaxable(), t.GetTax()})
		}
	}
	fmt.Fprintln(a.stdout)
	if err := writeTable(a.stdout, lines); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	return writeTable(a.stdout, taxes)
}

// unitCell shows an invoice unit as "name (id)", or "-" for none.
func unitCell(r *billingv1.InvoiceRow) string {
	switch {
	case r.GetInvoiceUnitId() == "":
		return ""
	case r.GetInvoiceUnitName() == "":
		return r.GetInvoiceUnitId()
	default:
		return r.GetInvoiceUnitName() + " (" + r.GetInvoiceUnitId() + ")"
	}
}

// reportPaymentsCmd is `billctl report payments`.
type reportPaymentsCmd struct {
	Payer  string `help:"Only this payer." placeholder:"ID"`
	Source string `help:"Only the invoices of this source organization (and the payments applied to them)." placeholder:"ID"`
	Month  string `help:"Only the invoices of this billing month, YYYY-MM (and the payments applied to them)." placeholder:"YYYY-MM"`
}

// Run prints the tables: invoices (issued, paid, outstanding, status, and
// for a credit note its credit applied and remaining), balances per payer
// (outstanding, credit notes, unapplied credit, balance), balances per source
// organization (outstanding, credit notes, balance), payments, then their
// allocations; and, when there are credit notes, their applications and the
// invoices each settled. With -o json it prints the ReportPaymentsResponse:
// {"invoices":[…],"payer_balances":[…],"source_balances":[…],
// "payments":[{…,"allocations":[…]}],"credit_applications":[{…,"allocations":[…]}],"checkpoint":…}.
func (c *reportPaymentsCmd) Run(a *app) error {
	if err := checkAccountFlag("payer", c.Payer); err != nil {
		return err
	}
	if err := checkAccountFlag("source", c.Source); err != nil {
		return err
	}
	if err := checkMonthFlag("month", c.Month); err != nil {
		return err
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportPayments(ctx, connect.NewRequest(&billingv1.ReportPaymentsRequest{
		PayerAccountId: c.Payer, SourceAccountId: c.Source, Month: c.Month,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	m := res.Msg
	invoices := [][]string{{"INVOICE", "PAYER", "MONTH", "SOURCE", "CURRENCY", "ISSUED", "PAID", "OUTSTANDING", "STATUS",
		"CREDIT_APPLIED", "REMAINING_CREDIT"}}
	notes := false
	for _, r := range m.GetInvoices() {
		applied, remaining := "", "" // shown for credit notes only
		if s := r.GetStatus(); s == "CREDIT" || s == "CREDIT_APPLIED" {
			applied, remaining, notes = r.GetCreditApplied(), r.GetRemainingCredit(), true
		}
		invoices = append(invoices, []string{r.GetInvoiceId(), r.GetPayerAccountId(), r.GetMonth(), r.GetSourceAccountId(),
			r.GetCurrency(), r.GetIssued(), r.GetPaid(), r.GetOutstanding(), r.GetStatus(), applied, remaining})
	}
	payers := [][]string{{"PAYER", "CURRENCY", "ISSUED", "PAID", "OUTSTANDING", "CREDIT_NOTES", "UNAPPLIED_CREDIT", "BALANCE"}}
	for _, b := range m.GetPayerBalances() {
		payers = append(payers, []string{b.GetPayerAccountId(), b.GetCurrency(), b.GetIssued(), b.GetPaid(),
			b.GetOutstanding(), b.GetCreditNotes(), b.GetUnappliedCredit(), b.GetBalance()})
	}
	sources := [][]string{{"PAYER", "SOURCE", "CURRENCY", "ISSUED", "PAID", "OUTSTANDING", "CREDIT_NOTES", "BALANCE"}}
	for _, b := range m.GetSourceBalances() {
		sources = append(sources, []string{b.GetPayerAccountId(), b.GetSourceAccountId(), b.GetCurrency(), b.GetIssued(),
			b.GetPaid(), b.GetOutstanding(), b.GetCreditNotes(), b.GetBalance()})
	}
	payments := [][]string{{"PAYMENT", "PAYER", "RECEIVED", "METHOD", "CURRENCY", "AMOUNT", "UNAPPLIED", "REFUNDED"}}
	allocs := [][]string{{"PAYMENT", "INVOICE", "SOURCE", "APPLIED", "OUTSTANDING_AFTER"}}
	for _, p := range m.GetPayments() {
		payments = append(payments, []string{p.GetPaymentId(), p.GetPayerAccountId(), p.GetReceivedAt(), p.GetMethod(),
			p.GetCurrency(), p.GetAmount(), p.GetUnapplied(), p.GetRefunded()})
		for _, al := range p.GetAllocations() {
			allocs = append(allocs, []string{p.GetPaymentId(), al.GetInvoiceId(), al.GetBillSourceAccountId(), al.GetAmount(),
				al.GetOutstandingAfter()})
		}
	}
	tables := [][][]string{invoices, payers, sources, payments, allocs}
	if notes || len(m.GetCreditApplications()) > 0 {
		credits := [][]string{{"CREDIT_NOTE", "SEQ", "PAYER", "APPLIED_AT", "SOURCE", "CURRENCY", "AMOUNT", "REMAINING_CREDIT"}}
		settled := [][]string{{"CREDIT_NOTE", "SEQ", "INVOICE", "SOURCE", "APPLIED", "OUTSTANDING_AFTER"}}
		for _, c := range m.GetCreditApplications() {
			seq := strconv.FormatUint(c.GetSeq(), 10)
			credits = append(credits, []string{c.GetCreditNoteId(), seq, c.GetPayerAccountId(), c.GetAppliedAt(),
				c.GetBillSourceAccountId(), c.GetCurrency(), c.GetAmount(), c.GetRemainingCredit()})
			for _, al := range c.GetAllocations() {
				settled = append(settled, []string{c.GetCreditNoteId(), seq, al.GetInvoiceId(), al.GetBillSourceAccountId(),
					al.GetAmount(), al.GetOutstandingAfter()})
			}
		}
		tables = append(tables, credits, settled)
	}
	for i, table := range tables {
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		if err := writeTable(a.stdout, table); err != nil {
			return err
		}
	}
	return nil
}

// reportTaxCmd is `billctl report tax --month M`.
type reportTaxCmd struct {
	Month string `required:"" help:"Billing month, YYYY-MM." placeholder:"YYYY-MM"`
	Payer string `help:"Only the invoices of this payer." placeholder:"ID"`
}

// Run prints one row per invoice and jurisdiction and a TOTAL line per
// currency, or with -o json the ReportTaxResponse: {"rows":[{"invoice_id":…,
// "jurisdiction":…,"reason":…,"rate_percentage":…,"taxable":…,"tax":…,…}],
// "totals":[…],"checkpoint":…}.
func (c *reportTaxCmd) Run(a *app) error {
	if err := checkMonthFlag("month", c.Month); err != nil {
		return err
	}
	if err := checkAccountFlag("payer", c.Payer); err != nil {
		return err
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ReportTax(ctx, connect.NewRequest(&billingv1.ReportTaxRequest{Month: c.Month, PayerAccountId: c.Payer}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"INVOICE", "PAYER", "SOURCE", "JURISDICTION", "REASON", "RATE_%", "CURRENCY", "TAXABLE", "TAX"}}
	for _, r := range res.Msg.GetRows() {
		rows = append(rows, []string{r.GetInvoiceId(), r.GetPayerAccountId(), r.GetSourceAccountId(), r.GetJurisdiction(),
			r.GetReason(), r.GetRatePercentage(), r.GetCurrency(), r.GetTaxable(), r.GetTax()})
	}
	var footers [][]string
	for _, t := range res.Msg.GetTotals() {
		footers = append(footers, []string{"TOTAL", "", "", "", "", "", t.GetCurrency(), t.GetTaxable(), t.GetTax()})
	}
	return writeTableWithFooters(a.stdout, rows, footers)
}
