package readmodel

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// ProformaProjection is the checkpoint key of the proforma projection, which
// writes the proforma_* tables and the proforma view. The pro forma and cost
// queries report it as the position they reflect.
const ProformaProjection = "proforma"

// PricingGroup is a billing group as the proforma projection prices with it
// (P4, T8). Its member accounts are kept apart (proforma_group_accounts).
type PricingGroup struct {
	// ID is the billing group id.
	ID string
	// Owner is the payer that owns the group.
	Owner string
	// Primary is the primary account; for a transfer billing group, the source
	// organization's management account.
	Primary string
	// PlanID is the group's pricing plan as its events name it ("" = base
	// pricing, i.e. BASIC, for a transfer billing group invited without a plan).
	PlanID string
	// TransferID is set for a transfer billing group (T8).
	TransferID string
	// StartMonth is a transfer billing group's first month (YYYY-MM).
	StartMonth string
}

// SKUKey identifies one per-SKU usage aggregate: every attribute a pricing rule
// matches on (P2), and who the usage is billed to (T6, T7).
type SKUKey struct {
	// Month is the booking month (YYYY-MM).
	Month string
	// PayerAccountID is the bill receiver (the top payer of a chain).
	PayerAccountID string
	// DirectPayerAccountID is the organization's direct payer; it differs from
	// PayerAccountID in a two-level chain (P7).
	DirectPayerAccountID string
	// AccountID is the account that used the resource.
	AccountID string
	// Service, UsageType and Operation are the record's.
	Service, UsageType, Operation string
	// FreeTier is the record's free tier flag (TIERING, P3).
	FreeTier bool
}

// SKURow is one per-SKU usage aggregate.
type SKURow struct {
	SKUKey
	// ListCost is the exact sum of the records' list cost (quantity × list
	// unit price, or the billed cost when the record has no list price), canonical.
	ListCost string
	// BilledCost is the exact sum of the records' billed cost, canonical.
	BilledCost string
	// UsageQuantity is the exact sum of the records' quantity, canonical.
	UsageQuantity string
	// RecordCount is the number of records summed.
	RecordCount uint64
}

// Universe is the smallest unit a re-rate recomputes: one booking month of one
// bill receiver, both levels of its chains (P4, P7).
type Universe struct {
	// Month is the booking month.
	Month string
	// PayerAccountID is the bill receiver.
	PayerAccountID string
}

// ProformaKey identifies one row of the pro forma view as stored.
type ProformaKey struct {
	// Month is the booking month.
	Month string
	// PayerAccountID is the bill receiver of the usage (the universe).
	PayerAccountID string
	// OwnerAccountID is the payer whose prices the row shows (the group's owner).
	OwnerAccountID string
	// BillingGroupID is the group ("" = no group of the owner: list cost).
	BillingGroupID string
	// AccountID is the account that used the resource.
	AccountID string
	// Service is the service name.
	Service string
}

// ProformaRowData is one stored row of the pro forma view.
type ProformaRowData struct {
	ProformaKey
	// ListCost is the exact list cost, canonical.
	ListCost string
	// BillableCost is what the owner is billed for the usage: the billed cost,
	// or in a two-level chain, for the reseller, the distributor's pro forma.
	BillableCost string
	// ProformaCost is the usage priced with the group's plan, canonical.
	ProformaCost string
	// RecordCount is the number of usage records priced into the row.
	RecordCount uint64
}

// ProformaStore reads and writes the proforma projection's tables inside one
// transaction (the runner's): the pricing configuration, the per-SKU usage
// aggregates and the pro forma rows. Statements are prepared on first use and
// kept for the transaction; Close them before it ends.
type ProformaStore struct {
	tx      *sql.Tx
	dialect dialect
	stmts   map[string]*sql.Stmt
	// The statements of the per-record paths, kept apart from stmts so that
	// using one costs no hash of its text.
	getSKU, insertSKU, updateSKU, getRow, insertRow, updateRow *sql.Stmt
}

// NewProformaStore returns a store working in tx.
func NewProformaStore(tx *sql.Tx) *ProformaStore {
	return &ProformaStore{tx: tx, dialect: txDialect(tx), stmts: map[string]*sql.Stmt{}}
}

// Close releases the prepared statements.
func (s *ProformaStore) Close() error {
	var errs []error
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	s.stmts = map[string]*sql.Stmt{}
	for _, st := range []**sql.Stmt{&s.getSKU, &s.insertSKU, &s.updateSKU, &s.getRow, &s.insertRow, &s.updateRow} {
		if *st != nil {
			errs = append(errs, (*st).Close())
			*st = nil
		}
	}
	return errors.Join(errs...)
}

// stmt returns the statement of query, prepared once per store.
func (s *ProformaStore) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("readmodel: prepare %q: %w", firstLine(query), err)
	}
	s.stmts[query] = st
	return st, nil
}

func (s *ProformaStore) exec(ctx context.Context, what, query string, args ...any) error {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return err
	}
	if _, err := st.ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("readmodel: %s: %w", what, err)
	}
	return nil
}

func (s *ProformaStore) query(ctx context.Context, what, query string, args ...any) (*sql.Rows, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: %s: %w", what, err)
	}
	return rows, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// encodeMessage is how rules and items are stored: base64 of the deterministic
// protobuf encoding, exactly the message the event carries.
func encodeMessage(m proto.Message) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func decodeMessage(s string, m proto.Message) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, m)
}

// ---------------------------------------------------------------------------
// Pricing configuration: writes.

// PutRule stores a rule as its PricingRuleCreated or PricingRuleUpdated event
// carries it.
func (s *ProformaStore) PutRule(ctx context.Context, r *billingv1.PricingRule) error {
	enc, err := encodeMessage(r)
	if err != nil {
		return fmt.Errorf("readmodel: encode rule %q: %w", r.GetPricingRuleId(), err)
	}
	return s.exec(ctx, "write rule "+r.GetPricingRuleId(), `INSERT INTO proforma_rules (pricing_rule_id, owner_account_id, rule)
		VALUES ($1, $2, $3) ON CONFLICT (pricing_rule_id) DO UPDATE SET owner_account_id = excluded.owner_account_id, rule = excluded.rule`,
		r.GetPricingRuleId(), r.GetOwnerAccountId(), enc)
}

// DeleteRule removes a deleted rule.
func (s *ProformaStore) DeleteRule(ctx context.Context, id string) error {
	return s.exec(ctx, "delete rule "+id, `DELETE FROM proforma_rules WHERE pricing_rule_id = $1`, id)
}

// PutPlan stores a new plan with its rules, in order.
func (s *ProformaStore) PutPlan(ctx context.Context, id, owner string, ruleIDs []string) error {
	if err := s.exec(ctx, "write plan "+id, `INSERT INTO proforma_plans (pricing_plan_id, owner_account_id) VALUES ($1, $2)
		ON CONFLICT (pricing_plan_id) DO UPDATE SET owner_account_id = excluded.owner_account_id`, id, owner); err != nil {
		return err
	}
	return s.AddPlanRules(ctx, id, ruleIDs)
}

// AddPlanRules appends rules to a plan.
func (s *ProformaStore) AddPlanRules(ctx context.Context, id string, ruleIDs []string) error {
	for _, r := range ruleIDs {
		if err := s.exec(ctx, "add rule "+r+" to plan "+id, `INSERT INTO proforma_plan_rules (pricing_plan_id, pricing_rule_id, seq)
			VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM proforma_plan_rules WHERE pricing_plan_id = $1))
			ON CONFLICT (pricing_plan_id, pricing_rule_id) DO NOTHING`, id, r); err != nil {
			return err
		}
	}
	return nil
}

// RemovePlanRules removes rules from a plan.
func (s *ProformaStore) RemovePlanRules(ctx context.Context, id string, ruleIDs []string) error {
	for _, r := range ruleIDs {
		if err := s.exec(ctx, "remove rule "+r+" from plan "+id,
			`DELETE FROM proforma_plan_rules WHERE pricing_plan_id = $1 AND pricing_rule_id = $2`, id, r); err != nil {
			return err
		}
	}
	return nil
}

// DeletePlan removes a deleted plan and its rule list.
func (s *ProformaStore) DeletePlan(ctx context.Context, id string) error {
	if err := s.exec(ctx, "delete plan "+id, `DELETE FROM proforma_plan_rules WHERE pricing_plan_id = $1`, id); err != nil {
		return err
	}
	return s.exec(ctx, "delete plan "+id, `DELETE FROM proforma_plans WHERE pricing_plan_id = $1`, id)
}

// PutGroup stores a new billing group and its member accounts.
func (s *ProformaStore) PutGroup(ctx context.Context, g PricingGroup, accounts []string) error {
	if err := s.exec(ctx, "write billing group "+g.ID, `INSERT INTO proforma_groups (billing_group_id, owner_account_id,
			primary_account_id, pricing_plan_id, transfer_id, start_month) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (billing_group_id) DO UPDATE SET owner_account_id = excluded.owner_account_id,
			primary_account_id = excluded.primary_account_id, pricing_plan_id = excluded.pricing_plan_id,
			transfer_id = excluded.transfer_id, start_month = excluded.start_month`,
		g.ID, g.Owner, g.Primary, g.PlanID, g.TransferID, g.StartMonth); err != nil {
		return err
	}
	if err := s.exec(ctx, "write billing group "+g.ID, `DELETE FROM proforma_group_accounts WHERE billing_group_id = $1`, g.ID); err != nil {
		return err
	}
	return s.AddGroupAccounts(ctx, g.ID, g.Owner, accounts)
}

// SetGroupPlan changes a group's plan.
func (s *ProformaStore) SetGroupPlan(ctx context.Context, id, planID string) error {
	return s.exec(ctx, "update billing group "+id, `UPDATE proforma_groups SET pricing_plan_id = $2 WHERE billing_group_id = $1`, id, planID)
}

// AddGroupAccounts adds member accounts to a group of owner.
func (s *ProformaStore) AddGroupAccounts(ctx context.Context, id, owner string, accounts []string) error {
	for _, a := range accounts {
		if err := s.exec(ctx, "add account "+a+" to billing group "+id, `INSERT INTO proforma_group_accounts
			(billing_group_id, account_id, owner_account_id) VALUES ($1, $2, $3)
			ON CONFLICT (billing_group_id, account_id) DO NOTHING`, id, a, owner); err != nil {
			return err
		}
	}
	return nil
}

// RemoveGroupAccounts removes member accounts from a group.
func (s *ProformaStore) RemoveGroupAccounts(ctx context.Context, id string, accounts []string) error {
	for _, a := range accounts {
		if err := s.exec(ctx, "remove account "+a+" from billing group "+id,
			`DELETE FROM proforma_group_accounts WHERE billing_group_id = $1 AND account_id = $2`, id, a); err != nil {
			return err
		}
	}
	return nil
}

// DeleteGroup removes a deleted group and its memberships.
func (s *ProformaStore) DeleteGroup(ctx context.Context, id string) error {
	if err := s.exec(ctx, "delete billing group "+id, `DELETE FROM proforma_group_accounts WHERE billing_group_id = $1`, id); err != nil {
		return err
	}
	return s.exec(ctx, "delete billing group "+id, `DELETE FROM proforma_groups WHERE billing_group_id = $1`, id)
}

// SetTransferEnd records the last month of a withdrawn transfer (T5).
func (s *ProformaStore) SetTransferEnd(ctx context.Context, transferID, endMonth string) error {
	return s.exec(ctx, "write end of transfer "+transferID, `INSERT INTO proforma_transfer_ends (transfer_id, end_month) VALUES ($1, $2)
		ON CONFLICT (transfer_id) DO UPDATE SET end_month = excluded.end_month`, transferID, endMonth)
}

// PutItem stores a custom line item as its latest event carries it.
func (s *ProformaStore) PutItem(ctx context.Context, it *billingv1.CustomLineItem) error {
	enc, err := encodeMessage(it)
	if err != nil {
		return fmt.Errorf("readmodel: encode custom line item %q: %w", it.GetCustomLineItemId(), err)
	}
	return s.exec(ctx, "write custom line item "+it.GetCustomLineItemId(), `INSERT INTO proforma_items
			(custom_line_item_id, owner_account_id, billing_group_id, item) VALUES ($1, $2, $3, $4)
		ON CONFLICT (custom_line_item_id) DO UPDATE SET owner_account_id = excluded.owner_account_id,
			billing_group_id = excluded.billing_group_id, item = excluded.item`,
		it.GetCustomLineItemId(), it.GetOwnerAccountId(), it.GetBillingGroupId(), enc)
}

// DeleteItem removes a deleted custom line item.
func (s *ProformaStore) DeleteItem(ctx context.Context, id string) error {
	return s.exec(ctx, "delete custom line item "+id, `DELETE FROM proforma_items WHERE custom_line_item_id = $1`, id)
}

// ---------------------------------------------------------------------------
// Pricing configuration: reads.

const groupColumns = `g.billing_group_id, g.owner_account_id, g.primary_account_id, g.pricing_plan_id, g.transfer_id, g.start_month`

func (s *ProformaStore) groups(ctx context.Context, what, query string, args ...any) ([]PricingGroup, error) {
	rows, err := s.query(ctx, what, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PricingGroup
	for rows.Next() {
		var g PricingGroup
		if err := rows.Scan(&g.ID, &g.Owner, &g.Primary, &g.PlanID, &g.TransferID, &g.StartMonth); err != nil {
			return nil, fmt.Errorf("readmodel: %s: %w", what, err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: %s: %w", what, err)
	}
	return out, nil
}

// GroupsHolding lists owner's billing groups that hold account, by id.
func (s *ProformaStore) GroupsHolding(ctx context.Context, owner, account string) ([]PricingGroup, error) {
	return s.groups(ctx, "read billing groups of account "+account, `SELECT `+groupColumns+`
		FROM proforma_group_accounts a JOIN proforma_groups g ON g.billing_group_id = a.billing_group_id
		WHERE a.owner_account_id = $1 AND a.account_id = $2 ORDER BY g.billing_group_id`, owner, account)
}

// TransferGroupsOf lists owner's transfer billing groups whose primary account
// is primary (the transfers through which owner receives primary's bill), by id.
func (s *ProformaStore) TransferGroupsOf(ctx context.Context, owner, primary string) ([]PricingGroup, error) {
	return s.groups(ctx, "read transfer billing groups of "+primary, `SELECT `+groupColumns+`
		FROM proforma_groups g WHERE g.owner_account_id = $1 AND g.primary_account_id = $2 AND g.transfer_id <> ''
		ORDER BY g.billing_group_id`, owner, primary)
}

// GroupOfTransfer returns the transfer billing group of a transfer (ok false: none).
func (s *ProformaStore) GroupOfTransfer(ctx context.Context, transferID string) (PricingGroup, bool, error) {
	gs, err := s.groups(ctx, "read billing group of transfer "+transferID, `SELECT `+groupColumns+`
		FROM proforma_groups g WHERE g.transfer_id = $1 ORDER BY g.billing_group_id`, transferID)
	if err != nil || len(gs) == 0 {
		return PricingGroup{}, false, err
	}
	return gs[0], true, nil
}

// Group returns a billing group (ok false: none, or deleted).
func (s *ProformaStore) Group(ctx context.Context, id string) (PricingGroup, bool, error) {
	gs, err := s.groups(ctx, "read billing group "+id, `SELECT `+groupColumns+` FROM proforma_groups g WHERE g.billing_group_id = $1`, id)
	if err != nil || len(gs) == 0 {
		return PricingGroup{}, false, err
	}
	return gs[0], true, nil
}

// TransferEnd returns the last month of a withdrawn transfer ("" while open-ended).
func (s *ProformaStore) TransferEnd(ctx context.Context, transferID string) (string, error) {
	st, err := s.stmt(ctx, `SELECT end_month FROM proforma_transfer_ends WHERE transfer_id = $1`)
	if err != nil {
		return "", err
	}
	var end string
	err = st.QueryRowContext(ctx, transferID).Scan(&end)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("readmodel: read end of transfer %s: %w", transferID, err)
	}
	return end, nil
}

// PlanOwner returns the owner of a live plan (ok false: no such plan, or deleted).
func (s *ProformaStore) PlanOwner(ctx context.Context, id string) (string, bool, error) {
	st, err := s.stmt(ctx, `SELECT owner_account_id FROM proforma_plans WHERE pricing_plan_id = $1`)
	if err != nil {
		return "", false, err
	}
	var owner string
	err = st.QueryRowContext(ctx, id).Scan(&owner)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("readmodel: read plan %s: %w", id, err)
	}
	return owner, true, nil
}

// PlanRules returns the rules of a live plan in the order they were
// associated. A rule the plan names but that is not stored is an error: a rule
// is never deleted while a plan holds it.
func (s *ProformaStore) PlanRules(ctx context.Context, id string) ([]*billingv1.PricingRule, error) {
	rows, err := s.query(ctx, "read rules of plan "+id, `SELECT p.pricing_rule_id, r.rule FROM proforma_plan_rules p
		LEFT JOIN proforma_rules r ON r.pricing_rule_id = p.pricing_rule_id
		WHERE p.pricing_plan_id = $1 ORDER BY p.seq, p.pricing_rule_id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*billingv1.PricingRule
	for rows.Next() {
		var ruleID string
		var enc sql.NullString
		if err := rows.Scan(&ruleID, &enc); err != nil {
			return nil, fmt.Errorf("readmodel: read rules of plan %s: %w", id, err)
		}
		if !enc.Valid {
			return nil, fmt.Errorf("readmodel: plan %s holds rule %s, which is not stored", id, ruleID)
		}
		r := &billingv1.PricingRule{}
		if err := decodeMessage(enc.String, r); err != nil {
			return nil, fmt.Errorf("readmodel: stored rule %s: %w", ruleID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read rules of plan %s: %w", id, err)
	}
	return out, nil
}

// PlanInUse reports whether a billing group names plan id.
func (s *ProformaStore) PlanInUse(ctx context.Context, id string) (bool, error) {
	return s.exists(ctx, "read groups of plan "+id, `SELECT 1 FROM proforma_groups WHERE pricing_plan_id = $1 LIMIT 1`, id)
}

// RuleInUse reports whether a plan that a billing group names holds rule id.
func (s *ProformaStore) RuleInUse(ctx context.Context, id string) (bool, error) {
	return s.exists(ctx, "read plans of rule "+id, `SELECT 1 FROM proforma_plan_rules p
		JOIN proforma_groups g ON g.pricing_plan_id = p.pricing_plan_id WHERE p.pricing_rule_id = $1 LIMIT 1`, id)
}

func (s *ProformaStore) exists(ctx context.Context, what, query string, args ...any) (bool, error) {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return false, err
	}
	var one int
	err = st.QueryRowContext(ctx, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("readmodel: %s: %w", what, err)
	}
	return true, nil
}

// ---------------------------------------------------------------------------
// Per-SKU usage aggregates.

const skuKeyWhere = `month = $1 AND payer_account_id = $2 AND direct_payer_account_id = $3 AND account_id = $4
	AND service = $5 AND usage_type = $6 AND operation = $7 AND free_tier = $8`

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// LookupSKU returns the aggregate of k and its row id (see BillableWriter on
// row ids), or nil and no error when there is none yet.
func (s *ProformaStore) LookupSKU(ctx context.Context, k SKUKey) (*SKURow, int64, error) {
	st, err := prepare(ctx, s.tx, &s.getSKU, "usage aggregate read", `SELECT rowid, list_cost, billed_cost, usage_quantity,
		record_count FROM proforma_usage WHERE `+skuKeyWhere)
	if err != nil {
		return nil, 0, err
	}
	r := SKURow{SKUKey: k}
	var id, count int64
	err = st.QueryRowContext(ctx, k.Month, k.PayerAccountID, k.DirectPayerAccountID, k.AccountID, k.Service, k.UsageType,
		k.Operation, boolInt(k.FreeTier)).Scan(&id, &r.ListCost, &r.BilledCost, &r.UsageQuantity, &count)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("readmodel: read usage aggregate %+v: %w", k, err)
	}
	if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
		return nil, 0, err
	}
	return &r, id, nil
}

// InsertSKU adds an aggregate whose key has none yet and returns its row id.
func (s *ProformaStore) InsertSKU(ctx context.Context, r *SKURow) (int64, error) {
	count, err := toDBInt("record_count", r.RecordCount)
	if err != nil {
		return 0, err
	}
	st, err := prepare(ctx, s.tx, &s.insertSKU, "usage aggregate insert", insertQuery(s.dialect, `INSERT INTO
			proforma_usage (month, payer_account_id, direct_payer_account_id, account_id, service, usage_type, operation,
			free_tier, list_cost, billed_cost, usage_quantity, record_count)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`))
	if err != nil {
		return 0, err
	}
	id, err := insertRowID(ctx, s.dialect, st, r.Month, r.PayerAccountID, r.DirectPayerAccountID, r.AccountID, r.Service,
		r.UsageType, r.Operation, boolInt(r.FreeTier), r.ListCost, r.BilledCost, r.UsageQuantity, count)
	if err != nil {
		return 0, fmt.Errorf("readmodel: write usage aggregate %+v: %w", r.SKUKey, err)
	}
	return id, nil
}

// UpdateSKU replaces the sums of the aggregate with row id, which must be r's.
func (s *ProformaStore) UpdateSKU(ctx context.Context, id int64, r *SKURow) error {
	count, err := toDBInt("record_count", r.RecordCount)
	if err != nil {
		return err
	}
	st, err := prepare(ctx, s.tx, &s.updateSKU, "usage aggregate update", `UPDATE proforma_usage SET list_cost = $1,
		billed_cost = $2, usage_quantity = $3, record_count = $4 WHERE rowid = $5`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, r.ListCost, r.BilledCost, r.UsageQuantity, count, id)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("readmodel: write usage aggregate %+v (row %d): %w", r.SKUKey, id, err)
	}
	return nil
}

// UniversesOf lists the universes whose pro forma depends on owner's pricing:
// the months it receives bills in, and the months and bill receivers of the
// usage it is the direct payer of (the reseller level of a chain, P7). Sorted.
func (s *ProformaStore) UniversesOf(ctx context.Context, owner string) ([]Universe, error) {
	rows, err := s.query(ctx, "read months of "+owner, `SELECT DISTINCT month, payer_account_id FROM proforma_usage WHERE payer_account_id = $1
		UNION SELECT DISTINCT month, payer_account_id FROM proforma_usage WHERE direct_payer_account_id = $1
		ORDER BY 1, 2`, owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Universe
	for rows.Next() {
		var u Universe
		if err := rows.Scan(&u.Month, &u.PayerAccountID); err != nil {
			return nil, fmt.Errorf("readmodel: read months of %s: %w", owner, err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read months of %s: %w", owner, err)
	}
	return out, nil
}

// EachSKU calls fn with every aggregate of universe u, in key order. fn must
// not use the store (the rows are still being read).
func (s *ProformaStore) EachSKU(ctx context.Context, u Universe, fn func(*SKURow) error) error {
	what := "read usage aggregates of " + u.Month + " for " + u.PayerAccountID
	rows, err := s.query(ctx, what, `SELECT direct_payer_account_id, account_id, service, usage_type, operation, free_tier,
			list_cost, billed_cost, usage_quantity, record_count
		FROM proforma_usage WHERE month = $1 AND payer_account_id = $2
		ORDER BY direct_payer_account_id, account_id, service, usage_type, operation, free_tier`, u.Month, u.PayerAccountID)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r := SKURow{SKUKey: SKUKey{Month: u.Month, PayerAccountID: u.PayerAccountID}}
		var free, count int64
		if err := rows.Scan(&r.DirectPayerAccountID, &r.AccountID, &r.Service, &r.UsageType, &r.Operation, &free,
			&r.ListCost, &r.BilledCost, &r.UsageQuantity, &count); err != nil {
			return fmt.Errorf("readmodel: %s: %w", what, err)
		}
		r.FreeTier = free == 1
		if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("readmodel: %s: %w", what, err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Pro forma rows.

const proformaKeyWhere = `month = $1 AND payer_account_id = $2 AND owner_account_id = $3 AND billing_group_id = $4
	AND account_id = $5 AND service = $6`

// LookupRow returns the row of k and its row id (see BillableWriter on row
// ids), or nil and no error when there is none yet.
func (s *ProformaStore) LookupRow(ctx context.Context, k ProformaKey) (*ProformaRowData, int64, error) {
	st, err := prepare(ctx, s.tx, &s.getRow, "pro forma row read", `SELECT rowid, list_cost, billable_cost, proforma_cost,
		record_count FROM proforma WHERE `+proformaKeyWhere)
	if err != nil {
		return nil, 0, err
	}
	r := ProformaRowData{ProformaKey: k}
	var id, count int64
	err = st.QueryRowContext(ctx, k.Month, k.PayerAccountID, k.OwnerAccountID, k.BillingGroupID, k.AccountID, k.Service).
		Scan(&id, &r.ListCost, &r.BillableCost, &r.ProformaCost, &count)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("readmodel: read pro forma row %+v: %w", k, err)
	}
	if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
		return nil, 0, err
	}
	return &r, id, nil
}

// InsertRow adds a row whose key has none yet and returns its row id.
func (s *ProformaStore) InsertRow(ctx context.Context, r *ProformaRowData) (int64, error) {
	count, err := toDBInt("record_count", r.RecordCount)
	if err != nil {
		return 0, err
	}
	st, err := prepare(ctx, s.tx, &s.insertRow, "pro forma row insert", insertQuery(s.dialect, `INSERT INTO proforma (month,
			payer_account_id, owner_account_id, billing_group_id, account_id, service, list_cost, billable_cost, proforma_cost,
			record_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`))
	if err != nil {
		return 0, err
	}
	id, err := insertRowID(ctx, s.dialect, st, r.Month, r.PayerAccountID, r.OwnerAccountID, r.BillingGroupID, r.AccountID,
		r.Service, r.ListCost, r.BillableCost, r.ProformaCost, count)
	if err != nil {
		return 0, fmt.Errorf("readmodel: write pro forma row %+v: %w", r.ProformaKey, err)
	}
	return id, nil
}

// UpdateRow replaces the amounts and count of the row with id, which must be r's.
func (s *ProformaStore) UpdateRow(ctx context.Context, id int64, r *ProformaRowData) error {
	count, err := toDBInt("record_count", r.RecordCount)
	if err != nil {
		return err
	}
	st, err := prepare(ctx, s.tx, &s.updateRow, "pro forma row update", `UPDATE proforma SET list_cost = $1,
		billable_cost = $2, proforma_cost = $3, record_count = $4 WHERE rowid = $5`)
	if err != nil {
		return err
	}
	res, err := st.ExecContext(ctx, r.ListCost, r.BillableCost, r.ProformaCost, count, id)
	if err == nil {
		err = oneRow(res)
	}
	if err != nil {
		return fmt.Errorf("readmodel: write pro forma row %+v (row %d): %w", r.ProformaKey, id, err)
	}
	return nil
}

// DeleteRows removes every row of universe u (a re-rate writes them again).
func (s *ProformaStore) DeleteRows(ctx context.Context, u Universe) error {
	return s.exec(ctx, "delete pro forma rows of "+u.Month+" for "+u.PayerAccountID,
		`DELETE FROM proforma WHERE month = $1 AND payer_account_id = $2`, u.Month, u.PayerAccountID)
}

// MarkClosed records that the bill receiver closed the universe's month (X5):
// the proforma projection no longer re-rates it (P4), and the custom line
// items the payer owns are frozen for that month as they stand now (P5, R3:
// the month's pro forma prices these from then on; see readItems).
func (s *ProformaStore) MarkClosed(ctx context.Context, u Universe, position uint64) error {
	if err := s.exec(ctx, "close "+u.Month+" of "+u.PayerAccountID, `INSERT INTO proforma_closed (month, payer_account_id, position) VALUES ($1, $2, $3)
		ON CONFLICT (month, payer_account_id) DO NOTHING`, u.Month, u.PayerAccountID, int64(position)); err != nil {
		return err
	}
	return s.exec(ctx, "freeze the custom line items of "+u.PayerAccountID+" for "+u.Month, `INSERT INTO proforma_closed_items
			(month, owner_account_id, custom_line_item_id, billing_group_id, item)
		SELECT $1, owner_account_id, custom_line_item_id, billing_group_id, item FROM proforma_items WHERE owner_account_id = $2
		ON CONFLICT (month, owner_account_id, custom_line_item_id) DO NOTHING`, u.Month, u.PayerAccountID)
}

// Closed reports whether the universe's month is closed.
func (s *ProformaStore) Closed(ctx context.Context, u Universe) (bool, error) {
	st, err := s.stmt(ctx, `SELECT 1 FROM proforma_closed WHERE month = $1 AND payer_account_id = $2`)
	if err != nil {
		return false, err
	}
	var one int
	switch err := st.QueryRowContext(ctx, u.Month, u.PayerAccountID).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("readmodel: is %s of %s closed: %w", u.Month, u.PayerAccountID, err)
	}
	return true, nil
}
