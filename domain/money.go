package domain

import (
	"fmt"

	"github.com/cockroachdb/apd/v3"
)

// Currencies the ledger knows, with their minor units (M1: USD 2, EUR 2, JPY 0).
var Currencies = map[string]int{
	"USD": 2, "EUR": 2, "JPY": 0, "GBP": 2, "INR": 2, "AUD": 2, "CAD": 2, "BRL": 2,
	"KRW": 0, "ZAR": 2, "CHF": 2, "CNY": 2, "SEK": 2, "NOK": 2, "DKK": 2, "SGD": 2,
	"HKD": 2, "NZD": 2, "MXN": 2, "PLN": 2,
}

// decimalCtx is the context for money arithmetic: 60 significant digits is far
// beyond any bill, and every operation checks that nothing was rounded.
var decimalCtx = apd.BaseContext.WithPrecision(60)

// ParseDecimal parses a decimal string exactly (no floats, no exponent forms
// beyond what apd accepts, no NaN or infinity).
func ParseDecimal(s string) (*apd.Decimal, error) {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a decimal number", s)
	}
	if d.Form != apd.Finite {
		return nil, fmt.Errorf("%q is not a finite decimal number", s)
	}
	return d, nil
}

// AddDecimal returns a + b exactly; it fails rather than round.
func AddDecimal(a, b *apd.Decimal) (*apd.Decimal, error) {
	var r apd.Decimal
	cond, err := decimalCtx.Add(&r, a, b)
	if err != nil {
		return nil, err
	}
	if cond.Inexact() || cond.Rounded() {
		return nil, fmt.Errorf("decimal sum %s + %s exceeds %d digits", a, b, decimalCtx.Precision)
	}
	return &r, nil
}

// mulDecimal returns a × b exactly; it fails rather than round.
func mulDecimal(a, b *apd.Decimal) (*apd.Decimal, error) {
	var r apd.Decimal
	cond, err := decimalCtx.Mul(&r, a, b)
	if err != nil {
		return nil, err
	}
	if cond.Inexact() || cond.Rounded() {
		return nil, fmt.Errorf("decimal product %s × %s exceeds %d digits", a, b, decimalCtx.Precision)
	}
	return &r, nil
}

// CanonicalDecimal renders d without trailing fractional zeros and without an
// exponent ("1.50" → "1.5", "2.00" → "2", "-0" → "0"), so equal values print the
// same whatever the order of the additions that produced them (digests, R2).
func CanonicalDecimal(d *apd.Decimal) string {
	var r apd.Decimal
	r.Reduce(d)
	if r.IsZero() {
		return "0"
	}
	if r.Exponent > 0 {
		// Reduce may move trailing integer zeros into the exponent; print them back.
		var q apd.Decimal
		_, _ = decimalCtx.Quantize(&q, &r, 0)
		return q.Text('f')
	}
	return r.Text('f')
}
