package sim

import (
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// The model's own decimal arithmetic (M1): exact, 60 digits, half-up rounding
// to a currency's minor unit. It uses apd directly rather than the domain's
// helpers, so that a bug there cannot hide in the model too.

var decCtx = apd.BaseContext.WithPrecision(60)

// minorUnits are the currencies the simulation invoices in.
var minorUnits = map[string]int32{"USD": 2, "EUR": 2, "JPY": 0}

func dec(s string) *apd.Decimal {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		panic(fmt.Sprintf("sim: bad decimal %q: %v", s, err))
	}
	return d
}

func zero() *apd.Decimal { return apd.New(0, 0) }

func add(a, b *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	mustExact(decCtx.Add(&r, a, b))
	return &r
}

func sub(a, b *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	mustExact(decCtx.Sub(&r, a, b))
	return &r
}

func mul(a, b *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	mustExact(decCtx.Mul(&r, a, b))
	return &r
}

func neg(a *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	r.Neg(a)
	return &r
}

// pct returns p/100 exactly.
func pct(p *apd.Decimal) *apd.Decimal {
	var r apd.Decimal
	r.Set(p)
	r.Exponent -= 2
	return &r
}

func mustExact(c apd.Condition, err error) {
	if err != nil {
		panic(err)
	}
	if c.Inexact() {
		panic("sim: inexact decimal arithmetic")
	}
}

// roundTo rounds half away from zero to minor decimals (M1).
func roundTo(d *apd.Decimal, minor int32) *apd.Decimal {
	c := *decCtx // a copy: decCtx is shared by every goroutine
	c.Rounding = apd.RoundHalfUp
	var r apd.Decimal
	if _, err := c.Quantize(&r, d, -minor); err != nil {
		panic(err)
	}
	return &r
}

func minDec(a, b *apd.Decimal) *apd.Decimal {
	if a.Cmp(b) <= 0 {
		return a
	}
	return b
}

// same reports whether text s is the decimal d (any rendering).
func same(s string, d *apd.Decimal) bool {
	x, _, err := apd.NewFromString(s)
	return err == nil && x.Cmp(d) == 0
}

// txt renders d plainly for messages.
func txt(d *apd.Decimal) string {
	if d == nil {
		return "<nil>"
	}
	var r apd.Decimal
	r.Reduce(d)
	return r.Text('f')
}

// Months are "YYYY-MM" strings, which order like the months they name.

func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

func monthStart(m string) time.Time {
	t, err := time.Parse("2006-01", m)
	if err != nil {
		panic(err)
	}
	return t
}

func addMonths(m string, n int) string { return monthStart(m).AddDate(0, n, 0).Format("2006-01") }

// monthEnd is the last millisecond of m (T5).
func monthEnd(m string) time.Time { return monthStart(addMonths(m, 1)).Add(-time.Millisecond) }

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }
