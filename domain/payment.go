package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Payment profiles (Y1) and exchange rates (M1): the configuration that decides
// the currency of an invoice and converts its lines. The money helpers at the
// end are the only place amounts are rounded or converted.

// PaymentProfileStream is the stream of a payer's profile for one seller of record.
func PaymentProfileStream(payer, sellerSlug string) string {
	return "billing.payment.profile." + payer + "." + sellerSlug
}

// ExchangeRateStream is the stream of the rates from one currency to another.
func ExchangeRateStream(from, to string) string { return "billing.fx." + from + "." + to }

// PaymentProfile is how a payer pays one seller of record (Y1).
type PaymentProfile struct {
	payer    string
	seller   string
	currency string
	method   billingv1.PaymentMethod
}

// Exists reports whether the profile was set.
func (p PaymentProfile) Exists() bool { return p.payer != "" }

// Payer is the paying management account.
func (p PaymentProfile) Payer() string { return p.payer }

// Seller is the seller entity's legal name.
func (p PaymentProfile) Seller() string { return p.seller }

// Currency is the invoice and payment currency (X5).
func (p PaymentProfile) Currency() string { return p.currency }

// Method is the payment method's stable name (CARD, BANK_TRANSFER, DIRECT_DEBIT).
func (p PaymentProfile) Method() string {
	return strings.TrimPrefix(p.method.String(), "PAYMENT_METHOD_")
}

// FoldPaymentProfile folds a profile stream.
func FoldPaymentProfile(events []*billingv1.Event) PaymentProfile {
	var p PaymentProfile
	for _, ev := range events {
		if e := ev.GetPaymentProfileSet(); e != nil {
			p = PaymentProfile{payer: e.GetPayerAccountId(), seller: e.GetSeller(), currency: e.GetCurrency(), method: e.GetPaymentMethod()}
		}
	}
	return p
}

// PaymentProfileFor reads a payer's profile for a seller (zero when none: the
// seller's default currency applies, X5).
func PaymentProfileFor(v View, payer, seller string) (PaymentProfile, error) {
	evs, err := v.Events(PaymentProfileStream(payer, SellerSlug(seller)))
	if err != nil {
		return PaymentProfile{}, err
	}
	p := FoldPaymentProfile(evs)
	if p.seller != seller {
		return PaymentProfile{}, nil
	}
	return p, nil
}

func parsePaymentMethod(s string) (billingv1.PaymentMethod, error) {
	switch s {
	case "CARD", "BANK_TRANSFER", "DIRECT_DEBIT":
		return billingv1.PaymentMethod(billingv1.PaymentMethod_value["PAYMENT_METHOD_"+s]), nil
	case "":
		return 0, Reject(CodeInvalidArgument, "payment_method is required: CARD, BANK_TRANSFER or DIRECT_DEBIT (Y1)")
	}
	return 0, Reject(CodeInvalidArgument, "payment_method %q is not one of CARD, BANK_TRANSFER, DIRECT_DEBIT (Y1)", s)
}

// ExchangeRate is one rate from a day on.
type ExchangeRate struct {
	rate string // canonical decimal
	from string // YYYY-MM-DD
}

// Rate is the number of target units per source unit (canonical decimal).
func (r ExchangeRate) Rate() string { return r.rate }

// EffectiveDate is the first day the rate applies.
func (r ExchangeRate) EffectiveDate() string { return r.from }

// ExchangeRates is the rate history of one currency pair (stream billing.fx.<from>.<to>).
type ExchangeRates struct {
	hist datedHistory[ExchangeRate]
}

// FoldExchangeRates folds a pair's stream; a later rate for the same day replaces the earlier one.
func FoldExchangeRates(events []*billingv1.Event) ExchangeRates {
	var out ExchangeRates
	for _, ev := range events {
		if e := ev.GetExchangeRateSet(); e != nil {
			out.hist.put(e.GetEffectiveDate(), ExchangeRate{rate: e.GetRate(), from: e.GetEffectiveDate()})
		}
	}
	return out
}

// At returns the rate in force on day (the latest effective_date on or before it).
func (x ExchangeRates) At(day time.Time) (ExchangeRate, bool) { return x.hist.at(day) }

// ExchangeRateOn returns the rate from one currency to another in force on day
// (M1: the rate of the invoice date) and the day it took effect. The same
// currency converts at 1 (effective ""). Only the recorded direction is used:
// a USD→EUR rate does not imply EUR→USD.
func ExchangeRateOn(v View, from, to string, day time.Time) (rate *apd.Decimal, effective string, ok bool, err error) {
	if from == to {
		return apd.New(1, 0), "", true, nil
	}
	if _, ok := Currencies[from]; !ok {
		return nil, "", false, nil
	}
	if _, ok := Currencies[to]; !ok {
		return nil, "", false, nil
	}
	evs, err := v.Events(ExchangeRateStream(from, to))
	if err != nil {
		return nil, "", false, err
	}
	r, found := FoldExchangeRates(evs).At(day)
	if !found {
		return nil, "", false, nil
	}
	d, err := ParseDecimal(r.rate)
	if err != nil {
		return nil, "", false, err
	}
	return d, r.from, true, nil
}

// ---------------------------------------------------------------------------
// Decisions.

// maxFXDecimals bounds the decimals of an exchange rate; maxFXRate its size.
const (
	maxFXDecimals = 10
	maxFXRate     = 1000000000
)

func decideSetPaymentProfile(v View, c *billingv1.SetPaymentProfile) (Outcome, error) {
	payer := c.GetPayerAccountId()
	if err := checkAccountID("payer_account_id", payer); err != nil {
		return Outcome{}, err
	}
	if err := checkText("seller", c.GetSeller(), true, 128); err != nil {
		return Outcome{}, err
	}
	if err := checkCurrency("currency", c.GetCurrency()); err != nil {
		return Outcome{}, err
	}
	method, err := parsePaymentMethod(c.GetPaymentMethod())
	if err != nil {
		return Outcome{}, err
	}
	if _, err := loadManagementOrg(v, "payer", payer); err != nil {
		return Outcome{}, err
	}
	// A seller named by any SetSellerOfRecord stays known (its registry entry is
	// never removed), so this check needs no guard against a concurrent change.
	slug := SellerSlug(c.GetSeller())
	evs, err := v.Events(SellerEntityStream(slug))
	if err != nil {
		return Outcome{}, err
	}
	if se := FoldSellerEntity(evs); !se.Exists() || se.Name() != c.GetSeller() {
		return Outcome{}, Reject(CodeNotFound, "seller %q is not a seller of record; name one set with SetSellerOfRecord (Y1, X1)", c.GetSeller())
	}
	return Outcome{AggregateID: payer, Changes: []Change{{Stream: PaymentProfileStream(payer, slug), Events: one(ev(&billingv1.PaymentProfileSet{
		PayerAccountId: payer, Seller: c.GetSeller(), SellerSlug: slug, Currency: c.GetCurrency(), PaymentMethod: method,
	}))}}}, nil
}

func decideSetExchangeRate(c *billingv1.SetExchangeRate) (Outcome, error) {
	from, to := c.GetFrom(), c.GetTo()
	if err := checkCurrency("from", from); err != nil {
		return Outcome{}, err
	}
	if err := checkCurrency("to", to); err != nil {
		return Outcome{}, err
	}
	if from == to {
		return Outcome{}, Reject(CodeInvalidArgument, "from and to are both %s; a currency converts to itself at 1", from)
	}
	if c.GetRate() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "rate is required (a decimal > 0, e.g. \"0.9215\")")
	}
	d, err := ParseDecimal(c.GetRate())
	if err != nil {
		return Outcome{}, Reject(CodeInvalidArgument, "rate: %v", err)
	}
	if d.Sign() <= 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "rate %s must be > 0 (M1)", c.GetRate())
	}
	var r apd.Decimal
	r.Reduce(d)
	if r.Exponent < -maxFXDecimals {
		return Outcome{}, Reject(CodeInvalidArgument, "rate %s has more than %d decimals", c.GetRate(), maxFXDecimals)
	}
	if r.Cmp(apd.New(maxFXRate, 0)) > 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "rate %s is above the limit of %d", c.GetRate(), maxFXRate)
	}
	if err := checkDay("effective_date", c.GetEffectiveDate()); err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: from + "." + to, Changes: []Change{{Stream: ExchangeRateStream(from, to), Events: one(ev(&billingv1.ExchangeRateSet{
		From: from, To: to, Rate: CanonicalDecimal(d), EffectiveDate: c.GetEffectiveDate(),
	}))}}}, nil
}

// ---------------------------------------------------------------------------
// Money (M1).

// RoundHalfUp rounds an amount to the minor unit of a currency (USD 2, EUR 2,
// JPY 0 decimals), half-up. Half-up means half away from zero, so a credit
// rounds like the charge it mirrors: 0.125 → 0.13 and −0.125 → −0.13, and the
// negation of a rounded amount is the rounded negation. The result carries
// exactly the currency's decimals ("0.10", "3").
func RoundHalfUp(amount *apd.Decimal, currency string) (*apd.Decimal, error) {
	minor, ok := Currencies[currency]
	if !ok {
		return nil, fmt.Errorf("currency %q is not known", currency)
	}
	ctx := *decimalCtx
	ctx.Rounding = apd.RoundHalfUp // apd rounds the magnitude: half away from zero
	var r apd.Decimal
	if _, err := ctx.Quantize(&r, amount, -int32(minor)); err != nil {
		return nil, fmt.Errorf("round %s to %s: %w", amount, currency, err)
	}
	return &r, nil
}

// ConvertFX converts an amount at a rate exactly (no rounding: M1 converts
// before rounding, so an invoice line is rounded once, in its own currency).
func ConvertFX(amount, rate *apd.Decimal) (*apd.Decimal, error) {
	return mulDecimal(amount, rate)
}
