package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Tax configuration (DESIGN §3 X1–X4): tax settings per account, sellers of
// record per country, tax rates per jurisdiction and invoice units. Each is a
// stream whose state is a value folded from its events; a month close (X5) reads
// them through View.Events and the pure lookups below.

// Streams of the tax configuration (DESIGN §2 style; every token is [A-Za-z0-9_-]).

// TaxSettingsStream is the stream of an account's tax settings.
func TaxSettingsStream(accountID string) string { return "billing.tax.account." + accountID }

// SellerOfRecordStream is the stream of a country's seller of record.
func SellerOfRecordStream(country string) string { return "billing.tax.seller." + country }

// SellerEntityStream is a seller entity's registry entry, by slug (SellerSlug).
func SellerEntityStream(slug string) string { return "billing.tax.sellerentity." + slug }

// TaxRateStream is the stream of a jurisdiction's tax rates.
func TaxRateStream(jurisdiction string) string { return "billing.tax.rate." + jurisdiction }

// InvoiceUnitStream is the stream of an owner's invoice unit.
func InvoiceUnitStream(owner, id string) string { return "billing.invoiceunit." + owner + "." + id }

// InvoiceUnitIndexStream maps an invoice unit id to its owner (InvoiceUnitIdReserved,
// written with expected version 0 with the creation). "index" never clashes with
// an owner, which is always 12 digits.
func InvoiceUnitIndexStream(id string) string { return "billing.invoiceunit.index." + id }

var (
	dayRe          = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	jurisdictionRe = regexp.MustCompile(`^([A-Z]{2})(-[A-Z0-9]{1,3})?$`)
	slugRunRe      = regexp.MustCompile(`[^a-z0-9]+`)
)

// isoCountries is ISO 3166-1 alpha-2 (officially assigned codes).
var isoCountries = func() map[string]bool {
	const list = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ " +
		"BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
		"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ " +
		"DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
		"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY " +
		"HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
		"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY " +
		"MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
		"NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA " +
		"RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ " +
		"TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ " +
		"VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"
	m := map[string]bool{}
	for _, c := range strings.Fields(list) {
		m[c] = true
	}
	return m
}()

// EUMemberStates are the 27 member states of the European Union (ISO codes; Greece is GR).
var EUMemberStates = []string{"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
	"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}

// ValidCountry reports whether s is an ISO 3166-1 alpha-2 code.
func ValidCountry(s string) bool { return isoCountries[s] }

// checkCountry rejects anything but a known ISO 3166-1 alpha-2 code, naming the field.
func checkCountry(field, s string) error {
	switch {
	case s == "":
		return Reject(CodeInvalidArgument, "%s is required (ISO 3166-1 alpha-2, e.g. DE)", field)
	case len(s) != 2 || strings.ToUpper(s) != s:
		return Reject(CodeInvalidArgument, "%s %q is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. DE)", field, s)
	case !isoCountries[s]:
		return Reject(CodeInvalidArgument, "%s %q is not an assigned ISO 3166-1 alpha-2 country code", field, s)
	}
	return nil
}

// checkCurrency rejects a currency the ledger does not know (M1), naming the field.
func checkCurrency(field, s string) error {
	if _, ok := Currencies[s]; !ok {
		if s == "" {
			return Reject(CodeInvalidArgument, "%s is required (ISO 4217, e.g. EUR)", field)
		}
		return Reject(CodeInvalidArgument, "%s %q is not a known currency (ISO 4217 codes such as USD, EUR, JPY, GBP, INR)", field, s)
	}
	return nil
}

// ParseDay parses a YYYY-MM-DD day (UTC midnight).
func ParseDay(s string) (time.Time, bool) {
	if !dayRe.MatchString(s) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateOnly, s)
	return t, err == nil
}

// checkDay validates a YYYY-MM-DD day, naming the field.
func checkDay(field, s string) error {
	if _, ok := ParseDay(s); !ok {
		if s == "" {
			return Reject(CodeInvalidArgument, "%s is required (YYYY-MM-DD)", field)
		}
		return Reject(CodeInvalidArgument, "%s %q is not a day of the form YYYY-MM-DD", field, s)
	}
	return nil
}

// checkText validates free text: at most max characters, printable; required
// ones must not be blank.
func checkText(field, s string, required bool, max int) error {
	n := len([]rune(s))
	if required && strings.TrimSpace(s) == "" {
		return Reject(CodeInvalidArgument, "%s is required (1 to %d characters)", field, max)
	}
	if n > max {
		return Reject(CodeInvalidArgument, "%s must be at most %d characters (got %d)", field, max, n)
	}
	if strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return Reject(CodeInvalidArgument, "%s %q contains control characters", field, s)
	}
	return nil
}

// SellerSlug turns a seller entity's name into a stream token: lower case, every
// run of characters other than a-z and 0-9 replaced by '-', trimmed; names
// longer than 64 are cut and suffixed with a hash of the full name.
func SellerSlug(name string) string {
	s := strings.Trim(slugRunRe.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if s == "" || len(s) > 64 {
		sum := sha256.Sum256([]byte(name))
		if len(s) > 55 {
			s = strings.TrimRight(s[:55], "-")
		}
		s = strings.TrimLeft(s+"-"+hex.EncodeToString(sum[:4]), "-")
	}
	return s
}

// ---------------------------------------------------------------------------
// Tax settings (X1).

// TaxSettings is an account's tax settings (stream billing.tax.account.<id>).
type TaxSettings struct {
	account string
	legal   string
	country string
	region  string
	trn     string
	exempt  bool
}

// Exists reports whether the settings were ever set.
func (s TaxSettings) Exists() bool { return s.account != "" }

// AccountID is the account the settings were set for.
func (s TaxSettings) AccountID() string { return s.account }

// LegalName is the name printed on invoices.
func (s TaxSettings) LegalName() string { return s.legal }

// Country is the address country (ISO 3166-1 alpha-2).
func (s TaxSettings) Country() string { return s.country }

// Region is the address region, possibly empty.
func (s TaxSettings) Region() string { return s.region }

// TaxRegistrationNumber is the VAT id or similar, possibly empty.
func (s TaxSettings) TaxRegistrationNumber() string { return s.trn }

// Exempt reports a tax exemption (X4: tax 0 with the reason).
func (s TaxSettings) Exempt() bool { return s.exempt }

// Jurisdiction is where the account is taxed: "CC" or "CC-REGION" when a region is set.
func (s TaxSettings) Jurisdiction() string {
	if s.region != "" && jurisdictionRe.MatchString(s.country+"-"+s.region) {
		return s.country + "-" + s.region
	}
	return s.country
}

// EvolveTaxSettings applies one event.
func EvolveTaxSettings(s TaxSettings, ev *billingv1.Event) TaxSettings {
	if e := ev.GetTaxSettingsSet(); e != nil {
		return TaxSettings{account: e.GetAccountId(), legal: e.GetLegalName(), country: e.GetCountry(),
			region: e.GetRegion(), trn: e.GetTaxRegistrationNumber(), exempt: e.GetExempt()}
	}
	return s
}

// FoldTaxSettings folds a stream's events into settings.
func FoldTaxSettings(events []*billingv1.Event) TaxSettings {
	var s TaxSettings
	for _, ev := range events {
		s = EvolveTaxSettings(s, ev)
	}
	return s
}

// ---------------------------------------------------------------------------
// Sellers of record (X1).

// SellerOfRecord is a country's seller entity and default currency
// (stream billing.tax.seller.<country>).
type SellerOfRecord struct {
	country  string
	seller   string
	currency string
}

// Exists reports whether the country has a seller.
func (s SellerOfRecord) Exists() bool { return s.seller != "" }

// Country is the country served.
func (s SellerOfRecord) Country() string { return s.country }

// Seller is the seller entity's legal name.
func (s SellerOfRecord) Seller() string { return s.seller }

// DefaultCurrency is the invoice currency when the payer has no payment profile (X5).
func (s SellerOfRecord) DefaultCurrency() string { return s.currency }

// FoldSellerOfRecord folds a country stream.
func FoldSellerOfRecord(events []*billingv1.Event) SellerOfRecord {
	var s SellerOfRecord
	for _, ev := range events {
		if e := ev.GetSellerOfRecordSet(); e != nil {
			s = SellerOfRecord{country: e.GetCountry(), seller: e.GetSeller(), currency: e.GetDefaultCurrency()}
		}
	}
	return s
}

// SellerEntity is a seller's registry entry (stream billing.tax.sellerentity.<slug>).
type SellerEntity struct {
	name      string
	countries []string // sorted
}

// Exists reports whether the seller was ever named by SetSellerOfRecord.
func (s SellerEntity) Exists() bool { return s.name != "" }

// Name is the seller's legal name.
func (s SellerEntity) Name() string { return s.name }

// Countries lists the countries the seller serves now (sorted).
func (s SellerEntity) Countries() []string { return slices.Clone(s.countries) }

// FoldSellerEntity folds a seller entity stream.
func FoldSellerEntity(events []*billingv1.Event) SellerEntity {
	var s SellerEntity
	for _, ev := range events {
		switch e := ev.GetPayload().(type) {
		case *billingv1.Event_SellerEntityCountryAssigned:
			s.name = e.SellerEntityCountryAssigned.GetSeller()
			s.countries = withString(s.countries, e.SellerEntityCountryAssigned.GetCountry())
		case *billingv1.Event_SellerEntityCountryReleased:
			s.countries = withoutString(s.countries, e.SellerEntityCountryReleased.GetCountry())
		}
	}
	return s
}

// DefaultSellersOfRecord is the shipped seller-of-record configuration (X1),
// mirroring the provider's entities: loaded as ordinary SetSellerOfRecord
// commands on first start, and changeable afterwards like any other.
func DefaultSellersOfRecord() []*billingv1.SetSellerOfRecord {
	var out []*billingv1.SetSellerOfRecord
	add := func(country, seller, currency string) {
		out = append(out, &billingv1.SetSellerOfRecord{Country: country, Seller: seller, DefaultCurrency: currency})
	}
	add("US", "Amazon Web Services, Inc.", "USD")
	for _, c := range EUMemberStates {
		add(c, "Amazon Web Services EMEA SARL", "EUR")
	}
	add("GB", "Amazon Web Services EMEA SARL", "GBP")
	add("JP", "Amazon Web Services Japan G.K.", "JPY")
	add("IN", "Amazon Web Services India Private Limited", "INR")
	add("BR", "Amazon AWS Serviços Brasil Ltda.", "BRL")
	add("CA", "Amazon Web Services Canada, Inc.", "CAD")
	add("AU", "Amazon Web Services Australia Pty Ltd", "AUD")
	add("KR", "Amazon Web Services Korea LLC", "KRW")
	add("ZA", "Amazon Web Services South Africa (Pty) Ltd", "ZAR")
	return out
}

// ---------------------------------------------------------------------------
// Tax rates (X4).

// TaxRate is one rate of a jurisdiction from a day on.
type TaxRate struct {
	jurisdiction  string
	percentage    string // canonical decimal
	from          string // YYYY-MM-DD
	reverseCharge bool
}

// Jurisdiction the rate applies in.
func (r TaxRate) Jurisdiction() string { return r.jurisdiction }

// Percentage is the rate in percent, a canonical decimal.
func (r TaxRate) Percentage() string { return r.percentage }

// EffectiveFrom is the first day the rate applies (YYYY-MM-DD).
func (r TaxRate) EffectiveFrom() string { return r.from }

// ReverseCharge reports that the customer accounts for the tax (X4: 0 with the reason).
func (r TaxRate) ReverseCharge() bool { return r.reverseCharge }

// TaxRates is a jurisdiction's rate history (stream billing.tax.rate.<jurisdiction>).
type TaxRates struct {
	hist datedHistory[TaxRate]
}

// FoldTaxRates folds a rate stream; a later rate for the same day replaces the earlier one.
func FoldTaxRates(events []*billingv1.Event) TaxRates {
	var out TaxRates
	for _, ev := range events {
		if e := ev.GetTaxRateSet(); e != nil {
			out.hist.put(e.GetEffectiveFrom(), TaxRate{jurisdiction: e.GetJurisdiction(), percentage: e.GetRatePercentage(),
				from: e.GetEffectiveFrom(), reverseCharge: e.GetReverseCharge()})
		}
	}
	return out
}

// At returns the rate in force on day (the latest effective_from on or before it).
func (t TaxRates) At(day time.Time) (TaxRate, bool) { return t.hist.at(day) }

// TaxRateOn reads the rate of a jurisdiction in force on day (X4, X5).
func TaxRateOn(v View, jurisdiction string, day time.Time) (TaxRate, bool, error) {
	if !jurisdictionRe.MatchString(jurisdiction) {
		return TaxRate{}, false, nil
	}
	evs, err := v.Events(TaxRateStream(jurisdiction))
	if err != nil {
		return TaxRate{}, false, err
	}
	r, ok := FoldTaxRates(evs).At(day)
	return r, ok, nil
}

// ---------------------------------------------------------------------------
// Invoice units (X3).

// InvoiceUnit is an invoice unit's state (stream billing.invoiceunit.<owner>.<id>).
type InvoiceUnit struct {
	id                  string
	owner               string
	name                string
	receiver            string
	accounts            []string
	inheritanceDisabled bool
	deleted             bool
}

// Exists reports whether the unit was created.
func (u InvoiceUnit) Exists() bool { return u.id != "" }

// Deleted reports whether the unit was deleted.
func (u InvoiceUnit) Deleted() bool { return u.deleted }

// ID is the unit id.
func (u InvoiceUnit) ID() string { return u.id }

// Owner is the payer that owns the unit.
func (u InvoiceUnit) Owner() string { return u.owner }

// Name is the display name.
func (u InvoiceUnit) Name() string { return u.name }

// ReceiverAccountID receives the unit's invoices.
func (u InvoiceUnit) ReceiverAccountID() string { return u.receiver }

// Accounts lists the member accounts.
func (u InvoiceUnit) Accounts() []string { return slices.Clone(u.accounts) }

// Has reports whether the account is a member.
func (u InvoiceUnit) Has(account string) bool { return slices.Contains(u.accounts, account) }

// TaxInheritanceDisabled reports that members keep their own tax settings (X2).
func (u InvoiceUnit) TaxInheritanceDisabled() bool { return u.inheritanceDisabled }

// Proto renders the unit as carried by its events.
func (u InvoiceUnit) Proto() *billingv1.InvoiceUnit {
	return &billingv1.InvoiceUnit{InvoiceUnitId: u.id, OwnerAccountId: u.owner, Name: u.name,
		ReceiverAccountId: u.receiver, AccountIds: slices.Clone(u.accounts), TaxInheritanceDisabled: u.inheritanceDisabled}
}

func invoiceUnitFromProto(p *billingv1.InvoiceUnit) InvoiceUnit {
	return InvoiceUnit{id: p.GetInvoiceUnitId(), owner: p.GetOwnerAccountId(), name: p.GetName(),
		receiver: p.GetReceiverAccountId(), accounts: slices.Clone(p.GetAccountIds()), inheritanceDisabled: p.GetTaxInheritanceDisabled()}
}

// EvolveInvoiceUnit applies one event.
func EvolveInvoiceUnit(u InvoiceUnit, ev *billingv1.Event) InvoiceUnit {
	switch e := ev.GetPayload().(type) {
	case *billingv1.Event_InvoiceUnitCreated:
		return invoiceUnitFromProto(e.InvoiceUnitCreated.GetUnit())
	case *billingv1.Event_InvoiceUnitUpdated:
		return invoiceUnitFromProto(e.InvoiceUnitUpdated.GetUnit())
	case *billingv1.Event_InvoiceUnitDeleted:
		u.deleted = true
	}
	return u
}

// FoldInvoiceUnit folds a unit stream.
func FoldInvoiceUnit(events []*billingv1.Event) InvoiceUnit {
	var u InvoiceUnit
	for _, ev := range events {
		u = EvolveInvoiceUnit(u, ev)
	}
	return u
}

// AccountInvoiceUnits returns, from an account stream, the unit each owner
// currently has the account in (owner → unit id).
func AccountInvoiceUnits(events []*billingv1.Event) map[string]string {
	out := map[string]string{}
	for _, ev := range events {
		switch e := ev.GetPayload().(type) {
		case *billingv1.Event_AccountInvoiceUnitAssigned:
			out[e.AccountInvoiceUnitAssigned.GetOwnerAccountId()] = e.AccountInvoiceUnitAssigned.GetInvoiceUnitId()
		case *billingv1.Event_AccountInvoiceUnitReleased:
			r := e.AccountInvoiceUnitReleased
			if out[r.GetOwnerAccountId()] == r.GetInvoiceUnitId() {
				delete(out, r.GetOwnerAccountId())
			}
		}
	}
	return out
}

// InvoiceUnitOf returns the unit of owner the account is in (zero when none).
func InvoiceUnitOf(v View, owner, accountID string) (InvoiceUnit, error) {
	evs, err := v.Events(AccountStream(accountID))
	if err != nil {
		return InvoiceUnit{}, err
	}
	id, ok := AccountInvoiceUnits(evs)[owner]
	if !ok {
		return InvoiceUnit{}, nil
	}
	u, err := loadInvoiceUnit(v, owner, id)
	if err != nil || !u.Exists() || u.Deleted() || !u.Has(accountID) {
		return InvoiceUnit{}, err
	}
	return u, nil
}

func loadInvoiceUnit(v View, owner, id string) (InvoiceUnit, error) {
	evs, err := v.Events(InvoiceUnitStream(owner, id))
	return FoldInvoiceUnit(evs), err
}

// ---------------------------------------------------------------------------
// X2: which tax settings apply.

// linkInForceFor reports whether a link makes its payer pay for its source for
// the whole of month m (T6: transfers cover whole months).
func linkInForceFor(l Link, m Month) bool {
	switch l.state {
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED, billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN:
	default:
		return false
	}
	if l.start.After(m.Start()) {
		return false
	}
	return l.end.IsZero() || !l.end.Before(m.End())
}

// PayerInMonth returns the payer of organization org in month m ("" when the
// organization pays its own bill), following a two-level chain to its top (T7:
// the top payer is the bill receiver of every organization under it).
func PayerInMonth(v View, org Org, m Month) (string, error) {
	payer := ""
	cur := org
	for depth := 0; depth < 2; depth++ {
		next := directPayerInMonth(cur, m)
		if next == "" {
			break
		}
		payer = next
		o, err := v.Org(next)
		if err != nil {
			return "", err
		}
		cur = o
	}
	return payer, nil
}

// ownTaxSettings returns the settings of the account, or failing that of its
// organization's management account, with the account whose settings they are.
func ownTaxSettings(v View, accountID, orgID string) (TaxSettings, string, error) {
	for _, id := range []string{accountID, orgID} {
		evs, err := v.Events(TaxSettingsStream(id))
		if err != nil {
			return TaxSettings{}, "", err
		}
		if s := FoldTaxSettings(evs); s.Exists() {
			return s, id, nil
		}
		if id == orgID {
			break
		}
	}
	return TaxSettings{}, "", nil
}

// EffectiveTaxSettings returns the tax settings that apply to an account in
// month m (X1, X2), and inheritedFrom: the account whose settings they are when
// not the account's own ("" for its own).
//
//   - While a transfer is in force for the whole month, the account inherits the
//     settings of its payer (the top payer of a two-level chain, T7), unless it
//     sits in an invoice unit of that payer (or of the direct payer) with tax
//     inheritance disabled.
//   - Otherwise its own settings apply; an account without settings of its own
//     uses its organization's management account's.
//
// No applicable settings is FAILED_PRECONDITION naming the account to configure.
func EffectiveTaxSettings(v View, accountID string, m Month) (TaxSettings, string, error) {
	if err := checkAccountID("account_id", accountID); err != nil {
		return TaxSettings{}, "", err
	}
	orgID, err := v.AccountOwner(accountID)
	if err != nil {
		return TaxSettings{}, "", err
	}
	if orgID == "" {
		return TaxSettings{}, "", Reject(CodeNotFound, "account %s belongs to no registered organization", accountID)
	}
	org, err := v.Org(orgID)
	if err != nil {
		return TaxSettings{}, "", err
	}
	payer, err := PayerInMonth(v, org, m)
	if err != nil {
		return TaxSettings{}, "", err
	}
	if payer != "" {
		disabled := false
		owners := []string{payer}
		if direct := directPayerInMonth(org, m); direct != payer {
			owners = append(owners, direct)
		}
		for _, owner := range owners {
			u, err := InvoiceUnitOf(v, owner, accountID)
			if err != nil {
				return TaxSettings{}, "", err
			}
			if u.Exists() && u.TaxInheritanceDisabled() {
				disabled = true
			}
		}
		if !disabled {
			payerOrg, err := v.Org(payer)
			if err != nil {
				return TaxSettings{}, "", err
			}
			s, from, err := ownTaxSettings(v, payer, payerOrg.ID())
			if err != nil {
				return TaxSettings{}, "", err
			}
			if !s.Exists() {
				return TaxSettings{}, "", Reject(CodeFailedPrecondition, "payer %s has no tax settings; account %s inherits them in %s under a transfer (X2): set them with SetTaxSettings", payer, accountID, m)
			}
			return s, from, nil
		}
	}
	s, from, err := ownTaxSettings(v, accountID, orgID)
	if err != nil {
		return TaxSettings{}, "", err
	}
	if !s.Exists() {
		return TaxSettings{}, "", Reject(CodeFailedPrecondition, "account %s has no tax settings, nor has its management account %s (X1): set them with SetTaxSettings", accountID, orgID)
	}
	if from == accountID {
		from = ""
	}
	return s, from, nil
}

// directPayerInMonth returns the direct payer of org in month m ("" when none).
func directPayerInMonth(org Org, m Month) string {
	for _, id := range slices.Sorted(maps.Keys(org.outbound)) {
		if l := org.outbound[id]; linkInForceFor(l, m) {
			return l.payer
		}
	}
	return ""
}

// taxEvent wraps a tax, invoice or payment payload in an envelope (the issue #5 half of ev).
func taxEvent(p any) (*billingv1.Event, bool) {
	e := &billingv1.Event{}
	switch x := p.(type) {
	case *billingv1.TaxSettingsSet:
		e.Payload = &billingv1.Event_TaxSettingsSet{TaxSettingsSet: x}
	case *billingv1.SellerOfRecordSet:
		e.Payload = &billingv1.Event_SellerOfRecordSet{SellerOfRecordSet: x}
	case *billingv1.SellerEntityCountryAssigned:
		e.Payload = &billingv1.Event_SellerEntityCountryAssigned{SellerEntityCountryAssigned: x}
	case *billingv1.SellerEntityCountryReleased:
		e.Payload = &billingv1.Event_SellerEntityCountryReleased{SellerEntityCountryReleased: x}
	case *billingv1.TaxRateSet:
		e.Payload = &billingv1.Event_TaxRateSet{TaxRateSet: x}
	case *billingv1.InvoiceUnitCreated:
		e.Payload = &billingv1.Event_InvoiceUnitCreated{InvoiceUnitCreated: x}
	case *billingv1.InvoiceUnitUpdated:
		e.Payload = &billingv1.Event_InvoiceUnitUpdated{InvoiceUnitUpdated: x}
	case *billingv1.InvoiceUnitDeleted:
		e.Payload = &billingv1.Event_InvoiceUnitDeleted{InvoiceUnitDeleted: x}
	case *billingv1.InvoiceUnitIdReserved:
		e.Payload = &billingv1.Event_InvoiceUnitIdReserved{InvoiceUnitIdReserved: x}
	case *billingv1.AccountInvoiceUnitAssigned:
		e.Payload = &billingv1.Event_AccountInvoiceUnitAssigned{AccountInvoiceUnitAssigned: x}
	case *billingv1.AccountInvoiceUnitReleased:
		e.Payload = &billingv1.Event_AccountInvoiceUnitReleased{AccountInvoiceUnitReleased: x}
	case *billingv1.PaymentProfileSet:
		e.Payload = &billingv1.Event_PaymentProfileSet{PaymentProfileSet: x}
	case *billingv1.ExchangeRateSet:
		e.Payload = &billingv1.Event_ExchangeRateSet{ExchangeRateSet: x}
	case *billingv1.MonthClosed:
		e.Payload = &billingv1.Event_MonthClosed{MonthClosed: x}
	case *billingv1.InvoiceIssued:
		e.Payload = &billingv1.Event_InvoiceIssued{InvoiceIssued: x}
	case *billingv1.InvoicesIssued:
		e.Payload = &billingv1.Event_InvoicesIssued{InvoicesIssued: x}
	case *billingv1.InvoiceLinesIssued:
		e.Payload = &billingv1.Event_InvoiceLinesIssued{InvoiceLinesIssued: x}
	case *billingv1.UsageMonthClosed:
		e.Payload = &billingv1.Event_UsageMonthClosed{UsageMonthClosed: x}
	case *billingv1.InvoicesPosted:
		e.Payload = &billingv1.Event_InvoicesPosted{InvoicesPosted: x}
	case *billingv1.PaymentRecorded:
		e.Payload = &billingv1.Event_PaymentRecorded{PaymentRecorded: x}
	case *billingv1.PaymentRefunded:
		e.Payload = &billingv1.Event_PaymentRefunded{PaymentRefunded: x}
	case *billingv1.CreditApplied:
		e.Payload = &billingv1.Event_CreditApplied{CreditApplied: x}
	default:
		return nil, false
	}
	return e, true
}
