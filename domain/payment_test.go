package domain

import (
	"github.com/cockroachdb/apd/v3"

	"testing"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func TestY1_APaymentProfileNamesAKnownSellerACurrencyAndAMethod(t *testing.T) {
	s := pricingWorld(t).Do(asMessages(DefaultSellersOfRecord())...)
	cmd := &billingv1.SetPaymentProfile{PayerAccountId: payerA, Seller: emea, Currency: "USD", PaymentMethod: "BANK_TRANSFER"}
	s.When(cmd).Then(Change{Stream: "billing.payment.profile.111111111111.amazon-web-services-emea-sarl", Events: evs(&billingv1.PaymentProfileSet{
		PayerAccountId: payerA, Seller: emea, SellerSlug: "amazon-web-services-emea-sarl", Currency: "USD",
		PaymentMethod: billingv1.PaymentMethod_PAYMENT_METHOD_BANK_TRANSFER,
	})})
	p, _ := PaymentProfileFor(s.w, payerA, emea)
	if p.Currency() != "USD" || p.Method() != "BANK_TRANSFER" {
		t.Fatalf("profile %+v", p)
	}
	// A later profile replaces it; other sellers have none.
	s.Do(mod(cmd, func(c *billingv1.SetPaymentProfile) { c.Currency, c.PaymentMethod = "EUR", "DIRECT_DEBIT" }))
	if p, _ := PaymentProfileFor(s.w, payerA, emea); p.Currency() != "EUR" || p.Method() != "DIRECT_DEBIT" {
		t.Fatalf("replaced profile %+v", p)
	}
	if p, _ := PaymentProfileFor(s.w, payerA, awsJ); p.Exists() {
		t.Fatalf("no profile for %s expected", awsJ)
	}

	for name, tc := range map[string]struct {
		cmd       *billingv1.SetPaymentProfile
		code      Code
		fragments []string
	}{
		"payer not 12 digits":    {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.PayerAccountId = "1" }), CodeInvalidArgument, []string{"payer_account_id"}},
		"payer unregistered":     {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.PayerAccountId = orgD }), CodeNotFound, []string{"payer organization " + orgD}},
		"payer a member account": {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.PayerAccountId = acctA2 }), CodeInvalidArgument, []string{acctA2, "not a management account"}},
		"seller missing":         {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.Seller = "" }), CodeInvalidArgument, []string{"seller is required"}},
		"seller unknown":         {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.Seller = "Acme Cloud Ltd" }), CodeNotFound, []string{`"Acme Cloud Ltd"`, "not a seller of record"}},
		"seller spelled differently": {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.Seller = "amazon web services emea sarl" }),
			CodeNotFound, []string{"not a seller of record"}},
		"currency unknown": {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.Currency = "BTC" }), CodeInvalidArgument, []string{"currency", "BTC"}},
		"method missing":   {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.PaymentMethod = "" }), CodeInvalidArgument, []string{"payment_method is required"}},
		"method unknown":   {mod(cmd, func(c *billingv1.SetPaymentProfile) { c.PaymentMethod = "CHEQUE" }), CodeInvalidArgument, []string{"payment_method", "CHEQUE", "CARD, BANK_TRANSFER, DIRECT_DEBIT"}},
	} {
		t.Run(name, func(t *testing.T) {
			pricingWorld(t).Do(asMessages(DefaultSellersOfRecord())...).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
}

func TestM1_ExchangeRatesAreEventsPerPairFromADayOn(t *testing.T) {
	s := given(t)
	s.When(&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.92150", EffectiveDate: "2026-09-01"}).Then(
		Change{Stream: "billing.fx.USD.EUR", Events: evs(&billingv1.ExchangeRateSet{From: "USD", To: "EUR", Rate: "0.9215", EffectiveDate: "2026-09-01"})})
	s.Do(&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.95", EffectiveDate: "2026-10-01"},
		&billingv1.SetExchangeRate{From: "USD", To: "EUR", Rate: "0.93", EffectiveDate: "2026-10-01"}) // replaces the same day
	for _, tc := range []struct {
		from, to, day, want string
		found               bool
	}{
		{"USD", "EUR", "2026-08-31T23:59:59Z", "", false},
		{"USD", "EUR", "2026-09-30T23:59:59Z", "0.9215", true},
		{"USD", "EUR", "2026-10-01T00:00:00Z", "0.93", true},
		{"EUR", "USD", "2026-10-01T00:00:00Z", "", false}, // only the recorded direction
		{"JPY", "JPY", "2026-10-01T00:00:00Z", "1", true},
	} {
		r, _, ok, err := ExchangeRateOn(s.w, tc.from, tc.to, at(tc.day))
		got := ""
		if r != nil {
			got = CanonicalDecimal(r)
		}
		if err != nil || ok != tc.found || got != tc.want {
			t.Errorf("%s→%s on %s: got %q %v %v, want %q %v", tc.from, tc.to, tc.day, got, ok, err, tc.want, tc.found)
		}
	}

	ok := &billingv1.SetExchangeRate{From: "USD", To: "JPY", Rate: "147.25", EffectiveDate: "2026-09-01"}
	for name, tc := range map[string]struct {
		cmd       *billingv1.SetExchangeRate
		fragments []string
	}{
		"from unknown":         {mod(ok, func(c *billingv1.SetExchangeRate) { c.From = "usd" }), []string{"from", "usd"}},
		"to missing":           {mod(ok, func(c *billingv1.SetExchangeRate) { c.To = "" }), []string{"to is required"}},
		"same currency":        {mod(ok, func(c *billingv1.SetExchangeRate) { c.To = "USD" }), []string{"both USD"}},
		"rate missing":         {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "" }), []string{"rate is required"}},
		"rate not a decimal":   {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "1,5" }), []string{"rate", "not a decimal"}},
		"rate zero":            {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "0" }), []string{"rate 0 must be > 0"}},
		"rate negative":        {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "-1.2" }), []string{"must be > 0"}},
		"rate NaN":             {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "NaN" }), []string{"rate"}},
		"rate 11 decimals":     {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "0.12345678901" }), []string{"10 decimals"}},
		"rate huge":            {mod(ok, func(c *billingv1.SetExchangeRate) { c.Rate = "1e12" }), []string{"above the limit"}},
		"effective_date bad":   {mod(ok, func(c *billingv1.SetExchangeRate) { c.EffectiveDate = "2026-9-1" }), []string{"effective_date", "YYYY-MM-DD"}},
		"effective_date empty": {mod(ok, func(c *billingv1.SetExchangeRate) { c.EffectiveDate = "" }), []string{"effective_date is required"}},
	} {
		t.Run(name, func(t *testing.T) { given(t).When(tc.cmd).ThenError(CodeInvalidArgument, tc.fragments...) })
	}
}

// TestM1_RoundingIsHalfUpAwayFromZeroToTheCurrencysMinorUnit: expected values
// computed by hand. Half-up rounds a tie away from zero for credits too, so
// round(−x) = −round(x).
func TestM1_RoundingIsHalfUpAwayFromZeroToTheCurrencysMinorUnit(t *testing.T) {
	for _, tc := range []struct{ amount, currency, want string }{
		{"0.125", "USD", "0.13"},
		{"0.124999", "USD", "0.12"},
		{"-0.125", "USD", "-0.13"},
		{"-0.124", "USD", "-0.12"},
		{"0.1", "USD", "0.10"},
		{"1234.5650", "EUR", "1234.57"},
		{"0.005", "EUR", "0.01"},
		{"0.0049999999", "EUR", "0.00"},
		{"2.5", "JPY", "3"},
		{"2.4999", "JPY", "2"},
		{"-2.5", "JPY", "-3"},
		{"1499.5", "KRW", "1500"},
		{"12", "GBP", "12.00"},
		{"99999999999999999999.995", "USD", "100000000000000000000.00"},
	} {
		a, _ := ParseDecimal(tc.amount)
		got, err := RoundHalfUp(a, tc.currency)
		if err != nil || got.String() != tc.want {
			t.Errorf("RoundHalfUp(%s, %s) = %v, %v; want %s", tc.amount, tc.currency, got, err, tc.want)
		}
	}
	if _, err := RoundHalfUp(mustDec("1"), "XYZ"); err == nil {
		t.Error("an unknown currency must fail")
	}
}

func mustDec(s string) *apd.Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestM1_ConversionIsExactAndHappensBeforeRounding: hand-computed products, and
// the reason for the order: 10.005 USD at 0.9 EUR is 9.0045 → 9.00 EUR, while
// rounding first would give 10.01 × 0.9 = 9.009 → 9.01.
func TestM1_ConversionIsExactAndHappensBeforeRounding(t *testing.T) {
	for _, tc := range []struct{ amount, rate, want, currency, rounded string }{
		{"10.005", "0.9", "9.0045", "EUR", "9.00"},
		{"123.456789", "147.25", "18179.01218025", "JPY", "18179"}, // 18148.147983 + 30.86419725
		{"0.0000001", "0.9215", "0.00000009215", "EUR", "0.00"},
		{"-3.3333", "1.5", "-4.99995", "GBP", "-5.00"},
		{"100", "83.1234", "8312.3400", "INR", "8312.34"},
	} {
		got, err := ConvertFX(mustDec(tc.amount), mustDec(tc.rate))
		if err != nil || got.Cmp(dec(t, tc.want)) != 0 {
			t.Errorf("ConvertFX(%s, %s) = %v, %v; want %s", tc.amount, tc.rate, got, err, tc.want)
			continue
		}
		if r, _ := RoundHalfUp(got, tc.currency); r.String() != tc.rounded {
			t.Errorf("rounded %s %s = %s; want %s", got, tc.currency, r, tc.rounded)
		}
	}
	first, _ := RoundHalfUp(mustDec("10.005"), "USD")
	wrong, _ := ConvertFX(first, mustDec("0.9"))
	if r, _ := RoundHalfUp(wrong, "EUR"); r.String() != "9.01" {
		t.Errorf("rounding first gives %s", r)
	}
}
