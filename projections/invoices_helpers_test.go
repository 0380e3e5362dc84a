package projections_test

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Hand-built closes, invoices and payments (X5, M1, Y2) for the invoices and
// payments projections. Every figure is written out: lines are rounded to
// the minor unit, tax = rate × taxable rounded half-up, total = subtotal + tax.
const (
	invA1 = "INV-202609-111111111111-a1a1a1a1a1" // payerA, sourceX, USD 135.92
	invA2 = "INV-202609-111111111111-a2a2a2a2a2" // payerA, sourceY, EUR 45.11 (reverse charge)
	invB1 = "INV-202609-222222222222-b1b1b1b1b1" // payerB, sourceZ, JPY 1357
	invA3 = "INV-202610-111111111111-a3a3a3a3a3" // payerA, sourceX, October, USD 10.00

	sellerUS   = "Amazon Web Services, Inc."
	sellerEMEA = "Amazon Web Services EMEA SARL"
	sellerJP   = "Amazon Web Services Japan G.K."
)

// Times of the scenario: September closes on 2 October, October on 2 November.
var (
	closeSep  = time.Date(2026, 10, 2, 9, 0, 0, 0, time.UTC)
	pay1At    = time.Date(2026, 10, 5, 12, 0, 0, 0, time.UTC)
	payBAt    = time.Date(2026, 10, 6, 12, 0, 0, 0, time.UTC)
	closeOct  = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	pay2At    = time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	refund2At = time.Date(2026, 11, 11, 12, 0, 0, 0, time.UTC)
)

// line is an invoice line in the invoice's currency (fx 1) unless fx is set.
func line(n uint32, account, service, month, amount, jurisdiction, reason string) *billingv1.InvoiceLine {
	m, _ := domain.ParseMonth(month)
	return &billingv1.InvoiceLine{
		LineNumber: n, AccountId: account, Service: service, ChargeMonth: month, ChargeClass: "USAGE",
		UsageCurrency: "USD", BilledCost: amount + "0001", FxRate: "1", Converted: amount + "0001", Amount: amount,
		Jurisdiction: jurisdiction, TaxReason: reason, UsageRecords: uint64(n) * 10,
		ChargePeriodStart: ts(m.Start()), ChargePeriodEnd: ts(m.End()),
	}
}

// invoiceA1: payerA's September invoice for sourceX: two US-WA lines, 10.1 % tax.
func invoiceA1() *billingv1.Invoice {
	return &billingv1.Invoice{
		InvoiceId: invA1, PayerAccountId: payerA, Month: sep, SourceAccountId: sourceX,
		ReceiverAccountId: sourceX, Seller: sellerUS, Currency: "USD", InvoiceDate: "2026-10-02",
		BillToLegalName: "Partner Co", BillToTaxRegistrationNumber: "US-123", PaymentMethod: "BANK_TRANSFER",
		Lines: []*billingv1.InvoiceLine{
			line(1, accountX1, "AmazonEC2", sep, "100.00", "US-WA", ""),
			line(2, accountX2, "AmazonS3", sep, "23.45", "US-WA", ""),
		},
		Taxes: []*billingv1.InvoiceTax{{Jurisdiction: "US-WA", RatePercentage: "10.1", RateEffectiveFrom: "2026-01-01",
			Taxable: "123.45", Tax: "12.47"}},
		Subtotal: "123.45", Tax: "12.47", Total: "135.92",
	}
}

// invoiceA2: payerA's September invoice for sourceY's invoice unit iu-berlin,
// in EUR converted from USD, reverse charge.
func invoiceA2() *billingv1.Invoice {
	l := line(1, accountY1, "AmazonEC2", sep, "45.11", "DE", "REVERSE_CHARGE")
	l.BilledCost, l.FxRate, l.FxEffectiveDate, l.Converted = "50.123", "0.9", "2026-10-01", "45.1107"
	return &billingv1.Invoice{
		InvoiceId: invA2, PayerAccountId: payerA, Month: sep, SourceAccountId: sourceY,
		InvoiceUnitId: "iu-berlin", InvoiceUnitName: "Berlin", ReceiverAccountId: accountY1, Seller: sellerEMEA,
		Currency: "EUR", InvoiceDate: "2026-10-02", BillToLegalName: "Berlin GmbH", BillToTaxRegistrationNumber: "DE999",
		Lines: []*billingv1.InvoiceLine{l},
		Taxes: []*billingv1.InvoiceTax{{Jurisdiction: "DE", Reason: "REVERSE_CHARGE", RatePercentage: "0",
			Taxable: "45.11", Tax: "0.00"}},
		Subtotal: "45.11", Tax: "0.00", Total: "45.11",
	}
}

// invoiceB1: payerB's September invoice in JPY (no minor unit), 10 % tax.
func invoiceB1() *billingv1.Invoice {
	l := line(1, sourceZ, "AmazonEC2", sep, "1234", "JP", "")
	l.BilledCost, l.FxRate, l.FxEffectiveDate, l.Converted = "8.2266", "150", "2026-10-01", "1233.99"
	return &billingv1.Invoice{
		InvoiceId: invB1, PayerAccountId: payerB, Month: sep, SourceAccountId: sourceZ, ReceiverAccountId: sourceZ,
		Seller: sellerJP, Currency: "JPY", InvoiceDate: "2026-10-02",
		Lines: []*billingv1.InvoiceLine{l},
		Taxes: []*billingv1.InvoiceTax{{Jurisdiction: "JP", RatePercentage: "10", RateEffectiveFrom: "2019-10-01",
			Taxable: "1234", Tax: "123"}},
		Subtotal: "1234", Tax: "123", Total: "1357",
	}
}

// invoiceA3: payerA's October invoice for sourceX, tax exempt.
func invoiceA3() *billingv1.Invoice {
	return &billingv1.Invoice{
		InvoiceId: invA3, PayerAccountId: payerA, Month: oct, SourceAccountId: sourceX, ReceiverAccountId: sourceX,
		Seller: sellerUS, Currency: "USD", InvoiceDate: "2026-11-02",
		Lines:    []*billingv1.InvoiceLine{line(1, accountX1, "AmazonEC2", oct, "10.00", "US-WA", "EXEMPT")},
		Taxes:    []*billingv1.InvoiceTax{{Jurisdiction: "US-WA", Reason: "EXEMPT", RatePercentage: "0", Taxable: "10.00", Tax: "0.00"}},
		Subtotal: "10.00", Tax: "0.00", Total: "10.00",
	}
}

// envelope stamps ev as recorded at t with a unique id.
func envelope(t time.Time, ev *billingv1.Event) *billingv1.Event {
	ev.RecordedAt, ev.Actor, ev.EventId = ts(t), "test", fmt.Sprintf("inv-ev-%d-%d", t.Unix(), eventSeq.Add(1))
	return ev
}

// closeEvents are the events of a close on billing.month.<payer>.<month> as
// closes were first written: MonthClosed listing the invoice ids (no count),
// then one InvoiceIssued per invoice.
func closeEvents(at time.Time, payer, month string, usageRecords uint64, invs ...*billingv1.Invoice) []*billingv1.Event {
	mc := &billingv1.MonthClosed{PayerAccountId: payer, Month: month, InvoiceDate: at.Format(time.DateOnly), UsageRecords: usageRecords}
	evs := []*billingv1.Event{nil}
	for _, inv := range invs {
		mc.InvoiceIds = append(mc.InvoiceIds, inv.GetInvoiceId())
		evs = append(evs, envelope(at, &billingv1.Event{Payload: &billingv1.Event_InvoiceIssued{
			InvoiceIssued: &billingv1.InvoiceIssued{Invoice: proto.Clone(inv).(*billingv1.Invoice)}}}))
	}
	evs[0] = envelope(at, &billingv1.Event{Payload: &billingv1.Event_MonthClosed{MonthClosed: mc}})
	return evs
}

// packedCloseEvents are the events of a close as CloseMonth writes them:
// MonthClosed counting the invoices (no ids), then InvoicesIssued events; an
// invoice of several lines comes alone with its first line, and an
// InvoiceLinesIssued carries the others.
func packedCloseEvents(at time.Time, payer, month string, usageRecords uint64, invs ...*billingv1.Invoice) []*billingv1.Event {
	mc := &billingv1.MonthClosed{PayerAccountId: payer, Month: month, InvoiceDate: at.Format(time.DateOnly), UsageRecords: usageRecords,
		InvoiceCount: uint32(len(invs))}
	evs := []*billingv1.Event{nil}
	var batch []*billingv1.Invoice
	flush := func() {
		if len(batch) > 0 {
			evs = append(evs, envelope(at, &billingv1.Event{Payload: &billingv1.Event_InvoicesIssued{
				InvoicesIssued: &billingv1.InvoicesIssued{Invoices: batch}}}))
			batch = nil
		}
	}
	for _, inv := range invs {
		inv = proto.Clone(inv).(*billingv1.Invoice)
		if len(inv.GetLines()) < 2 {
			batch = append(batch, inv)
			continue
		}
		flush()
		rest := inv.Lines[1:]
		inv.Lines = inv.Lines[:1]
		batch = append(batch, inv)
		flush()
		evs = append(evs, envelope(at, &billingv1.Event{Payload: &billingv1.Event_InvoiceLinesIssued{
			InvoiceLinesIssued: &billingv1.InvoiceLinesIssued{InvoiceId: inv.GetInvoiceId(), FirstLine: 2, Lines: rest}}}))
	}
	flush()
	evs[0] = envelope(at, &billingv1.Event{Payload: &billingv1.Event_MonthClosed{MonthClosed: mc}})
	return evs
}

// posted is the InvoicesPosted of a close.
func posted(at time.Time, payer, month string, invs ...*billingv1.Invoice) *billingv1.Event {
	p := &billingv1.InvoicesPosted{PayerAccountId: payer, Month: month}
	for _, inv := range invs {
		p.Invoices = append(p.Invoices, &billingv1.InvoiceSummary{
			InvoiceId: inv.GetInvoiceId(), Month: inv.GetMonth(), SourceAccountId: inv.GetSourceAccountId(),
			InvoiceUnitId: inv.GetInvoiceUnitId(), Seller: inv.GetSeller(), Currency: inv.GetCurrency(), Total: inv.GetTotal(),
		})
	}
	return envelope(at, &billingv1.Event{Payload: &billingv1.Event_InvoicesPosted{InvoicesPosted: p}})
}

// alloc is an allocation of amount to inv leaving outstanding.
func alloc(inv, source, amount, outstanding string) *billingv1.PaymentAllocation {
	return &billingv1.PaymentAllocation{InvoiceId: inv, BillSourceAccountId: source, Amount: amount, OutstandingAfter: outstanding}
}

// payment is a PaymentRecorded received at t.
func payment(at time.Time, payer, id, amount, currency string, method billingv1.PaymentMethod, unapplied string,
	allocs ...*billingv1.PaymentAllocation) *billingv1.Event {
	return envelope(at, &billingv1.Event{Payload: &billingv1.Event_PaymentRecorded{PaymentRecorded: &billingv1.PaymentRecorded{
		PaymentId: id, PayerAccountId: payer, Amount: amount, Currency: currency, Method: method,
		Allocations: allocs, Unapplied: unapplied, ReceivedAt: ts(at),
	}}})
}

// refunded is a PaymentRefunded recorded at t.
func refunded(at time.Time, payer, id, amount, currency, unappliedAfter string) *billingv1.Event {
	return envelope(at, &billingv1.Event{Payload: &billingv1.Event_PaymentRefunded{PaymentRefunded: &billingv1.PaymentRefunded{
		PaymentId: id, PayerAccountId: payer, Amount: amount, Currency: currency, UnappliedAfter: unappliedAfter,
	}}})
}

// invoiceRow is inv as ReportInvoices shows it, with its payment state.
func invoiceRow(inv *billingv1.Invoice, paid, outstanding, status string) *billingv1.InvoiceRow {
	return &billingv1.InvoiceRow{
		InvoiceId: inv.GetInvoiceId(), PayerAccountId: inv.GetPayerAccountId(), Month: inv.GetMonth(),
		Seller: inv.GetSeller(), Currency: inv.GetCurrency(), SourceAccountId: inv.GetSourceAccountId(),
		InvoiceUnitId: inv.GetInvoiceUnitId(), InvoiceUnitName: inv.GetInvoiceUnitName(),
		ReceiverAccountId: inv.GetReceiverAccountId(), InvoiceDate: inv.GetInvoiceDate(),
		BillToLegalName: inv.GetBillToLegalName(), BillToTaxRegistrationNumber: inv.GetBillToTaxRegistrationNumber(),
		PaymentMethod: inv.GetPaymentMethod(), Lines: inv.GetLines(), Taxes: inv.GetTaxes(),
		Subtotal: inv.GetSubtotal(), Tax: inv.GetTax(), Total: inv.GetTotal(),
		Paid: paid, Outstanding: outstanding, Status: status,
	}
}

// zeroOf is the zero of currency at its minor unit ("0.00", "0" for JPY).
func zeroOf(currency string) string {
	if currency == "JPY" {
		return "0"
	}
	return "0.00"
}
