package domain

import (
	"slices"
	"time"

	"github.com/cockroachdb/apd/v3"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The tax, seller-of-record, invoice-unit, payment-profile and exchange-rate
// decisions (X1–X4, Y1, M1). Cross-aggregate invariants are guarded as in
// pricing (DESIGN §2):
//   - an invoice unit writes AccountInvoiceUnitAssigned/Released to each account
//     stream it adds or removes, so two commands putting one account into two
//     units of one owner always write a common stream (X3);
//   - an invoice unit id is reserved in its index stream in the same append as
//     the creation, so ids are unique for ever;
//   - a seller of record writes the registry entry of the seller it assigns
//     (and of the one it replaces), so two names with one slug conflict.

// maxRatePercentDecimals is the precision of a tax rate (X4): "8.875" fits.
const maxRatePercentDecimals = 4

// decideTax is Decide for the issue #5 configuration commands.
func decideTax(v View, cmd proto.Message, env Env) (Outcome, error) {
	switch c := cmd.(type) {
	case *billingv1.SetTaxSettings:
		return decideSetTaxSettings(v, c)
	case *billingv1.SetSellerOfRecord:
		return decideSetSellerOfRecord(v, c)
	case *billingv1.SetTaxRate:
		return decideSetTaxRate(c)
	case *billingv1.CreateInvoiceUnit:
		return decideCreateInvoiceUnit(v, c, env.Now)
	case *billingv1.UpdateInvoiceUnit:
		return decideUpdateInvoiceUnit(v, c, env.Now)
	case *billingv1.DeleteInvoiceUnit:
		return decideDeleteInvoiceUnit(v, c)
	case *billingv1.SetPaymentProfile:
		return decideSetPaymentProfile(v, c)
	case *billingv1.SetExchangeRate:
		return decideSetExchangeRate(c)
	default:
		return Outcome{}, Reject(CodeInvalidArgument, "unknown command %T", cmd)
	}
}

// ---------------------------------------------------------------------------
// Tax settings (X1).

func decideSetTaxSettings(v View, c *billingv1.SetTaxSettings) (Outcome, error) {
	acct := c.GetAccountId()
	if err := checkAccountID("account_id", acct); err != nil {
		return Outcome{}, err
	}
	if err := checkText("legal_name", c.GetLegalName(), true, 256); err != nil {
		return Outcome{}, err
	}
	if err := checkCountry("country", c.GetCountry()); err != nil {
		return Outcome{}, err
	}
	if err := checkText("region", c.GetRegion(), false, 64); err != nil {
		return Outcome{}, err
	}
	if err := checkText("tax_registration_number", c.GetTaxRegistrationNumber(), false, 64); err != nil {
		return Outcome{}, err
	}
	// An account's organization never changes once claimed, so reading it needs no guard.
	owner, err := v.AccountOwner(acct)
	if err != nil {
		return Outcome{}, err
	}
	if owner == "" {
		return Outcome{}, Reject(CodeNotFound, "account %s belongs to no registered organization; register it first (X1)", acct)
	}
	return Outcome{AggregateID: acct, Changes: []Change{{Stream: TaxSettingsStream(acct), Events: one(ev(&billingv1.TaxSettingsSet{
		AccountId: acct, LegalName: c.GetLegalName(), Country: c.GetCountry(), Region: c.GetRegion(),
		TaxRegistrationNumber: c.GetTaxRegistrationNumber(), Exempt: c.GetExempt(), ManagementAccountId: owner,
	}))}}}, nil
}

// ---------------------------------------------------------------------------
// Sellers of record (X1).

func decideSetSellerOfRecord(v View, c *billingv1.SetSellerOfRecord) (Outcome, error) {
	country, seller, currency := c.GetCountry(), c.GetSeller(), c.GetDefaultCurrency()
	if err := checkCountry("country", country); err != nil {
		return Outcome{}, err
	}
	if err := checkText("seller", seller, true, 128); err != nil {
		return Outcome{}, err
	}
	if err := checkCurrency("default_currency", currency); err != nil {
		return Outcome{}, err
	}
	slug := SellerSlug(seller)
	evs, err := v.Events(SellerEntityStream(slug))
	if err != nil {
		return Outcome{}, err
	}
	if se := FoldSellerEntity(evs); se.Exists() && se.Name() != seller {
		return Outcome{}, Reject(CodeAlreadyExists, "seller %q has the same stream name %q as the existing seller %q; use that name or a distinct one", seller, slug, se.Name())
	}
	cur, err := v.Events(SellerOfRecordStream(country))
	if err != nil {
		return Outcome{}, err
	}
	prev := FoldSellerOfRecord(cur)
	changes := []Change{
		{Stream: SellerOfRecordStream(country), Events: one(ev(&billingv1.SellerOfRecordSet{
			Country: country, Seller: seller, SellerSlug: slug, DefaultCurrency: currency, PreviousSeller: prev.Seller(),
		}))},
		{Stream: SellerEntityStream(slug), Events: one(ev(&billingv1.SellerEntityCountryAssigned{
			Seller: seller, SellerSlug: slug, Country: country, DefaultCurrency: currency,
		}))},
	}
	if prev.Exists() && prev.Seller() != seller {
		ps := SellerSlug(prev.Seller())
		changes = append(changes, Change{Stream: SellerEntityStream(ps), Events: one(ev(&billingv1.SellerEntityCountryReleased{
			Seller: prev.Seller(), SellerSlug: ps, Country: country,
		}))})
	}
	return Outcome{AggregateID: country, Changes: changes}, nil
}

// SellerOfRecordFor reads the seller of record of a country (zero when none).
func SellerOfRecordFor(v View, country string) (SellerOfRecord, error) {
	if !ValidCountry(country) {
		return SellerOfRecord{}, nil
	}
	evs, err := v.Events(SellerOfRecordStream(country))
	return FoldSellerOfRecord(evs), err
}

// ---------------------------------------------------------------------------
// Tax rates (X4).

func decideSetTaxRate(c *billingv1.SetTaxRate) (Outcome, error) {
	j := c.GetJurisdiction()
	if j == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "jurisdiction is required: a country (ISO 3166-1 alpha-2, \"DE\") or a subdivision (\"US-WA\")")
	}
	m := jurisdictionRe.FindStringSubmatch(j)
	if m == nil {
		return Outcome{}, Reject(CodeInvalidArgument, "jurisdiction %q is not a country (\"DE\") or a subdivision (\"US-WA\")", j)
	}
	if err := checkCountry("jurisdiction", m[1]); err != nil {
		return Outcome{}, err
	}
	if c.GetRatePercentage() == "" {
		return Outcome{}, Reject(CodeInvalidArgument, "rate_percentage is required (a decimal from 0 to 100, e.g. \"19\")")
	}
	d, err := ParseDecimal(c.GetRatePercentage())
	if err != nil {
		return Outcome{}, Reject(CodeInvalidArgument, "rate_percentage: %v", err)
	}
	if d.Sign() < 0 || d.Cmp(apd.New(100, 0)) > 0 {
		return Outcome{}, Reject(CodeInvalidArgument, "rate_percentage %s must be from 0 to 100 (X4)", c.GetRatePercentage())
	}
	var r apd.Decimal
	r.Reduce(d)
	if r.Exponent < -maxRatePercentDecimals {
		return Outcome{}, Reject(CodeInvalidArgument, "rate_percentage %s has more than %d decimals", c.GetRatePercentage(), maxRatePercentDecimals)
	}
	if err := checkDay("effective_from", c.GetEffectiveFrom()); err != nil {
		return Outcome{}, err
	}
	return Outcome{AggregateID: j, Changes: []Change{{Stream: TaxRateStream(j), Events: one(ev(&billingv1.TaxRateSet{
		Jurisdiction: j, RatePercentage: CanonicalDecimal(d), EffectiveFrom: c.GetEffectiveFrom(), ReverseCharge: c.GetReverseCharge(),
	}))}}}, nil
}

// ---------------------------------------------------------------------------
// Invoice units (X3).

// liveInvoiceUnit loads a unit by id through its index; it must exist and not be deleted.
func liveInvoiceUnit(v View, id string) (InvoiceUnit, error) {
	if err := checkID("invoice_unit_id", id); err != nil {
		return InvoiceUnit{}, err
	}
	evs, err := v.Events(InvoiceUnitIndexStream(id))
	if err != nil {
		return InvoiceUnit{}, err
	}
	owner := ""
	for _, e := range evs {
		if r := e.GetInvoiceUnitIdReserved(); r != nil {
			owner = r.GetOwnerAccountId()
		}
	}
	if owner == "" {
		return InvoiceUnit{}, Reject(CodeNotFound, "invoice unit %s does not exist", id)
	}
	u, err := loadInvoiceUnit(v, owner, id)
	if err != nil {
		return InvoiceUnit{}, err
	}
	if !u.Exists() || u.Deleted() {
		return InvoiceUnit{}, Reject(CodeNotFound, "invoice unit %s does not exist (deleted)", id)
	}
	return u, nil
}

// checkUnitAccounts validates a unit's account list: 1..maxAccountsPerCommand
// distinct 12-digit ids.
func checkUnitAccounts(ids []string) error {
	if len(ids) == 0 {
		return Reject(CodeInvalidArgument, "account_ids is required: an invoice unit holds at least one account (X3)")
	}
	if len(ids) > maxAccountsPerCommand {
		return Reject(CodeInvalidArgument, "account_ids lists %d accounts; at most %d per command", len(ids), maxAccountsPerCommand)
	}
	return uniqueIDs("account_ids", ids, checkAccountID)
}

// checkReceiver enforces that the receiver is one of the unit's accounts or an
// account of the owner's own organization (X3).
func checkReceiver(v View, owner, receiver string, accounts []string) error {
	if err := checkAccountID("receiver_account_id", receiver); err != nil {
		return err
	}
	if slices.Contains(accounts, receiver) {
		return nil
	}
	org, err := v.AccountOwner(receiver)
	if err != nil {
		return err
	}
	if org == "" {
		return Reject(CodeNotFound, "receiver_account_id %s belongs to no registered organization", receiver)
	}
	if org != owner {
		return Reject(CodeInvalidArgument, "receiver_account_id %s must be one of account_ids or an account of the owner's organization %s (it belongs to %s) (X3)", receiver, owner, org)
	}
	return nil
}

// admitUnitAccounts checks accounts joining unit u and returns the
// AccountInvoiceUnitAssigned change of each. Like a billing group (P4), an
// account must belong to an organization the owner is or pays for under an
// accepted transfer, and it is in at most one unit of the owner; the account
// stream written here guards that against a concurrent command.
func admitUnitAccounts(v View, u InvoiceUnit, accounts []string, now time.Time) ([]Change, error) {
	var changes []Change
	for _, a := range accounts {
		if _, err := paidForAccount(v, u.owner, a, now, "an invoice unit", "X3"); err != nil {
			return nil, err
		}
		other, err := InvoiceUnitOf(v, u.owner, a)
		if err != nil {
			return nil, err
		}
		if other.Exists() && other.id != u.id {
			return nil, Reject(CodeFailedPrecondition, "account %s is already in invoice unit %s of %s; an account is in at most one invoice unit (X3): remove it there first", a, other.id, u.owner)
		}
		changes = append(changes, Change{Stream: AccountStream(a), Events: one(ev(&billingv1.AccountInvoiceUnitAssigned{
			AccountId: a, OwnerAccountId: u.owner, InvoiceUnitId: u.id,
		}))})
	}
	return changes, nil
}

func releaseUnitAccounts(u InvoiceUnit, accounts []string) []Change {
	var out []Change
	for _, a := range accounts {
		out = append(out, Change{Stream: AccountStream(a), Events: one(ev(&billingv1.AccountInvoiceUnitReleased{
			AccountId: a, OwnerAccountId: u.owner, InvoiceUnitId: u.id,
		}))})
	}
	return out
}

func decideCreateInvoiceUnit(v View, c *billingv1.CreateInvoiceUnit, now time.Time) (Outcome, error) {
	id, owner := c.GetInvoiceUnitId(), c.GetOwnerAccountId()
	if err := checkID("invoice_unit_id", id); err != nil {
		return Outcome{}, err
	}
	if err := checkText("name", c.GetName(), true, MaxNameLength); err != nil {
		return Outcome{}, err
	}
	if err := checkAccountID("receiver_account_id", c.GetReceiverAccountId()); err != nil {
		return Outcome{}, err
	}
	if err := checkUnitAccounts(c.GetAccountIds()); err != nil {
		return Outcome{}, err
	}
	if err := ownerOrg(v, owner); err != nil {
		return Outcome{}, err
	}
	idx, err := v.Events(InvoiceUnitIndexStream(id))
	if err != nil {
		return Outcome{}, err
	}
	if len(idx) > 0 {
		return Outcome{}, Reject(CodeAlreadyExists, "invoice_unit_id %s is already used; ids are never reused, even after deletion", id)
	}
	if err := checkReceiver(v, owner, c.GetReceiverAccountId(), c.GetAccountIds()); err != nil {
		return Outcome{}, err
	}
	u := InvoiceUnit{id: id, owner: owner, name: c.GetName(), receiver: c.GetReceiverAccountId(),
		accounts: slices.Clone(c.GetAccountIds()), inheritanceDisabled: c.GetTaxInheritanceDisabled()}
	assigned, err := admitUnitAccounts(v, u, u.accounts, now)
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{
		{Stream: InvoiceUnitStream(owner, id), Events: one(ev(&billingv1.InvoiceUnitCreated{Unit: u.Proto()}))},
		{Stream: InvoiceUnitIndexStream(id), Events: one(ev(&billingv1.InvoiceUnitIdReserved{InvoiceUnitId: id, OwnerAccountId: owner}))},
	}
	return Outcome{AggregateID: id, Changes: append(changes, assigned...)}, nil
}

func decideUpdateInvoiceUnit(v View, c *billingv1.UpdateInvoiceUnit, now time.Time) (Outcome, error) {
	if c.GetName() == "" && c.GetReceiverAccountId() == "" && len(c.GetAccountIds()) == 0 && c.TaxInheritanceDisabled == nil {
		return Outcome{}, Reject(CodeInvalidArgument, "nothing to update: give name, receiver_account_id, account_ids and/or tax_inheritance_disabled")
	}
	u, err := liveInvoiceUnit(v, c.GetInvoiceUnitId())
	if err != nil {
		return Outcome{}, err
	}
	next := u
	if c.GetName() != "" {
		if err := checkText("name", c.GetName(), true, MaxNameLength); err != nil {
			return Outcome{}, err
		}
		next.name = c.GetName()
	}
	if len(c.GetAccountIds()) > 0 {
		if err := checkUnitAccounts(c.GetAccountIds()); err != nil {
			return Outcome{}, err
		}
		next.accounts = slices.Clone(c.GetAccountIds())
	}
	if c.GetReceiverAccountId() != "" {
		next.receiver = c.GetReceiverAccountId()
	}
	if c.TaxInheritanceDisabled != nil {
		next.inheritanceDisabled = c.GetTaxInheritanceDisabled()
	}
	if err := checkReceiver(v, u.owner, next.receiver, next.accounts); err != nil {
		return Outcome{}, err
	}
	var added, removed []string
	for _, a := range next.accounts {
		if !u.Has(a) {
			added = append(added, a)
		}
	}
	for _, a := range u.accounts {
		if !next.Has(a) {
			removed = append(removed, a)
		}
	}
	assigned, err := admitUnitAccounts(v, next, added, now)
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: InvoiceUnitStream(u.owner, u.id), Events: one(ev(&billingv1.InvoiceUnitUpdated{
		Unit: next.Proto(), AddedAccountIds: added, RemovedAccountIds: removed,
	}))}}
	changes = append(changes, assigned...)
	return Outcome{AggregateID: u.id, Changes: append(changes, releaseUnitAccounts(u, removed)...)}, nil
}

func decideDeleteInvoiceUnit(v View, c *billingv1.DeleteInvoiceUnit) (Outcome, error) {
	u, err := liveInvoiceUnit(v, c.GetInvoiceUnitId())
	if err != nil {
		return Outcome{}, err
	}
	changes := []Change{{Stream: InvoiceUnitStream(u.owner, u.id), Events: one(ev(&billingv1.InvoiceUnitDeleted{
		InvoiceUnitId: u.id, OwnerAccountId: u.owner, AccountIds: u.Accounts(),
	}))}}
	return Outcome{AggregateID: u.id, Changes: append(changes, releaseUnitAccounts(u, u.accounts)...)}, nil
}
