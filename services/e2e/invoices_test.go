package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closeSetup: a German payer paying for a source organization from 2026-09; the
// source inherits the payer's tax settings (X2); EUR invoices at 0.9 per USD.
const closeSetup = `{"command":"RegisterOrganization","management_account_id":"111111111111","name":"Partner GmbH"}
{"command":"RegisterOrganization","management_account_id":"222222222222","name":"Acme","member_account_ids":["222222222223"]}
{"command":"InviteBillSource","transfer_id":"rt-1","payer_account_id":"111111111111","source_account_id":"222222222222","start_month":"2026-09"}
{"command":"AcceptTransfer","transfer_id":"rt-1"}
{"command":"SetTaxSettings","account_id":"111111111111","legal_name":"Partner GmbH","country":"DE","tax_registration_number":"DE123456789"}
{"command":"SetTaxRate","jurisdiction":"DE","rate_percentage":"19","effective_from":"2026-01-01"}
{"command":"SetExchangeRate","from":"USD","to":"EUR","rate":"0.9","effective_date":"2026-09-01"}
{"command":"SetPaymentProfile","payer_account_id":"111111111111","seller":"Amazon Web Services EMEA SARL","currency":"EUR","payment_method":"BANK_TRANSFER"}
`

const closeUsage = `{"usage_id":"c-1","account_id":"222222222223","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage","quantity":"10","unit":"Hrs","list_unit_price":"1","billed_cost":"10.00","currency":"USD"}
{"usage_id":"c-2","account_id":"222222222222","charge_period_start":"2026-09-04T00:00:00Z","charge_period_end":"2026-09-04T01:00:00Z","service":"AmazonS3","usage_type":"TimedStorage","quantity":"1","unit":"GB-Mo","list_unit_price":"1.115","billed_cost":"1.115","currency":"USD"}
`

type invoiceReport struct {
	Rows []struct {
		InvoiceID   string `json:"invoice_id"`
		Seller      string `json:"seller"`
		Currency    string `json:"currency"`
		Source      string `json:"source_account_id"`
		Subtotal    string `json:"subtotal"`
		Tax         string `json:"tax"`
		Total       string `json:"total"`
		Outstanding string `json:"outstanding"`
		Status      string `json:"status"`
		Lines       []struct {
			AccountID string `json:"account_id"`
			Service   string `json:"service"`
			Amount    string `json:"amount"`
			Class     string `json:"charge_class"`
			Month     string `json:"charge_month"`
		} `json:"lines"`
	} `json:"rows"`
}

type paymentReport struct {
	Invoices []struct {
		InvoiceID   string `json:"invoice_id"`
		Paid        string `json:"paid"`
		Outstanding string `json:"outstanding"`
		Status      string `json:"status"`
	} `json:"invoices"`
	PayerBalances []struct {
		Outstanding string `json:"outstanding"`
		Unapplied   string `json:"unapplied_credit"`
	} `json:"payer_balances"`
	SourceBalances []struct {
		Source      string `json:"source_account_id"`
		Outstanding string `json:"outstanding"`
	} `json:"source_balances"`
}

// TestCloseAndPayEndToEnd drives issue #5 through the real binaries: close,
// the invoices, tax and payments reports, a late record becoming a
// correction, replay --verify, explain and the sealed export verified offline.
func TestCloseAndPayEndToEnd(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, filepath.Join(t.TempDir(), "data"))
	d.ctlOK("", "apply", "-f", writeFile(t, "setup.jsonl", closeSetup))
	d.ctlOK("", "clock", "set", "2026-09-20")
	d.ctlOK("", "usage", "send", "-f", writeFile(t, "usage.jsonl", closeUsage))
	if r := d.ctl("", "close", "--payer", "111111111111", "--month", "2026-09"); r.code == 0 || !strings.Contains(r.stderr, "MONTH_NOT_ENDED") {
		t.Fatalf("close before the month ended:\n%s", r)
	}
	d.ctlOK("", "clock", "set", "2026-10-01T08:00:00Z")
	d.ctlOK("", "close", "--payer", "111111111111", "--month", "2026-09")
	if r := d.ctl("", "close", "--payer", "111111111111", "--month", "2026-09"); r.code == 0 || !strings.Contains(r.stderr, "MONTH_ALREADY_CLOSED") {
		t.Fatalf("second close:\n%s", r)
	}

	// 10.00 × 0.9 = 9.00; 1.115 × 0.9 = 1.0035 → 1.00; 19% of 10.00 = 1.90.
	var inv invoiceReport
	decode(t, d.ctlOK("", "report", "invoices", "--month", "2026-09"), &inv)
	if len(inv.Rows) != 1 {
		t.Fatalf("invoices: %+v", inv)
	}
	i := inv.Rows[0]
	if i.Seller != "Amazon Web Services EMEA SARL" || i.Currency != "EUR" || i.Source != "222222222222" || i.Subtotal != "10.00" || i.Tax != "1.90" || i.Total != "11.90" || i.Status != "OPEN" || len(i.Lines) != 2 ||
		i.Lines[0].AccountID != "222222222222" || i.Lines[0].Amount != "1.00" || i.Lines[1].Amount != "9.00" {
		t.Fatalf("invoice: %+v", i)
	}
	var tax struct {
		Rows []struct {
			Jurisdiction, Taxable, Tax string
			Rate                       string `json:"rate_percentage"`
		} `json:"rows"`
	}
	decode(t, d.ctlOK("", "report", "tax", "--month", "2026-09"), &tax)
	if len(tax.Rows) != 1 || tax.Rows[0].Jurisdiction != "DE" || tax.Rows[0].Rate != "19" || tax.Rows[0].Taxable != "10.00" || tax.Rows[0].Tax != "1.90" {
		t.Fatalf("tax: %+v", tax)
	}

	// Payments: partial, then an over-payment leaving credit, then its refund.
	d.ctlOK(`{"command":"RecordPayment","payment_id":"pay-1","payer_account_id":"111111111111","amount":"5.00","currency":"EUR","method":"BANK_TRANSFER"}`+"\n", "apply", "-f", "-")
	var pay paymentReport
	decode(t, d.ctlOK("", "report", "payments", "--payer", "111111111111"), &pay)
	if len(pay.Invoices) != 1 || pay.Invoices[0].Paid != "5.00" || pay.Invoices[0].Outstanding != "6.90" || pay.Invoices[0].Status != "PARTIALLY_PAID" {
		t.Fatalf("after a partial payment: %+v", pay)
	}
	if r := d.ctl(`{"command":"RecordPayment","payment_id":"pay-x","payer_account_id":"111111111111","amount":"5.00","currency":"USD","method":"CARD","invoice_ids":["`+i.InvoiceID+`"]}`+"\n", "apply", "-f", "-"); r.code == 0 || !strings.Contains(r.stdout+r.stderr, "CURRENCY_MISMATCH") {
		t.Fatalf("payment in the wrong currency:\n%s", r)
	}
	d.ctlOK(`{"command":"RecordPayment","payment_id":"pay-2","payer_account_id":"111111111111","amount":"10.00","currency":"EUR","method":"BANK_TRANSFER"}`+"\n", "apply", "-f", "-")
	pay = paymentReport{}
	decode(t, d.ctlOK("", "report", "payments", "--payer", "111111111111"), &pay)
	if pay.Invoices[0].Status != "PAID" || pay.Invoices[0].Outstanding != "0.00" || len(pay.PayerBalances) != 1 || pay.PayerBalances[0].Unapplied != "3.10" ||
		len(pay.SourceBalances) != 1 || pay.SourceBalances[0].Outstanding != pay.PayerBalances[0].Outstanding {
		t.Fatalf("after the over-payment: %+v", pay)
	}
	d.ctlOK(`{"command":"RefundPayment","payment_id":"pay-2","payer_account_id":"111111111111"}`+"\n", "apply", "-f", "-")
	pay = paymentReport{}
	decode(t, d.ctlOK("", "report", "payments", "--payer", "111111111111"), &pay)
	if pay.PayerBalances[0].Unapplied != "0.00" {
		t.Fatalf("after the refund: %+v", pay)
	}

	// A late September record becomes an October correction (U3).
	d.ctlOK(`{"usage_id":"c-late","account_id":"222222222223","charge_period_start":"2026-09-29T00:00:00Z","charge_period_end":"2026-09-29T01:00:00Z","service":"AmazonEC2","usage_type":"BoxUsage","quantity":"1","unit":"Hrs","list_unit_price":"1","billed_cost":"2","currency":"USD"}`+"\n", "usage", "send", "-f", "-")
	d.ctlOK("", "clock", "set", "2026-11-01")
	d.ctlOK("", "close", "--payer", "111111111111", "--month", "2026-10")
	inv = invoiceReport{}
	decode(t, d.ctlOK("", "report", "invoices", "--month", "2026-10"), &inv)
	if len(inv.Rows) != 1 || len(inv.Rows[0].Lines) != 1 || inv.Rows[0].Lines[0].Class != "CORRECTION" || inv.Rows[0].Lines[0].Month != "2026-09" || inv.Rows[0].Lines[0].Amount != "1.80" {
		t.Fatalf("October: %+v", inv)
	}
	for _, m := range []string{"2026-09", "2026-10"} {
		if rep := replay(t, d, 0, "--month", m, "--verify"); rep.Verified == nil || !*rep.Verified {
			t.Fatalf("replay %s --verify: %+v", m, rep)
		}
	}
	// Point in time (R2): October as of before the late record was recorded
	// (the clock stood at 2026-10-01T08:00 when it came) has no usage; as of
	// then, it has the correction. September is the same either way.
	for _, c := range []struct{ asOf, records, cost string }{{"2026-10-01T07:59:59Z", "0", "0"}, {"2026-10-01T08:00:00Z", "1", "2"}} {
		rep := replay(t, d, 0, "--month", "2026-10", "--as-of", c.asOf)
		if b := model(t, rep.Replay, "billable"); b.Totals["records"] != c.records || b.Totals["billed_cost"] != c.cost {
			t.Fatalf("replay 2026-10 --as-of %s: billable %v, want %s records costing %s", c.asOf, b.Totals, c.records, c.cost)
		}
		if b := model(t, replay(t, d, 0, "--month", "2026-09", "--as-of", c.asOf).Replay, "billable"); b.Totals["records"] != "2" {
			t.Fatalf("replay 2026-09 --as-of %s: %v", c.asOf, b.Totals)
		}
	}

	// explain: the records and arithmetic behind line 1.
	r := d.ctlOK("", "-o", "table", "explain", "--invoice", i.InvoiceID, "--line", "1")
	for _, want := range []string{"usage c-2", "converted = 1.115 × 0.9 (USD→EUR in force since 2026-09-01, on the invoice date 2026-10-01) = 1.0035 EUR", "amount = round half-up(1.0035, 2 decimals) = 1.00 EUR", "DE: 19% (in force since 2026-01-01) × 10.00 = 1.9 → round half-up = 1.90 EUR"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("explain lacks %q:\n%s", want, r)
		}
	}

	// The sealed month exports and verifies offline (billingd seals it shortly after the close).
	out := filepath.Join(t.TempDir(), "audit")
	deadline := time.Now().Add(15 * time.Second)
	for {
		r = d.ctl("", "-o", "table", "audit", "export", "--month", "2026-09", "--out", out)
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) || !strings.Contains(r.stderr, "no sealed close") {
			t.Fatalf("audit export:\n%s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r = d.ctlOK("", "-o", "table", "audit", "verify", "--dir", out); !strings.Contains(r.stdout, "intact") {
		t.Fatalf("audit verify --dir:\n%s", r)
	}
}
