package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/billtransfer/ledger/services/demo/scenario"
)

// TestDashboardInChromium (issue #7 items 4 and 5) loads `make demo`'s
// channel-partner scenario into a real billingd, creates a payer token for the
// partner and a source token for the German organization with billctl, and
// drives headless Chromium through the dashboard at "/":
//
//   - the payer signs in with the form; the month defaults to the ledger
//     clock's; in 2026-09 every billable, pro forma and margin figure per
//     billing group, the totals, every invoice's figures and status, the
//     invoice and tax totals per currency and the payment equal the report
//     API's answers for the same token, character for character (the page
//     shows the API's decimal strings); a click on a billing group shows its
//     accounts and services as ReportProforma and ReportBillable give them;
//   - the payer opens an invoice's detail with the keyboard (the invoice id
//     is a disclosure button with aria-expanded): every line (account,
//     service, charge month, class, records, billed cost and its currency, FX
//     rate and date, converted amount, line amount, jurisdiction and
//     treatment), every tax row and the subtotal, tax and total equal that
//     invoice in the ReportInvoices answer, string for string; a click
//     closes it;
//   - the source signs in through a #token= link: only its pro forma panel is
//     shown, equal to ReportProforma for its token, and no billable cost,
//     margin, invoice (line or tax row included) or payment figure of the
//     payer is anywhere in the page, hidden elements included.
//
// A full-page screenshot of each view is saved in the test's temporary
// directory and, when BILLING_SCREENSHOT_DIR is set, copied there. Any
// JavaScript exception or console error fails the test; the one kind of error
// entry expected is Chromium's network log line for an API call the token is
// denied (HTTP 403), which the page answers by hiding the panel.
//
// Chromium is found as chromium or chromium-browser on PATH; without it the
// test is skipped (.ci/run installs the Debian package).
func TestDashboardInChromium(t *testing.T) {
	browser := findChromium()
	if browser == "" {
		t.Skip("Chromium not found on PATH (chromium or chromium-browser): skipping the dashboard's browser test; " +
			"install it with `apt-get install -y chromium` (.ci/run does so on CI)")
	}
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))
	loadScenario(t, d)
	payer := createToken(t, d, "payer", scenario.Partner)
	source := createToken(t, d, "source", scenario.Germany)
	month := scenario.ClosedMonth
	base := "http://" + d.http + "/"

	// What the report API answers each token: the figures the page must show.
	var cost costAnswer
	apiOK(t, d, payer, "QueryService/ReportCost", map[string]string{"month": month}, &cost)
	var invoices invoicesAnswer
	apiOK(t, d, payer, "QueryService/ReportInvoices", map[string]string{"month": month}, &invoices)
	var tax taxAnswer
	apiOK(t, d, payer, "QueryService/ReportTax", map[string]string{"month": month}, &tax)
	var payments paymentsAnswer
	apiOK(t, d, payer, "QueryService/ReportPayments", map[string]string{"month": month}, &payments)
	var groupProforma proformaAnswer
	apiOK(t, d, payer, "QueryService/ReportProforma", map[string]string{"month": month, "billingGroupId": "tbg-rt-de"}, &groupProforma)
	var groupBillable billableAnswer
	apiOK(t, d, payer, "QueryService/ReportBillable", map[string]string{"month": month, "sourceAccountId": scenario.Germany}, &groupBillable)
	var sourceProforma proformaAnswer
	apiOK(t, d, source, "QueryService/ReportProforma", map[string]string{"month": month}, &sourceProforma)
	if len(cost.Rows) < 4 || len(invoices.Rows) != 5 || len(payments.Payments) != 1 || len(groupProforma.Rows) == 0 || len(sourceProforma.Rows) == 0 {
		t.Fatalf("the scenario did not load as expected: %d cost rows, %d invoices, %d payments, %d pro forma rows of tbg-rt-de, %d of the source",
			len(cost.Rows), len(invoices.Rows), len(payments.Payments), len(groupProforma.Rows), len(sourceProforma.Rows))
	}
	for _, proc := range []string{"ReportCost", "ReportBillable", "ReportInvoices", "ReportPayments", "ReportTax"} {
		if code := apiStatus(t, d, source, "QueryService/"+proc, map[string]string{"month": month}); code != http.StatusForbidden {
			t.Fatalf("%s for the source token: HTTP %d, want 403 (the page relies on the API's denial)", proc, code)
		}
	}

	ctx, stop := newBrowser(t, browser)
	defer stop()
	console := captureConsole(ctx)

	// The payer signs in with the form.
	run(t, ctx, "open the sign-in form",
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
		chromedp.SetValue(chromedp.ID("token"), payer),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)),
		chromedp.WaitReady(chromedp.CSS(`body[data-state="ready"]`)),
	)
	st := pageState(t, ctx)
	if st.Month != "2026-10" {
		t.Errorf("month after sign-in = %q, want 2026-10 (the ledger clock's month)", st.Month)
	}
	pickMonth(t, ctx, month)
	st = pageState(t, ctx)
	if st.Role != "payer" || !strings.Contains(st.Badge, scenario.Partner) {
		t.Errorf("role shown: %q (%q), want payer %s", st.Role, st.Badge, scenario.Partner)
	}
	if strings.Contains(st.URL, payer) {
		t.Errorf("the token is in the URL: %s", st.URL)
	}
	for _, id := range []string{"panel-cost", "panel-invoices", "panel-payments", "panel-tax"} {
		if !st.Panels[id] {
			t.Errorf("payer: panel %s is hidden", id)
		}
	}
	if st.Panels["panel-proforma"] {
		t.Errorf("payer: the source's pro forma panel is shown")
	}

	// Billable, pro forma and margin per billing group, and the totals.
	var wantCost []map[string]string
	for _, r := range cost.Rows {
		wantCost = append(wantCost, map[string]string{"owner": r.OwnerAccountID, "group": r.BillingGroupID,
			"billable": shown(r.BillableCost), "proforma": shown(r.ProformaCost), "margin": shown(r.Margin), "margin-pct": shown(r.MarginPercentage)})
	}
	equalRows(t, "cost rows", st.Cost, wantCost)
	equalRows(t, "cost total", []map[string]string{st.CostTotal}, []map[string]string{{"billable": shown(cost.BillableTotal),
		"proforma": shown(cost.ProformaTotal), "margin": shown(cost.MarginTotal), "margin-pct": shown(cost.MarginPercentage)}})
	for _, r := range cost.Rows {
		bar := st.Chart[r.BillingGroupID]
		if !strings.Contains(bar, r.BillableCost) || !strings.Contains(bar, r.ProformaCost) || !strings.Contains(bar, "margin "+r.Margin) {
			t.Errorf("chart of group %q = %q, want %s, %s and margin %s", r.BillingGroupID, bar, r.BillableCost, r.ProformaCost, r.Margin)
		}
	}

	// Invoices with their status, totals per currency, tax, payments.
	var wantInv, wantInvTotals, wantTax []map[string]string
	for _, r := range invoices.Rows {
		wantInv = append(wantInv, map[string]string{"invoice": r.InvoiceID, "subtotal": r.Subtotal, "tax": r.Tax, "total": r.Total,
			"paid": r.Paid, "outstanding": r.Outstanding, "status": strings.ReplaceAll(r.Status, "_", " ")})
	}
	equalRows(t, "invoices", st.Invoices, wantInv)
	for _, r := range invoices.Totals {
		wantInvTotals = append(wantInvTotals, map[string]string{"currency": r.Currency, "subtotal": r.Subtotal, "tax": r.Tax,
			"total": r.Total, "paid": r.Paid, "outstanding": r.Outstanding})
	}
	equalRows(t, "invoice totals", st.InvoiceTotals, wantInvTotals)
	for _, r := range tax.Totals {
		wantTax = append(wantTax, map[string]string{"currency": r.Currency, "taxable": r.Taxable, "tax": r.Tax})
	}
	equalRows(t, "tax totals", st.TaxTotals, wantTax)
	if len(st.TaxRows) != len(tax.Rows) {
		t.Errorf("tax rows shown: %d, want %d", len(st.TaxRows), len(tax.Rows))
	}
	equalRows(t, "payments", st.Payments, []map[string]string{{"payment": payments.Payments[0].PaymentID, "amount": payments.Payments[0].Amount}})

	// Drill-down: a click on a billing group shows its accounts and services.
	run(t, ctx, "drill down into tbg-rt-de",
		chromedp.Click(chromedp.CSS(`#cost tr.cost-row[data-group="tbg-rt-de"] button`)),
		chromedp.WaitReady(chromedp.CSS(`#panel-drill[data-state="ready"][data-group="tbg-rt-de"]`)),
	)
	st = pageState(t, ctx)
	billed := map[string]string{}
	for _, r := range groupBillable.Rows {
		billed[r.AccountID+"|"+r.Service] = r.BilledCost
	}
	var wantDrill []map[string]string
	for _, r := range groupProforma.Rows {
		row := map[string]string{"account": r.AccountID, "service": r.Service, "proforma": r.ProformaCost, "billable": "—"}
		if r.CustomLineItemID == "" {
			row["billable"] = shown(billed[r.AccountID+"|"+r.Service])
		}
		wantDrill = append(wantDrill, row)
	}
	sortRows(wantDrill, "account", "service")
	sortRows(st.Drill, "account", "service")
	equalRows(t, "drill-down of tbg-rt-de", st.Drill, wantDrill)
	if st.Overflow {
		t.Errorf("the payer's page is wider than a 1366-pixel laptop screen")
	}
	for _, w := range st.WideTables {
		t.Logf("note: table %s scrolls horizontally at 1366×768", w)
	}
	screenshot(t, ctx, "dashboard-payer.png")

	// Invoice detail: the lines, taxes and totals of one invoice, opened with
	// the keyboard. The invoice is one with converted lines when there is one,
	// so the FX rate and the converted figure are exercised.
	inv := invoices.Rows[0]
	for _, r := range invoices.Rows {
		if slices.ContainsFunc(r.Lines, func(l invoiceLineAnswer) bool { return l.FxRate != "1" }) {
			inv = r
			break
		}
	}
	if len(inv.Lines) == 0 || len(inv.Taxes) == 0 {
		t.Fatalf("invoice %s has %d lines and %d tax rows: the scenario should give it both", inv.InvoiceID, len(inv.Lines), len(inv.Taxes))
	}
	toggle := `#invoices tr.invoice-row[data-invoice="` + inv.InvoiceID + `"] button.toggle`
	detail := `#invoices tr.invoice-detail[data-invoice="` + inv.InvoiceID + `"]`
	if dt := invoiceDetailState(t, ctx, inv.InvoiceID); dt.Expanded != "false" || dt.Visible || dt.Tag != "BUTTON" || !dt.Controls {
		t.Errorf("invoice %s before opening: toggle %s aria-expanded=%q controls the detail row: %v; detail visible %v",
			inv.InvoiceID, dt.Tag, dt.Expanded, dt.Controls, dt.Visible)
	}
	run(t, ctx, "open invoice "+inv.InvoiceID+" with the keyboard",
		chromedp.Focus(chromedp.CSS(toggle)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(detail+` tr.invoice-line`)),
	)
	dt := invoiceDetailState(t, ctx, inv.InvoiceID)
	if dt.Expanded != "true" || !dt.Visible || !dt.Focused {
		t.Errorf("invoice %s opened: aria-expanded=%q, detail visible %v, focus stays on the toggle %v", inv.InvoiceID, dt.Expanded, dt.Visible, dt.Focused)
	}
	var wantLines, wantTaxes []map[string]string
	for _, l := range inv.Lines {
		wantLines = append(wantLines, map[string]string{"line": strconv.Itoa(l.LineNumber), "account": l.AccountID, "service": l.Service,
			"charge-month": l.ChargeMonth, "class": l.ChargeClass, "records": shownCount(l.UsageRecords), "usage-currency": l.UsageCurrency,
			"billed-cost": shown(l.BilledCost), "fx-rate": shown(l.FxRate), "fx-date": l.FxEffectiveDate,
			"converted": shown(l.Converted), "amount": shown(l.Amount), "jurisdiction": l.Jurisdiction, "reason": l.TaxReason})
	}
	equalRows(t, "lines of "+inv.InvoiceID, dt.Lines, wantLines)
	for _, x := range inv.Taxes {
		wantTaxes = append(wantTaxes, map[string]string{"jurisdiction": x.Jurisdiction, "reason": x.Reason, "rate": shown(x.RatePercentage),
			"rate-from": shown(x.RateEffectiveFrom), "taxable": shown(x.Taxable), "tax": shown(x.Tax)})
	}
	equalRows(t, "tax rows of "+inv.InvoiceID, dt.Taxes, wantTaxes)
	equalRows(t, "totals of "+inv.InvoiceID, []map[string]string{dt.Totals}, []map[string]string{{"lines-subtotal": shown(inv.Subtotal),
		"subtotal": shown(inv.Subtotal), "tax": shown(inv.Tax), "total": shown(inv.Total)}})
	// Every figure is on screen, not only in the document.
	for _, l := range inv.Lines {
		for _, s := range []string{l.BilledCost, l.FxRate, l.Converted, l.Amount} {
			if !strings.Contains(dt.Text, s) {
				t.Errorf("invoice %s, line %d: %q is not visible in the detail", inv.InvoiceID, l.LineNumber, s)
			}
		}
	}
	if st := pageState(t, ctx); st.Overflow {
		t.Errorf("with invoice %s open, the payer's page is wider than a 1366-pixel laptop screen", inv.InvoiceID)
	}
	// Focusing the toggle scrolled the page: back to the top, so the sticky
	// header is not painted in the middle of the full-page screenshot.
	run(t, ctx, "scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	screenshot(t, ctx, "dashboard-invoice-detail.png")
	run(t, ctx, "close invoice "+inv.InvoiceID,
		chromedp.Click(chromedp.CSS(toggle)),
		chromedp.WaitNotVisible(chromedp.CSS(detail)),
	)
	if dt := invoiceDetailState(t, ctx, inv.InvoiceID); dt.Expanded != "false" || dt.Visible {
		t.Errorf("invoice %s closed: aria-expanded=%q, detail visible %v", inv.InvoiceID, dt.Expanded, dt.Visible)
	}

	// Credit notes (Y2, Y3): a refund leaves Japan in credit in October, so
	// October's close issues its invoice as a credit note; ApplyCredit settles
	// September's JPY invoice with it and the rest stays. In October's view the
	// page shows the credit note's status badge, its credit applied and
	// remaining, what it settled and the balances, as the API answers them.
	d.ctlOK(`{"usage_id":"demo-refund-jp","account_id":"`+scenario.Japan+`","charge_period_start":"2026-10-20T00:00:00Z",`+
		`"charge_period_end":"2026-10-21T00:00:00Z","service":"AmazonRDS","usage_type":"Refund","quantity":"1","unit":"Hrs",`+
		`"billed_cost":"-2000","currency":"USD"}`+"\n", "usage", "send", "-f", "-")
	d.ctlOK("", "clock", "set", "2026-11-02T06:00:00Z")
	d.ctlOK("", "close", "--payer", scenario.Partner, "--month", "2026-10")
	const october = "2026-10"
	var octPayments paymentsAnswer
	apiOK(t, d, payer, "QueryService/ReportPayments", map[string]string{"month": october}, &octPayments)
	creditNote := ""
	for _, r := range octPayments.Invoices {
		if r.Status == "CREDIT" {
			creditNote = r.InvoiceID
		}
	}
	if creditNote == "" {
		t.Fatalf("October's close issued no credit note: %+v", octPayments.Invoices)
	}
	d.ctlOK(`{"command":"ApplyCredit","payer_account_id":"`+scenario.Partner+`","credit_note_id":"`+creditNote+`"}`+"\n", "apply", "-f", "-")
	var octInvoices invoicesAnswer
	apiOK(t, d, payer, "QueryService/ReportInvoices", map[string]string{"month": october}, &octInvoices)
	apiOK(t, d, payer, "QueryService/ReportPayments", map[string]string{"month": october}, &octPayments)
	pickMonth(t, ctx, october)
	st = pageState(t, ctx)
	wantInv = nil
	for _, r := range octInvoices.Rows {
		wantInv = append(wantInv, map[string]string{"invoice": r.InvoiceID, "total": r.Total, "paid": r.Paid, "outstanding": r.Outstanding,
			"status": strings.ReplaceAll(r.Status, "_", " ")})
	}
	equalRows(t, "October's invoices", st.Invoices, wantInv)
	var wantBalances, wantNotes, wantCredits []map[string]string
	for _, b := range octPayments.PayerBalances {
		wantBalances = append(wantBalances, map[string]string{"currency": b.Currency, "issued": b.Issued, "paid": b.Paid,
			"outstanding": b.Outstanding, "credit-notes": b.CreditNotes, "unapplied": b.UnappliedCredit, "balance": b.Balance})
	}
	equalRows(t, "October's balances", st.Balances, wantBalances)
	for _, r := range octPayments.Invoices {
		if r.Status == "CREDIT" || r.Status == "CREDIT_APPLIED" {
			wantNotes = append(wantNotes, map[string]string{"invoice": r.InvoiceID, "issued": r.Issued, "applied": r.CreditApplied,
				"remaining": r.RemainingCredit, "status": strings.ReplaceAll(r.Status, "_", " ")})
		}
	}
	if len(wantNotes) != 1 || wantNotes[0]["status"] != "CREDIT" || !strings.HasPrefix(wantNotes[0]["issued"], "-") {
		t.Fatalf("credit notes of October: %v, want one in CREDIT", wantNotes)
	}
	equalRows(t, "October's credit notes", st.CreditNotes, wantNotes)
	for _, c := range octPayments.CreditApplications {
		wantCredits = append(wantCredits, map[string]string{"credit-note": c.CreditNoteID, "amount": c.Amount, "remaining": c.RemainingCredit,
			"allocations": strconv.Itoa(len(c.Allocations))})
	}
	if len(wantCredits) != 1 || wantCredits[0]["allocations"] != "1" {
		t.Fatalf("credit applications of October: %v, want one settling September's JPY invoice", octPayments.CreditApplications)
	}
	equalRows(t, "October's credit applications", st.Credits, wantCredits)
	if !strings.Contains(st.Visible, "CREDIT") {
		t.Errorf("the CREDIT badge is not on screen")
	}
	if st.Overflow {
		t.Errorf("October's page is wider than a 1366-pixel laptop screen")
	}
	run(t, ctx, "scroll to the top", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	screenshot(t, ctx, "dashboard-credit-note.png")

	// The source signs out the payer and opens a #token= link, as `make demo` prints.
	run(t, ctx, "sign out",
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitReady(chromedp.CSS(`body[data-state="signed-out"]`)),
		chromedp.WaitVisible(chromedp.ID("signin-form")),
	)
	run(t, ctx, "open the source's link",
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`location.hash = %q`, "token="+source+"&month="+month)),
		chromedp.WaitReady(chromedp.CSS(`body[data-state="ready"][data-role="source"][data-month="`+month+`"]`)),
	)
	st = pageState(t, ctx)
	if strings.Contains(st.URL, source) {
		t.Errorf("the token stayed in the URL: %s", st.URL)
	}
	for id, visible := range st.Panels {
		if visible != (id == "panel-proforma") {
			t.Errorf("source: panel %s visible = %v, want only panel-proforma", id, visible)
		}
	}
	var wantPF []map[string]string
	for _, r := range sourceProforma.Rows {
		wantPF = append(wantPF, map[string]string{"account": r.AccountID, "service": r.Service, "item": r.CustomLineItemID, "proforma": r.ProformaCost})
	}
	equalRows(t, "source pro forma", st.Proforma, wantPF)
	if st.ProformaTotal != sourceProforma.Total {
		t.Errorf("source pro forma total shown %q, want %q", st.ProformaTotal, sourceProforma.Total)
	}
	// No billed figure of the payer anywhere in the document, hidden elements
	// included, and no billable, margin or invoice wording on screen.
	allowed := map[string]bool{sourceProforma.Total: true}
	for _, r := range sourceProforma.Rows {
		allowed[r.ProformaCost] = true
	}
	var secret []string
	for _, r := range cost.Rows {
		secret = append(secret, r.BillableCost, r.Margin)
	}
	secret = append(secret, cost.BillableTotal, cost.MarginTotal, cost.ProformaTotal)
	for _, r := range invoices.Rows {
		secret = append(secret, r.InvoiceID, r.Subtotal, r.Tax, r.Total, r.Outstanding)
		for _, l := range r.Lines {
			secret = append(secret, l.BilledCost, l.Converted, l.Amount)
		}
		for _, x := range r.Taxes {
			secret = append(secret, x.Taxable, x.Tax)
		}
	}
	for _, r := range payments.Payments {
		secret = append(secret, r.PaymentID)
	}
	for _, s := range secret {
		if len(strings.Trim(s, "0.-")) < 3 || allowed[s] {
			continue // "0", "0.00", or a figure the source's own pro forma holds too
		}
		if strings.Contains(st.Text, s) {
			t.Errorf("the source's page contains the payer's figure %q", s)
		}
	}
	for _, word := range []string{"Billable", "Margin", "Invoice", "Outstanding"} {
		if strings.Contains(st.Visible, word) {
			t.Errorf("the source's page shows %q", word)
		}
	}
	screenshot(t, ctx, "dashboard-source.png")

	errs, denied, total := console.errors()
	for _, m := range errs {
		t.Errorf("browser console: %s", m)
	}
	t.Logf("browser console: %d messages, %d of them Chromium's network lines for the API's expected 403 answers", total, denied)
	if denied == 0 {
		t.Errorf("no 403 network line in the console: is the console captured at all?")
	}
}

// findChromium returns the Chromium binary on PATH, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// loadScenario applies services/demo's scenario through billctl with the admin token.
func loadScenario(t *testing.T, d *daemon) {
	t.Helper()
	start := time.Now()
	for _, s := range scenario.Steps() {
		r := d.ctlOK(s.Stdin, s.Args...)
		if s.Args[0] == "usage" {
			var sum sendSummary
			decode(t, r, &sum)
			if sum.Rejected != 0 || sum.Accepted == 0 {
				t.Fatalf("%s: %+v", s.What, sum)
			}
		}
	}
	t.Logf("scenario loaded in %s", time.Since(start).Round(time.Millisecond))
}

// createToken creates a token with `billctl token create` and returns it.
func createToken(t *testing.T, d *daemon, role, account string) string {
	t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	decode(t, d.ctlOK("", "token", "create", "--role", role, "--account", account, "--name", "dashboard-"+role), &out)
	if out.Token == "" {
		t.Fatalf("token create --role %s: no token", role)
	}
	return out.Token
}

// apiCall POSTs a Connect JSON request with a bearer token, as the page does,
// and returns the HTTP status and body.
func apiCall(t *testing.T, d *daemon, token, procedure string, req any) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.NewRequest(http.MethodPost, "http://"+d.http+"/billing.v1."+procedure, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(hr)
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.StatusCode, b.Bytes()
}

// apiStatus is apiCall's status.
func apiStatus(t *testing.T, d *daemon, token, procedure string, req any) int {
	t.Helper()
	code, _ := apiCall(t, d, token, procedure, req)
	return code
}

// apiOK is apiCall that wants 200 and decodes the answer into v.
func apiOK(t *testing.T, d *daemon, token, procedure string, req, v any) {
	t.Helper()
	code, body := apiCall(t, d, token, procedure, req)
	if code != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", procedure, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", procedure, err, body)
	}
}

// The JSON answers of the report API (Connect JSON: lowerCamelCase names).
type (
	costAnswer struct {
		Rows []struct {
			OwnerAccountID   string `json:"ownerAccountId"`
			BillingGroupID   string `json:"billingGroupId"`
			BillableCost     string `json:"billableCost"`
			ProformaCost     string `json:"proformaCost"`
			Margin           string `json:"margin"`
			MarginPercentage string `json:"marginPercentage"`
		} `json:"rows"`
		BillableTotal    string `json:"billableTotal"`
		ProformaTotal    string `json:"proformaTotal"`
		MarginTotal      string `json:"marginTotal"`
		MarginPercentage string `json:"marginPercentage"`
	}
	invoicesAnswer struct {
		Rows []struct {
			InvoiceID   string `json:"invoiceId"`
			Subtotal    string `json:"subtotal"`
			Tax         string `json:"tax"`
			Total       string `json:"total"`
			Paid        string `json:"paid"`
			Outstanding string `json:"outstanding"`
			Status      string `json:"status"`

			// The invoice's detail, as issued.
			Lines []invoiceLineAnswer `json:"lines"`
			Taxes []struct {
				Jurisdiction      string `json:"jurisdiction"`
				Reason            string `json:"reason"`
				RatePercentage    string `json:"ratePercentage"`
				RateEffectiveFrom string `json:"rateEffectiveFrom"`
				Taxable           string `json:"taxable"`
				Tax               string `json:"tax"`
			} `json:"taxes"`
		} `json:"rows"`
		Totals []struct {
			Currency    string `json:"currency"`
			Subtotal    string `json:"subtotal"`
			Tax         string `json:"tax"`
			Total       string `json:"total"`
			Paid        string `json:"paid"`
			Outstanding string `json:"outstanding"`
		} `json:"totals"`
	}
	invoiceLineAnswer struct {
		LineNumber      int    `json:"lineNumber"`
		AccountID       string `json:"accountId"`
		Service         string `json:"service"`
		ChargeMonth     string `json:"chargeMonth"`
		ChargeClass     string `json:"chargeClass"`
		UsageCurrency   string `json:"usageCurrency"`
		BilledCost      string `json:"billedCost"`
		FxRate          string `json:"fxRate"`
		FxEffectiveDate string `json:"fxEffectiveDate"`
		Converted       string `json:"converted"`
		Amount          string `json:"amount"`
		Jurisdiction    string `json:"jurisdiction"`
		TaxReason       string `json:"taxReason"`
		UsageRecords    string `json:"usageRecords"`
	}
	taxAnswer struct {
		Rows   []struct{} `json:"rows"`
		Totals []struct {
			Currency string `json:"currency"`
			Taxable  string `json:"taxable"`
			Tax      string `json:"tax"`
		} `json:"totals"`
	}
	paymentsAnswer struct {
		Payments []struct {
			PaymentID string `json:"paymentId"`
			Amount    string `json:"amount"`
		} `json:"payments"`
		Invoices []struct {
			InvoiceID       string `json:"invoiceId"`
			Issued          string `json:"issued"`
			Status          string `json:"status"`
			CreditApplied   string `json:"creditApplied"`
			RemainingCredit string `json:"remainingCredit"`
		} `json:"invoices"`
		PayerBalances []struct {
			Currency        string `json:"currency"`
			Issued          string `json:"issued"`
			Paid            string `json:"paid"`
			Outstanding     string `json:"outstanding"`
			CreditNotes     string `json:"creditNotes"`
			UnappliedCredit string `json:"unappliedCredit"`
			Balance         string `json:"balance"`
		} `json:"payerBalances"`
		CreditApplications []struct {
			CreditNoteID    string            `json:"creditNoteId"`
			Amount          string            `json:"amount"`
			RemainingCredit string            `json:"remainingCredit"`
			Allocations     []json.RawMessage `json:"allocations"`
		} `json:"creditApplications"`
	}
	proformaAnswer struct {
		Rows []struct {
			AccountID        string `json:"accountId"`
			Service          string `json:"service"`
			CustomLineItemID string `json:"customLineItemId"`
			ProformaCost     string `json:"proformaCost"`
		} `json:"rows"`
		Total string `json:"total"`
	}
	billableAnswer struct {
		Rows []struct {
			AccountID  string `json:"accountId"`
			Service    string `json:"service"`
			BilledCost string `json:"billedCost"`
		} `json:"rows"`
	}
)

// shown is how the page renders an amount: the string itself, or a dash for
// an empty one.
func shown(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// shownCount is how the page renders a count: the string itself, or 0 for
// an empty one (Connect JSON leaves a zero uint64 out).
func shownCount(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

// invoiceDetail is what invoiceDetailJS reads of one invoice's disclosure.
type invoiceDetail struct {
	Tag      string              `json:"tag"`      // the toggle's element
	Expanded string              `json:"expanded"` // its aria-expanded
	Controls bool                `json:"controls"` // its aria-controls names the detail row
	Focused  bool                `json:"focused"`  // it has the focus
	Visible  bool                `json:"visible"`  // the detail row is rendered
	Lines    []map[string]string `json:"lines"`
	Taxes    []map[string]string `json:"taxes"`
	Totals   map[string]string   `json:"totals"`
	Text     string              `json:"visibleText"` // innerText of the detail
}

// invoiceDetailJS reads an invoice's toggle and detail row (%q is the
// invoice id) by their data-k elements, exactly as displayed.
const invoiceDetailJS = `((id) => {
  const k = (node, key) => { const c = node.querySelector('[data-k="' + key + '"]'); return c ? c.textContent : ''; };
  const row = Array.from(document.querySelectorAll('#invoices tr.invoice-row')).find(tr => tr.dataset.invoice === id);
  const det = Array.from(document.querySelectorAll('#invoices tr.invoice-detail')).find(tr => tr.dataset.invoice === id);
  const btn = row ? row.querySelector('button.toggle') : null;
  if (!btn || !det) { return {tag: btn ? btn.tagName : '(no toggle)', expanded: '', lines: [], taxes: [], totals: {}}; }
  const sub = det.querySelector('tr.invoice-subtotal');
  const sums = {};
  det.querySelectorAll('tr.invoice-sum').forEach(tr => { const c = tr.querySelector('[data-k]'); sums[c.dataset.k] = c.textContent; });
  return {
    tag: btn.tagName, expanded: btn.getAttribute('aria-expanded') || '', controls: btn.getAttribute('aria-controls') === det.id && det.id !== '',
    focused: document.activeElement === btn, visible: !!det.offsetParent,
    lines: Array.from(det.querySelectorAll('tr.invoice-line')).map(tr => ({line: tr.dataset.line, class: tr.dataset.class, reason: tr.dataset.reason,
      account: k(tr, 'account'), service: k(tr, 'service'), 'charge-month': k(tr, 'charge-month'), records: k(tr, 'records'),
      'usage-currency': k(tr, 'usage-currency'), 'billed-cost': k(tr, 'billed-cost'), 'fx-rate': k(tr, 'fx-rate'), 'fx-date': k(tr, 'fx-date'),
      converted: k(tr, 'converted'), amount: k(tr, 'amount'), jurisdiction: k(tr, 'jurisdiction')})),
    taxes: Array.from(det.querySelectorAll('tr.invoice-tax')).map(tr => ({jurisdiction: k(tr, 'jurisdiction'), reason: tr.dataset.reason,
      rate: k(tr, 'rate'), 'rate-from': k(tr, 'rate-from'), taxable: k(tr, 'taxable'), tax: k(tr, 'tax')})),
    totals: {'lines-subtotal': sub ? k(sub, 'subtotal') : '(missing)', subtotal: sums.subtotal || '(missing)', tax: sums.tax || '(missing)', total: sums.total || '(missing)'},
    visibleText: det.innerText
  };
})(%q)`

// invoiceDetailState reads an invoice's toggle and detail.
func invoiceDetailState(t *testing.T, ctx context.Context, invoiceID string) invoiceDetail {
	t.Helper()
	dt, err := chromedp.Run(ctx, chromedp.Evaluate[invoiceDetail](fmt.Sprintf(invoiceDetailJS, invoiceID)))
	if err != nil {
		t.Fatalf("read the detail of invoice %s: %v", invoiceID, err)
	}
	return dt
}

// dashboardState is what pageStateJS reads from the page.
type dashboardState struct {
	State         string              `json:"state"`
	Month         string              `json:"month"`
	Role          string              `json:"role"`
	Badge         string              `json:"badge"`
	URL           string              `json:"url"`
	Panels        map[string]bool     `json:"panels"`
	Cost          []map[string]string `json:"cost"`
	CostTotal     map[string]string   `json:"costTotal"`
	Chart         map[string]string   `json:"chart"`
	Drill         []map[string]string `json:"drill"`
	Proforma      []map[string]string `json:"proforma"`
	ProformaTotal string              `json:"proformaTotal"`
	Invoices      []map[string]string `json:"invoices"`
	InvoiceTotals []map[string]string `json:"invoiceTotals"`
	TaxRows       []map[string]string `json:"taxRows"`
	TaxTotals     []map[string]string `json:"taxTotals"`
	Payments      []map[string]string `json:"payments"`
	Balances      []map[string]string `json:"balances"`
	CreditNotes   []map[string]string `json:"creditNotes"`
	Credits       []map[string]string `json:"credits"`
	Text          string              `json:"text"`    // textContent of the body: hidden elements too
	Visible       string              `json:"visible"` // innerText: what is rendered
	Overflow      bool                `json:"overflow"`
	WideTables    []string            `json:"wideTables"`
}

// pageStateJS reads the figures from the page's tables by their data-k
// cells, exactly as displayed (textContent).
const pageStateJS = `(() => {
  const b = document.body;
  const k = (tr, key) => { const c = tr.querySelector('[data-k="' + key + '"]'); return c ? c.textContent : '(missing)'; };
  const rows = (sel, f) => Array.from(document.querySelectorAll(sel)).map(f);
  const panels = {};
  for (const id of ['panel-cost', 'panel-drill', 'panel-proforma', 'panel-invoices', 'panel-payments', 'panel-tax']) {
    panels[id] = !document.getElementById(id).hidden;
  }
  const chart = {};
  document.querySelectorAll('#cost-chart g.bar-group').forEach(g => { chart[g.dataset.group] = g.textContent; });
  const total = document.querySelector('#cost tfoot tr.cost-total');
  const pfTotal = document.querySelector('#proforma tfoot tr.proforma-total');
  return {
    state: b.dataset.state || '', month: b.dataset.month || '', role: b.dataset.role || '',
    badge: document.getElementById('role').textContent, url: location.href, panels: panels,
    cost: rows('#cost tbody tr.cost-row', tr => ({owner: tr.dataset.owner, group: tr.dataset.group,
      billable: k(tr, 'billable'), proforma: k(tr, 'proforma'), margin: k(tr, 'margin'), 'margin-pct': k(tr, 'margin-pct')})),
    costTotal: total ? {billable: k(total, 'billable'), proforma: k(total, 'proforma'), margin: k(total, 'margin'), 'margin-pct': k(total, 'margin-pct')} : {},
    chart: chart,
    drill: rows('#drill tbody tr.drill-row', tr => ({account: tr.dataset.account, service: tr.dataset.service,
      billable: k(tr, 'billable'), proforma: k(tr, 'proforma')})),
    proforma: rows('#proforma tbody tr.proforma-row', tr => ({account: tr.dataset.account, service: tr.dataset.service,
      item: tr.dataset.item, proforma: k(tr, 'proforma')})),
    proformaTotal: pfTotal ? k(pfTotal, 'proforma') : '',
    invoices: rows('#invoices tbody tr.invoice-row', tr => ({invoice: tr.dataset.invoice, subtotal: k(tr, 'subtotal'), tax: k(tr, 'tax'),
      total: k(tr, 'total'), paid: k(tr, 'paid'), outstanding: k(tr, 'outstanding'), status: k(tr, 'status')})),
    invoiceTotals: rows('#invoices tfoot tr.invoice-total', tr => ({currency: tr.dataset.currency, subtotal: k(tr, 'subtotal'), tax: k(tr, 'tax'),
      total: k(tr, 'total'), paid: k(tr, 'paid'), outstanding: k(tr, 'outstanding')})),
    taxRows: rows('#tax tbody tr.tax-row', tr => ({jurisdiction: tr.dataset.jurisdiction, tax: k(tr, 'tax')})),
    taxTotals: rows('#tax tfoot tr.tax-total', tr => ({currency: tr.dataset.currency, taxable: k(tr, 'taxable'), tax: k(tr, 'tax')})),
    payments: rows('#payments tbody tr.payment-row', tr => ({payment: tr.dataset.payment, amount: k(tr, 'amount')})),
    balances: rows('#balances tbody tr.balance-row', tr => ({currency: tr.dataset.currency, issued: k(tr, 'issued'), paid: k(tr, 'paid'),
      outstanding: k(tr, 'outstanding'), 'credit-notes': k(tr, 'credit-notes'), unapplied: k(tr, 'unapplied'), balance: k(tr, 'balance')})),
    creditNotes: rows('#credit-notes tbody tr.credit-note-row', tr => ({invoice: tr.dataset.invoice, issued: k(tr, 'issued'),
      applied: k(tr, 'applied'), remaining: k(tr, 'remaining'), status: k(tr, 'status')})),
    credits: rows('#credit-applications tbody tr.credit-row', tr => ({'credit-note': tr.dataset.creditNote, amount: k(tr, 'amount'),
      remaining: k(tr, 'remaining'), allocations: String(tr.querySelectorAll('ul.alloc li').length)})),
    text: b.textContent, visible: b.innerText,
    overflow: document.documentElement.scrollWidth > window.innerWidth,
    wideTables: Array.from(document.querySelectorAll('.table-wrap')).filter(w => w.offsetParent && w.scrollWidth > w.clientWidth + 1).map(w => w.id)
  };
})()`

// pageState reads the page.
func pageState(t *testing.T, ctx context.Context) dashboardState {
	t.Helper()
	st, err := chromedp.Run(ctx, chromedp.Evaluate[dashboardState](pageStateJS))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return st
}

// pickMonth sets the month picker as a user does and waits for the month.
func pickMonth(t *testing.T, ctx context.Context, month string) {
	t.Helper()
	run(t, ctx, "pick "+month,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const m = document.getElementById('month'); m.value = %q; m.dispatchEvent(new Event('change', {bubbles: true})); })()`, month)),
		chromedp.WaitReady(chromedp.CSS(`body[data-state="ready"][data-month="`+month+`"]`)),
	)
}

// equalRows compares the rows shown with the rows wanted, in order.
func equalRows(t *testing.T, what string, got, want []map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows shown, want %d\n got: %v\nwant: %v", what, len(got), len(want), got, want)
		return
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("%s, row %d, %s: shown %q, want %q (the API's answer)\n got: %v\nwant: %v", what, i+1, k, got[i][k], v, got[i], want[i])
			}
		}
	}
}

// sortRows orders rows by the given keys.
func sortRows(rows []map[string]string, keys ...string) {
	slices.SortStableFunc(rows, func(a, b map[string]string) int {
		for _, k := range keys {
			if c := strings.Compare(a[k], b[k]); c != 0 {
				return c
			}
		}
		return 0
	})
}

// newBrowser starts headless Chromium (no sandbox: the tests may run as root;
// a temporary profile) with a 1366×768 window.
func newBrowser(t *testing.T, path string) (context.Context, func()) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	// Start the browser on a context without a deadline (a deadline on the
	// first Run would bound the browser's life), then bound the whole test.
	if err := chromedp.Do(ctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("start Chromium (%s): %v", path, err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	return tctx, func() { cancelT(); cancelCtx(); cancelAlloc() }
}

// run runs browser actions, failing the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(document.body.dataset) + '\n' + document.body.innerText.slice(0, 2000)`))
		t.Fatalf("%s: %v\npage: %s", what, err, st)
	}
}

// screenshot saves a full-page PNG in the test's temporary directory and,
// when BILLING_SCREENSHOT_DIR is set, a copy there.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
	if dir := os.Getenv("BILLING_SCREENSHOT_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot copied to %s", filepath.Join(dir, name))
	}
}

// consoleLog collects the browser's console messages, exceptions and log
// entries.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

// captureConsole subscribes to the console of the browser tab of ctx.
func captureConsole(ctx context.Context) *consoleLog {
	c := &consoleLog{}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		}
	}()
	return c
}

// errors returns the exceptions and error messages, but for Chromium's
// network log line of an API call answered 403: the page makes those calls on
// purpose and hides what the token may not see.
// It also counts those lines and all messages.
func (c *consoleLog) errors() (errs []string, denied, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if !m.IsException() && m.Type != chromedp.ConsoleError {
			continue
		}
		if m.Source == "network" && strings.Contains(m.Text, "status of 403") && isAPIPath(m.URL) {
			denied++
			continue
		}
		errs = append(errs, fmt.Sprintf("%s [%s] %s (%s)", m.Type, m.Source, m.Text, m.URL))
	}
	return errs, denied, len(c.msgs)
}

// isAPIPath reports whether a URL is a Connect procedure or /metrics.
func isAPIPath(u string) bool {
	i := strings.Index(u, "://")
	if i < 0 {
		return false
	}
	rest := u[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest = rest[j:]
	}
	return strings.HasPrefix(rest, "/billing.v1.") || rest == "/metrics"
}
