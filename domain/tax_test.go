package domain

import (
	"testing"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const (
	emea = "Amazon Web Services EMEA SARL"
	awsJ = "Amazon Web Services Japan G.K."
	awsU = "Amazon Web Services, Inc."
)

func taxSettings(acct, name, country string) *billingv1.SetTaxSettings {
	return &billingv1.SetTaxSettings{AccountId: acct, LegalName: name, Country: country}
}

func newUnit(id, receiver string, disabled bool, accounts ...string) *billingv1.CreateInvoiceUnit {
	return &billingv1.CreateInvoiceUnit{InvoiceUnitId: id, OwnerAccountId: payerA, Name: "Unit " + id,
		ReceiverAccountId: receiver, AccountIds: accounts, TaxInheritanceDisabled: disabled}
}

// mod clones a command and changes it, for tables of invalid variants.
func mod[T proto.Message](c T, f func(T)) T {
	x := proto.Clone(c).(T)
	f(x)
	return x
}

func TestX1_TaxSettingsAreSetForAnAccountOfARegisteredOrganization(t *testing.T) {
	cmd := &billingv1.SetTaxSettings{AccountId: acctB3, LegalName: "Partner Co GmbH", Country: "DE", Region: "BY", TaxRegistrationNumber: "DE123456789"}
	pricingWorld(t).When(cmd).Then(Change{Stream: TaxSettingsStream(acctB3), Events: evs(&billingv1.TaxSettingsSet{
		AccountId: acctB3, LegalName: "Partner Co GmbH", Country: "DE", Region: "BY", TaxRegistrationNumber: "DE123456789", ManagementAccountId: sourceB,
	})})

	for name, tc := range map[string]struct {
		cmd       *billingv1.SetTaxSettings
		code      Code
		fragments []string
	}{
		"account not 12 digits": {mod(cmd, func(c *billingv1.SetTaxSettings) { c.AccountId = "123" }), CodeInvalidArgument, []string{"account_id", "12-digit"}},
		"legal name blank":      {mod(cmd, func(c *billingv1.SetTaxSettings) { c.LegalName = "  " }), CodeInvalidArgument, []string{"legal_name is required"}},
		"legal name too long":   {mod(cmd, func(c *billingv1.SetTaxSettings) { c.LegalName = string(make([]byte, 257)) }), CodeInvalidArgument, []string{"legal_name", "256"}},
		"country missing":       {mod(cmd, func(c *billingv1.SetTaxSettings) { c.Country = "" }), CodeInvalidArgument, []string{"country is required"}},
		"country lower case":    {mod(cmd, func(c *billingv1.SetTaxSettings) { c.Country = "de" }), CodeInvalidArgument, []string{"country", "alpha-2"}},
		"country alpha-3":       {mod(cmd, func(c *billingv1.SetTaxSettings) { c.Country = "DEU" }), CodeInvalidArgument, []string{"country", "alpha-2"}},
		"country unassigned":    {mod(cmd, func(c *billingv1.SetTaxSettings) { c.Country = "XX" }), CodeInvalidArgument, []string{"country", "not an assigned"}},
		"region too long":       {mod(cmd, func(c *billingv1.SetTaxSettings) { c.Region = string(make([]rune, 65)) }), CodeInvalidArgument, []string{"region", "64"}},
		"registration number too long": {mod(cmd, func(c *billingv1.SetTaxSettings) {
			c.TaxRegistrationNumber = "DE12345678901234567890123456789012345678901234567890123456789012345"
		}), CodeInvalidArgument, []string{"tax_registration_number", "64"}},
		"account of no organization": {mod(cmd, func(c *billingv1.SetTaxSettings) { c.AccountId = orgD }), CodeNotFound, []string{orgD, "no registered organization"}},
	} {
		t.Run(name, func(t *testing.T) {
			pricingWorld(t).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
}

func TestX1_ShippedDefaultSellersOfRecordApplyThroughDecide(t *testing.T) {
	defaults := DefaultSellersOfRecord()
	s := given(t).Do(asMessages(defaults)...)
	want := map[string][2]string{
		"US": {awsU, "USD"}, "DE": {emea, "EUR"}, "FR": {emea, "EUR"}, "GR": {emea, "EUR"}, "GB": {emea, "GBP"},
		"JP": {awsJ, "JPY"}, "IN": {"Amazon Web Services India Private Limited", "INR"},
		"BR": {"Amazon AWS Serviços Brasil Ltda.", "BRL"}, "CA": {"Amazon Web Services Canada, Inc.", "CAD"},
		"AU": {"Amazon Web Services Australia Pty Ltd", "AUD"}, "KR": {"Amazon Web Services Korea LLC", "KRW"},
		"ZA": {"Amazon Web Services South Africa (Pty) Ltd", "ZAR"},
	}
	for country, w := range want {
		sr, _ := SellerOfRecordFor(s.w, country)
		if sr.Seller() != w[0] || sr.DefaultCurrency() != w[1] {
			t.Errorf("%s: got %q %s, want %q %s", country, sr.Seller(), sr.DefaultCurrency(), w[0], w[1])
		}
	}
	for _, c := range EUMemberStates {
		if sr, _ := SellerOfRecordFor(s.w, c); sr.Seller() != emea || sr.DefaultCurrency() != "EUR" {
			t.Errorf("EU member %s: got %q %s", c, sr.Seller(), sr.DefaultCurrency())
		}
	}
	if n := len(EUMemberStates); n != 27 {
		t.Errorf("EU has 27 member states, list has %d", n)
	}
	if got := FoldSellerEntity(s.w[SellerEntityStream(SellerSlug(emea))]).Countries(); len(got) != 28 {
		t.Errorf("EMEA SARL serves the 27 EU states and GB, got %v", got)
	}
	for stream := range s.w {
		if !streamTokensOK(stream) {
			t.Errorf("stream %q has a token outside [A-Za-z0-9_-]", stream)
		}
	}
	// They are ordinary configuration: a later command changes one.
	s.When(&billingv1.SetSellerOfRecord{Country: "GB", Seller: "Amazon Web Services UK Ltd", DefaultCurrency: "GBP"}).ThenOK()
	if sr, _ := SellerOfRecordFor(s.w, "GB"); sr.Seller() != "Amazon Web Services UK Ltd" {
		t.Errorf("GB seller not changed: %q", sr.Seller())
	}
}

func asMessages[T proto.Message](cmds []T) []proto.Message {
	out := make([]proto.Message, len(cmds))
	for i, c := range cmds {
		out[i] = c
	}
	return out
}

func streamTokensOK(stream string) bool {
	for _, tok := range splitDots(stream) {
		if !ValidID(tok) {
			return false
		}
	}
	return true
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestX1_ChangingACountrysSellerReleasesItFromThePreviousSeller(t *testing.T) {
	s := given(t).Do(&billingv1.SetSellerOfRecord{Country: "GB", Seller: emea, DefaultCurrency: "GBP"})
	emeaSlug, ukSlug := SellerSlug(emea), SellerSlug("AWS UK Ltd")
	if emeaSlug != "amazon-web-services-emea-sarl" || ukSlug != "aws-uk-ltd" {
		t.Fatalf("slugs %q %q", emeaSlug, ukSlug)
	}
	s.When(&billingv1.SetSellerOfRecord{Country: "GB", Seller: "AWS UK Ltd", DefaultCurrency: "GBP"}).Then(
		Change{Stream: "billing.tax.seller.GB", Events: evs(&billingv1.SellerOfRecordSet{Country: "GB", Seller: "AWS UK Ltd", SellerSlug: ukSlug, DefaultCurrency: "GBP", PreviousSeller: emea})},
		Change{Stream: "billing.tax.sellerentity.aws-uk-ltd", Events: evs(&billingv1.SellerEntityCountryAssigned{Seller: "AWS UK Ltd", SellerSlug: ukSlug, Country: "GB", DefaultCurrency: "GBP"})},
		Change{Stream: "billing.tax.sellerentity.amazon-web-services-emea-sarl", Events: evs(&billingv1.SellerEntityCountryReleased{Seller: emea, SellerSlug: emeaSlug, Country: "GB"})},
	)
	if c := FoldSellerEntity(s.w[SellerEntityStream(emeaSlug)]).Countries(); len(c) != 0 {
		t.Errorf("EMEA still serves %v", c)
	}
}

func TestX1_SellerOfRecordInvariants(t *testing.T) {
	ok := &billingv1.SetSellerOfRecord{Country: "DE", Seller: emea, DefaultCurrency: "EUR"}
	for name, tc := range map[string]struct {
		cmd       *billingv1.SetSellerOfRecord
		code      Code
		fragments []string
	}{
		"country unknown":  {mod(ok, func(c *billingv1.SetSellerOfRecord) { c.Country = "EU" }), CodeInvalidArgument, []string{"country", "EU"}},
		"seller missing":   {mod(ok, func(c *billingv1.SetSellerOfRecord) { c.Seller = "" }), CodeInvalidArgument, []string{"seller is required"}},
		"seller too long":  {mod(ok, func(c *billingv1.SetSellerOfRecord) { c.Seller = string(make([]rune, 129)) }), CodeInvalidArgument, []string{"seller", "128"}},
		"currency unknown": {mod(ok, func(c *billingv1.SetSellerOfRecord) { c.DefaultCurrency = "XYZ" }), CodeInvalidArgument, []string{"default_currency", "XYZ"}},
		"currency missing": {mod(ok, func(c *billingv1.SetSellerOfRecord) { c.DefaultCurrency = "" }), CodeInvalidArgument, []string{"default_currency is required"}},
	} {
		t.Run(name, func(t *testing.T) {
			given(t).Do(ok).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
	// Two names with one stream token are rejected; a distinct one is fine.
	given(t).Do(ok).When(&billingv1.SetSellerOfRecord{Country: "AT", Seller: "Amazon Web Services EMEA S.A.R.L.", DefaultCurrency: "EUR"}).ThenOK()
	given(t).Do(ok).When(&billingv1.SetSellerOfRecord{Country: "AT", Seller: "amazon web services emea sarl", DefaultCurrency: "EUR"}).
		ThenError(CodeAlreadyExists, "amazon-web-services-emea-sarl", emea)
}

func TestX4_TaxRatesAreEventsPerJurisdictionFromADayOn(t *testing.T) {
	s := given(t)
	s.When(&billingv1.SetTaxRate{Jurisdiction: "DE", RatePercentage: "19.00", EffectiveFrom: "2026-01-01"}).Then(
		Change{Stream: "billing.tax.rate.DE", Events: evs(&billingv1.TaxRateSet{Jurisdiction: "DE", RatePercentage: "19", EffectiveFrom: "2026-01-01"})})
	s.Do(&billingv1.SetTaxRate{Jurisdiction: "DE", RatePercentage: "16", EffectiveFrom: "2026-07-01"},
		&billingv1.SetTaxRate{Jurisdiction: "DE", RatePercentage: "17", EffectiveFrom: "2026-07-01"}, // replaces the same day
		&billingv1.SetTaxRate{Jurisdiction: "US-WA", RatePercentage: "8.875", EffectiveFrom: "2026-01-01"},
		&billingv1.SetTaxRate{Jurisdiction: "IE", RatePercentage: "0", EffectiveFrom: "2026-01-01", ReverseCharge: true})
	for _, tc := range []struct {
		j, day, want string
		found        bool
	}{
		{"DE", "2025-12-31T23:59:59Z", "", false},
		{"DE", "2026-01-01T00:00:00Z", "19", true},
		{"DE", "2026-06-30T23:59:59Z", "19", true},
		{"DE", "2026-07-01T00:00:00Z", "17", true},
		{"US-WA", "2026-09-30T00:00:00Z", "8.875", true},
		{"FR", "2026-09-30T00:00:00Z", "", false},
	} {
		r, ok, err := TaxRateOn(s.w, tc.j, at(tc.day))
		if err != nil || ok != tc.found || r.Percentage() != tc.want {
			t.Errorf("%s on %s: got %q %v %v, want %q %v", tc.j, tc.day, r.Percentage(), ok, err, tc.want, tc.found)
		}
	}
	if r, _, _ := TaxRateOn(s.w, "IE", at("2026-09-30T00:00:00Z")); !r.ReverseCharge() {
		t.Error("IE reverse charge lost")
	}

	ok := &billingv1.SetTaxRate{Jurisdiction: "DE", RatePercentage: "19", EffectiveFrom: "2026-01-01"}
	for name, tc := range map[string]struct {
		cmd       *billingv1.SetTaxRate
		fragments []string
	}{
		"jurisdiction missing":         {mod(ok, func(c *billingv1.SetTaxRate) { c.Jurisdiction = "" }), []string{"jurisdiction is required"}},
		"jurisdiction shape":           {mod(ok, func(c *billingv1.SetTaxRate) { c.Jurisdiction = "US-WASH" }), []string{"jurisdiction", "US-WASH"}},
		"jurisdiction country unknown": {mod(ok, func(c *billingv1.SetTaxRate) { c.Jurisdiction = "XX-1" }), []string{"jurisdiction", "XX"}},
		"rate missing":                 {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "" }), []string{"rate_percentage is required"}},
		"rate not a decimal":           {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "19%" }), []string{"rate_percentage", "not a decimal"}},
		"rate negative":                {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "-1" }), []string{"rate_percentage", "0 to 100"}},
		"rate above 100":               {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "100.01" }), []string{"rate_percentage", "0 to 100"}},
		"rate with 5 decimals":         {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "8.87501" }), []string{"rate_percentage", "4 decimals"}},
		"rate infinite":                {mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "Infinity" }), []string{"rate_percentage"}},
		"effective_from missing":       {mod(ok, func(c *billingv1.SetTaxRate) { c.EffectiveFrom = "" }), []string{"effective_from is required"}},
		"effective_from not a day":     {mod(ok, func(c *billingv1.SetTaxRate) { c.EffectiveFrom = "2026-02-30" }), []string{"effective_from", "2026-02-30"}},
		"effective_from month only":    {mod(ok, func(c *billingv1.SetTaxRate) { c.EffectiveFrom = "2026-02" }), []string{"effective_from", "YYYY-MM-DD"}},
	} {
		t.Run(name, func(t *testing.T) { given(t).When(tc.cmd).ThenError(CodeInvalidArgument, tc.fragments...) })
	}
	given(t).When(mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "100" })).ThenOK()
	given(t).When(mod(ok, func(c *billingv1.SetTaxRate) { c.RatePercentage = "0.0001" })).ThenOK()
}

func TestX3_AnInvoiceUnitIsCreatedWithItsIdReservedAndEachAccountClaimed(t *testing.T) {
	pricingWorld(t).When(newUnit("iu-1", acctB3, true, acctB3, acctB4)).Then(
		Change{Stream: "billing.invoiceunit.111111111111.iu-1", Events: evs(&billingv1.InvoiceUnitCreated{Unit: &billingv1.InvoiceUnit{
			InvoiceUnitId: "iu-1", OwnerAccountId: payerA, Name: "Unit iu-1", ReceiverAccountId: acctB3, AccountIds: []string{acctB3, acctB4}, TaxInheritanceDisabled: true,
		}})},
		Change{Stream: "billing.invoiceunit.index.iu-1", Events: evs(&billingv1.InvoiceUnitIdReserved{InvoiceUnitId: "iu-1", OwnerAccountId: payerA})},
		Change{Stream: AccountStream(acctB3), Events: evs(&billingv1.AccountInvoiceUnitAssigned{AccountId: acctB3, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
		Change{Stream: AccountStream(acctB4), Events: evs(&billingv1.AccountInvoiceUnitAssigned{AccountId: acctB4, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
	)
}

func TestX3_InvoiceUnitInvariants(t *testing.T) {
	ok := newUnit("iu-1", acctB3, false, acctB3)
	for name, tc := range map[string]struct {
		cmd       *billingv1.CreateInvoiceUnit
		code      Code
		fragments []string
	}{
		"id missing":             {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.InvoiceUnitId = "" }), CodeInvalidArgument, []string{"invoice_unit_id is required"}},
		"id not a token":         {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.InvoiceUnitId = "iu 1" }), CodeInvalidArgument, []string{"invoice_unit_id", "letters, digits"}},
		"name missing":           {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.Name = "" }), CodeInvalidArgument, []string{"name is required"}},
		"name too long":          {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.Name = string(make([]rune, 129)) }), CodeInvalidArgument, []string{"name", "128"}},
		"receiver missing":       {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.ReceiverAccountId = "" }), CodeInvalidArgument, []string{"receiver_account_id is required"}},
		"no accounts":            {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.AccountIds = nil }), CodeInvalidArgument, []string{"account_ids is required"}},
		"account listed twice":   {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.AccountIds = []string{acctB3, acctB3} }), CodeInvalidArgument, []string{"account_ids lists " + acctB3 + " twice"}},
		"account not 12 digits":  {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.AccountIds = []string{"x"} }), CodeInvalidArgument, []string{"account_ids", "12-digit"}},
		"owner unregistered":     {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.OwnerAccountId = orgD }), CodeNotFound, []string{"owner organization " + orgD}},
		"owner a member account": {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.OwnerAccountId = acctA2 }), CodeInvalidArgument, []string{acctA2, "not a management account"}},
		"receiver elsewhere": {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.ReceiverAccountId = acctB4 }), CodeInvalidArgument,
			[]string{"receiver_account_id " + acctB4, "one of account_ids or an account of the owner's organization " + payerA}},
		"receiver of nobody": {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.ReceiverAccountId = orgD }), CodeNotFound, []string{"receiver_account_id " + orgD}},
		"account of nobody":  {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.AccountIds = []string{acctB3, orgD} }), CodeNotFound, []string{orgD, "no registered organization"}},
		"account of an organization the owner does not pay for": {mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.AccountIds = []string{acctB3, acctC2} }),
			CodeFailedPrecondition, []string{acctC2, orgC, "neither is nor pays for"}},
		"too many accounts": {mod(ok, func(c *billingv1.CreateInvoiceUnit) {
			c.AccountIds = make([]string, maxAccountsPerCommand+1)
		}), CodeInvalidArgument, []string{"at most 990"}},
	} {
		t.Run(name, func(t *testing.T) { pricingWorld(t).When(tc.cmd).ThenError(tc.code, tc.fragments...) })
	}
	// The receiver may be an account of the owner's own organization.
	pricingWorld(t).When(mod(ok, func(c *billingv1.CreateInvoiceUnit) { c.ReceiverAccountId = acctA2 })).ThenOK()
	// Ids are unique for ever, even after deletion.
	pricingWorld(t).Do(ok, &billingv1.DeleteInvoiceUnit{InvoiceUnitId: "iu-1"}).
		When(newUnit("iu-1", acctB4, false, acctB4)).ThenError(CodeAlreadyExists, "invoice_unit_id iu-1", "never reused")
}

func TestX3_AnAccountIsInAtMostOneInvoiceUnitOfAnOwner(t *testing.T) {
	s := pricingWorld(t).Do(newUnit("iu-1", acctB3, false, acctB3))
	s.When(newUnit("iu-2", acctB3, false, acctB4, acctB3)).ThenError(CodeFailedPrecondition, acctB3, "invoice unit iu-1", "at most one invoice unit")
	// Racing commands both write the account stream, so OCC lets exactly one win.
	s = pricingWorld(t)
	first, err1 := Decide(s.w, newUnit("iu-1", acctB3, false, acctB3), s.env())
	second, err2 := Decide(s.w, newUnit("iu-2", acctB4, false, acctB4, acctB3), s.env())
	if err1 != nil || err2 != nil {
		t.Fatalf("both decide alone: %v, %v", err1, err2)
	}
	for _, o := range []Outcome{first, second} {
		found := false
		for _, ch := range o.Changes {
			found = found || ch.Stream == AccountStream(acctB3)
		}
		if !found {
			t.Fatal("both outcomes must write the account stream so that OCC picks one")
		}
	}
	// The source organization may run its own units: the check is per owner.
	pricingWorld(t).Do(newUnit("iu-1", acctB3, false, acctB3)).
		When(&billingv1.CreateInvoiceUnit{InvoiceUnitId: "iu-b", OwnerAccountId: sourceB, Name: "own", ReceiverAccountId: acctB3, AccountIds: []string{acctB3}}).ThenOK()
}

func TestX3_UpdateReplacesTheUnitAndMovesAccountsDeleteReleasesThem(t *testing.T) {
	s := pricingWorld(t).Do(newUnit("iu-1", acctB3, false, acctB3))
	s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-1"}).ThenError(CodeInvalidArgument, "nothing to update")
	s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-9", Name: "x"}).ThenError(CodeNotFound, "invoice unit iu-9")
	s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-1", ReceiverAccountId: acctB4}).ThenError(CodeInvalidArgument, "receiver_account_id "+acctB4)
	disabled := true
	s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-1", ReceiverAccountId: acctB4, AccountIds: []string{acctB4, sourceB}, TaxInheritanceDisabled: &disabled}).Then(
		Change{Stream: "billing.invoiceunit.111111111111.iu-1", Events: evs(&billingv1.InvoiceUnitUpdated{
			Unit: &billingv1.InvoiceUnit{InvoiceUnitId: "iu-1", OwnerAccountId: payerA, Name: "Unit iu-1", ReceiverAccountId: acctB4,
				AccountIds: []string{acctB4, sourceB}, TaxInheritanceDisabled: true},
			AddedAccountIds: []string{acctB4, sourceB}, RemovedAccountIds: []string{acctB3},
		})},
		Change{Stream: AccountStream(acctB4), Events: evs(&billingv1.AccountInvoiceUnitAssigned{AccountId: acctB4, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
		Change{Stream: AccountStream(sourceB), Events: evs(&billingv1.AccountInvoiceUnitAssigned{AccountId: sourceB, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
		Change{Stream: AccountStream(acctB3), Events: evs(&billingv1.AccountInvoiceUnitReleased{AccountId: acctB3, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
	)
	// The released account is free again; a name-only update keeps everything else.
	s.Do(newUnit("iu-2", acctB3, false, acctB3), &billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-1", Name: "Renamed"})
	if u, _ := InvoiceUnitOf(s.w, payerA, acctB4); u.Name() != "Renamed" || !u.TaxInheritanceDisabled() || u.ReceiverAccountID() != acctB4 {
		t.Fatalf("unit after rename: %+v", u)
	}
	s.When(&billingv1.DeleteInvoiceUnit{InvoiceUnitId: "iu-1"}).Then(
		Change{Stream: "billing.invoiceunit.111111111111.iu-1", Events: evs(&billingv1.InvoiceUnitDeleted{InvoiceUnitId: "iu-1", OwnerAccountId: payerA, AccountIds: []string{acctB4, sourceB}})},
		Change{Stream: AccountStream(acctB4), Events: evs(&billingv1.AccountInvoiceUnitReleased{AccountId: acctB4, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
		Change{Stream: AccountStream(sourceB), Events: evs(&billingv1.AccountInvoiceUnitReleased{AccountId: sourceB, OwnerAccountId: payerA, InvoiceUnitId: "iu-1"})},
	)
	s.When(&billingv1.DeleteInvoiceUnit{InvoiceUnitId: "iu-1"}).ThenError(CodeNotFound, "iu-1", "deleted")
	s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-2", AccountIds: []string{acctB3, acctB4}}).ThenOK()
}

func TestX2_SourceAccountsInheritThePayersTaxSettingsWhileATransferIsInForce(t *testing.T) {
	s := pricingWorld(t) // A pays for B from 2026-09
	sep, aug := mustMonth("2026-09"), mustMonth("2026-08")
	s.When(taxSettings(acctB3, "B", "DE")).ThenOK()
	if _, _, err := EffectiveTaxSettings(s.w, acctB3, sep); CodeOf(err) != CodeFailedPrecondition {
		t.Fatalf("payer without settings: %v", err)
	}
	s.Do(taxSettings(payerA, "Payer A Inc.", "US"))
	check := func(acct string, m Month, legal, from string) {
		t.Helper()
		got, inh, err := EffectiveTaxSettings(s.w, acct, m)
		if err != nil || got.LegalName() != legal || inh != from {
			t.Errorf("%s in %s: got %q from %q (%v), want %q from %q", acct, m, got.LegalName(), inh, err, legal, from)
		}
	}
	check(acctB3, aug, "B", "")                // before the transfer: its own
	check(acctB3, sep, "Payer A Inc.", payerA) // under the transfer: the payer's
	check(acctA2, sep, "Payer A Inc.", payerA) // a member without settings: its management account's
	check(payerA, sep, "Payer A Inc.", "")
	if _, _, err := EffectiveTaxSettings(s.w, acctB4, aug); CodeOf(err) != CodeFailedPrecondition {
		t.Errorf("no settings anywhere: %v", err)
	}
	// A unit with inheritance enabled changes nothing; disabled keeps the own settings.
	s.Do(newUnit("iu-1", acctB3, false, acctB3))
	check(acctB3, sep, "Payer A Inc.", payerA)
	on := true
	s.Do(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: "iu-1", TaxInheritanceDisabled: &on})
	check(acctB3, sep, "B", "")
	// After a withdrawal the transfer ends with its month; the next month is the source's own again.
	s.Do(withdraw("rt-1", "2026-09", payerA), taxSettings(sourceB, "B AG", "DE"))
	check(acctB4, sep, "Payer A Inc.", payerA)
	check(acctB4, mustMonth("2026-10"), "B AG", sourceB)
}

// TestX3_TheFiveStepSetupGivesTwoOrganizationsTheirOwnTaxTreatment walks the
// design's setup for payer A (US) paying for B (Germany) and C (Japan), which
// both need their own tax treatment: (1) create a member account, (2) give it
// tax settings, (3) create the invoice unit, (4) map it to member accounts,
// (5) repeat for the next organization.
func TestX3_TheFiveStepSetupGivesTwoOrganizationsTheirOwnTaxTreatment(t *testing.T) {
	const (
		acctB5 = "222222222225"
		acctC6 = "333333333336"
	)
	s := pricingWorld(t).Do(invite("rt-2", payerA, orgC, "2026-09"), accept("rt-2"),
		taxSettings(payerA, "Payer A Inc.", "US"))
	s.Do(asMessages(DefaultSellersOfRecord())...)
	steps := []struct {
		org, member, unit, legal, country, trn string
		others                                 []string
	}{
		{sourceB, acctB5, "iu-de", "Partner Co GmbH", "DE", "DE123456789", []string{sourceB, acctB3}},
		{orgC, acctC6, "iu-jp", "Partner KK", "JP", "T1234567890123", []string{orgC, acctC2}},
	}
	for _, st := range steps {
		// 1. Create the member account.
		s.When(&billingv1.AddAccount{ManagementAccountId: st.org, AccountId: st.member}).ThenOK()
		// 2. Give it tax settings.
		s.When(&billingv1.SetTaxSettings{AccountId: st.member, LegalName: st.legal, Country: st.country, TaxRegistrationNumber: st.trn}).ThenOK()
		// 3. Create the invoice unit, received by that account, inheritance disabled.
		s.When(&billingv1.CreateInvoiceUnit{InvoiceUnitId: st.unit, OwnerAccountId: payerA, Name: st.legal,
			ReceiverAccountId: st.member, AccountIds: []string{st.member}, TaxInheritanceDisabled: true}).ThenOK()
		// 4. Map it to the organization's member accounts.
		s.When(&billingv1.UpdateInvoiceUnit{InvoiceUnitId: st.unit, AccountIds: append([]string{st.member}, st.others...)}).ThenOK()
		// The unit's other accounts take the receiver's treatment through their own settings.
		for _, a := range st.others {
			s.Do(&billingv1.SetTaxSettings{AccountId: a, LegalName: st.legal, Country: st.country, TaxRegistrationNumber: st.trn})
		}
		// 5. Repeat for the next organization (the loop).
	}
	sep := mustMonth("2026-09")
	for _, tc := range []struct{ acct, unit, legal, country, seller string }{
		{acctB5, "iu-de", "Partner Co GmbH", "DE", emea},
		{acctB3, "iu-de", "Partner Co GmbH", "DE", emea},
		{sourceB, "iu-de", "Partner Co GmbH", "DE", emea},
		{acctC6, "iu-jp", "Partner KK", "JP", awsJ},
		{acctC2, "iu-jp", "Partner KK", "JP", awsJ},
		{acctB4, "", "Payer A Inc.", "US", awsU}, // not in a unit: inherits the payer's
	} {
		ts, _, err := EffectiveTaxSettings(s.w, tc.acct, sep)
		if err != nil {
			t.Fatalf("%s: %v", tc.acct, err)
		}
		u, _ := InvoiceUnitOf(s.w, payerA, tc.acct)
		sr, _ := SellerOfRecordFor(s.w, ts.Country())
		if ts.LegalName() != tc.legal || ts.Country() != tc.country || u.ID() != tc.unit || sr.Seller() != tc.seller {
			t.Errorf("%s: got %q %s unit %q seller %q, want %q %s unit %q seller %q",
				tc.acct, ts.LegalName(), ts.Country(), u.ID(), sr.Seller(), tc.legal, tc.country, tc.unit, tc.seller)
		}
	}
	if u, _ := InvoiceUnitOf(s.w, payerA, acctC2); u.ReceiverAccountID() != acctC6 {
		t.Errorf("iu-jp receiver %s", u.ReceiverAccountID())
	}
}
