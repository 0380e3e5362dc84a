package readmodel

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"

	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// The pro forma view (R1) and the cost report (P6) as queries. The stored rows
// hold the usage priced by the proforma projection; custom line items (P5) are
// added here, at query time, with domain.PriceGroupMonth from the items table
// and the group's stored pro forma usage cost, so that they always agree with
// the latest re-rate. The live queries, the live month digests and the replay
// (which runs the projection into a scratch database) all go through
// buildProforma and buildCost, so they cannot disagree.

// proformaLine is one line of a month's pro forma: a usage row with the
// universes (bill receivers) merged, or a custom line item.
type proformaLine struct {
	owner, group, account, service, item string
	list, billable, proforma             *apd.Decimal
	records                              uint64
}

// lineKey orders and merges lines.
type lineKey struct{ owner, group, account, service, item string }

func (l *proformaLine) key() lineKey {
	return lineKey{l.owner, l.group, l.account, l.service, l.item}
}

// compareLines orders lines by owner and billing group, then the group's usage
// rows (by account and service) before its custom line items (by account,
// name and id), as on an invoice.
func compareLines(a, b *proformaLine) int {
	isItem := func(l *proformaLine) int {
		if l.item != "" {
			return 1
		}
		return 0
	}
	return cmp.Or(
		cmp.Compare(a.owner, b.owner),
		cmp.Compare(a.group, b.group),
		cmp.Compare(isItem(a), isItem(b)),
		cmp.Compare(a.account, b.account),
		cmp.Compare(a.service, b.service),
		cmp.Compare(a.item, b.item),
	)
}

// buildProforma turns stored rows and custom line items into the month's pro
// forma lines, unordered (sortLines orders them): rows of several bill
// receivers with the same owner, group, account and service are merged, and
// every item that charges the month adds one line (P5), priced on its group's
// pro forma usage cost of the month (all of the group's rows: the caller
// passes every row of each group it wants item lines for).
func buildProforma(month string, rows []ProformaRowData, items []*billingv1.CustomLineItem) ([]*proformaLine, error) {
	m, err := domain.ParseMonth(month)
	if err != nil {
		return nil, err
	}
	merged := map[lineKey]*proformaLine{}
	usage := map[string]domain.ServiceCosts{} // billing group → service → pro forma usage cost
	for i := range rows {
		r := &rows[i]
		list, err := domain.ParseDecimal(r.ListCost)
		if err != nil {
			return nil, fmt.Errorf("readmodel: stored list_cost of %+v: %w", r.ProformaKey, err)
		}
		billable, err := domain.ParseDecimal(r.BillableCost)
		if err != nil {
			return nil, fmt.Errorf("readmodel: stored billable_cost of %+v: %w", r.ProformaKey, err)
		}
		pf, err := domain.ParseDecimal(r.ProformaCost)
		if err != nil {
			return nil, fmt.Errorf("readmodel: stored proforma_cost of %+v: %w", r.ProformaKey, err)
		}
		k := lineKey{owner: r.OwnerAccountID, group: r.BillingGroupID, account: r.AccountID, service: r.Service}
		l := merged[k]
		if l == nil {
			merged[k] = &proformaLine{owner: k.owner, group: k.group, account: k.account, service: k.service,
				list: list, billable: billable, proforma: pf, records: r.RecordCount}
		} else {
			if l.list, err = domain.AddDecimal(l.list, list); err != nil {
				return nil, err
			}
			if l.billable, err = domain.AddDecimal(l.billable, billable); err != nil {
				return nil, err
			}
			if l.proforma, err = domain.AddDecimal(l.proforma, pf); err != nil {
				return nil, err
			}
			l.records += r.RecordCount
		}
		if r.BillingGroupID == "" {
			continue
		}
		costs := usage[r.BillingGroupID]
		if costs == nil {
			costs = domain.ServiceCosts{}
			usage[r.BillingGroupID] = costs
		}
		if prev := costs[r.Service]; prev != nil {
			if pf, err = domain.AddDecimal(prev, pf); err != nil {
				return nil, err
			}
		}
		costs[r.Service] = pf
	}
	out := make([]*proformaLine, 0, len(merged)+len(items))
	for _, l := range merged {
		out = append(out, l)
	}

	byGroup := map[string][]domain.CustomLineItem{}
	owners := map[string]string{}
	for _, it := range items {
		byGroup[it.GetBillingGroupId()] = append(byGroup[it.GetBillingGroupId()], domain.CustomLineItemFromProto(it))
		owners[it.GetBillingGroupId()] = it.GetOwnerAccountId()
	}
	for _, g := range slices.Sorted(mapsKeys(byGroup)) {
		gm, err := domain.PriceGroupMonth(m, usage[g], byGroup[g])
		if err != nil {
			return nil, fmt.Errorf("readmodel: custom line items of billing group %s in %s: %w", g, month, err)
		}
		for _, ch := range gm.Items {
			out = append(out, &proformaLine{owner: owners[g], group: g, account: ch.AccountID, service: ch.Name, item: ch.ItemID,
				list: apd.New(0, 0), billable: apd.New(0, 0), proforma: ch.Amount})
		}
	}
	return out, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// sortLines puts lines in report order (compareLines).
func sortLines(lines []*proformaLine) []*proformaLine {
	slices.SortFunc(lines, compareLines)
	return lines
}

// costLine is the cost report of one billing group (P6).
type costLine struct {
	owner, group               string
	billable, proforma, margin *apd.Decimal
}

// buildCost sums pro forma lines per billing group: billable cost (usage only),
// pro forma cost (usage and custom line items) and margin = pro forma − billable.
func buildCost(lines []*proformaLine) ([]*costLine, error) {
	type gk struct{ owner, group string }
	byGroup := map[gk]*costLine{}
	var order []gk
	for _, l := range lines {
		k := gk{l.owner, l.group}
		c := byGroup[k]
		if c == nil {
			c = &costLine{owner: l.owner, group: l.group, billable: apd.New(0, 0), proforma: apd.New(0, 0)}
			byGroup[k] = c
			order = append(order, k)
		}
		var err error
		if c.billable, err = domain.AddDecimal(c.billable, l.billable); err != nil {
			return nil, err
		}
		if c.proforma, err = domain.AddDecimal(c.proforma, l.proforma); err != nil {
			return nil, err
		}
	}
	out := make([]*costLine, 0, len(order))
	for _, k := range order {
		c := byGroup[k]
		var m apd.Decimal
		if _, err := exactCtx.Sub(&m, c.proforma, c.billable); err != nil {
			return nil, err
		}
		c.margin = &m
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *costLine) int {
		return cmp.Or(cmp.Compare(a.owner, b.owner), cmp.Compare(a.group, b.group))
	})
	return out, nil
}

// exactCtx is domain's money arithmetic: 60 digits, and the operations used
// here (subtraction of figures far below 60 digits) are exact.
var exactCtx = apd.BaseContext.WithPrecision(60)

// MarginPercentage is margin / proforma × 100 rounded half up (away from zero)
// to 2 decimals, computed exactly from the two figures; "" when proforma is 0
// (a percentage of nothing is undefined: no row claims 0% or infinity).
func MarginPercentage(margin, proforma *apd.Decimal) (string, error) {
	if proforma.IsZero() {
		return "", nil
	}
	// q = floor(|margin| × 10000 / |proforma| + 1/2) hundredths, with integers only.
	var n, d, num, den, q apd.Decimal
	n.Abs(margin)
	d.Abs(proforma)
	if _, err := exactCtx.Mul(&n, &n, apd.New(20000, 0)); err != nil { // 2 × |margin| × 10000
		return "", err
	}
	if _, err := exactCtx.Add(&num, &n, &d); err != nil {
		return "", err
	}
	if _, err := exactCtx.Mul(&den, &d, apd.New(2, 0)); err != nil {
		return "", err
	}
	if _, err := exactCtx.QuoInteger(&q, &num, &den); err != nil {
		return "", fmt.Errorf("margin percentage of %s over %s: %w", margin.Text('f'), proforma.Text('f'), err)
	}
	q.Exponent -= 2
	q.Negative = margin.Negative != proforma.Negative && !q.IsZero()
	var r apd.Decimal
	if _, err := exactCtx.Quantize(&r, &q, -2); err != nil {
		return "", err
	}
	return r.Text('f'), nil
}

func (l *proformaLine) proto(month string) *billingv1.ProformaRow {
	return &billingv1.ProformaRow{
		Month: month, OwnerAccountId: l.owner, BillingGroupId: l.group, AccountId: l.account, Service: l.service,
		CustomLineItemId: l.item, ListCost: domain.CanonicalDecimal(l.list), ProformaCost: domain.CanonicalDecimal(l.proforma),
		RecordCount: l.records,
	}
}

func (c *costLine) proto(month string) (*billingv1.CostRow, error) {
	pct, err := MarginPercentage(c.margin, c.proforma)
	if err != nil {
		return nil, err
	}
	return &billingv1.CostRow{
		Month: month, OwnerAccountId: c.owner, BillingGroupId: c.group,
		BillableCost: domain.CanonicalDecimal(c.billable), ProformaCost: domain.CanonicalDecimal(c.proforma),
		Margin: domain.CanonicalDecimal(c.margin), MarginPercentage: pct,
	}, nil
}

// ---------------------------------------------------------------------------
// Reading rows and items.

// ownerGroup names a billing group with its owner (group "" is the owner's
// usage in no group).
type ownerGroup struct{ owner, group string }

// readProformaRows reads the stored rows of month: of owner and group when
// they are set ("" = all), or, when exact is set, of exactly those groups.
func readProformaRows(ctx context.Context, q querier, month, owner, group string, exact []ownerGroup) ([]ProformaRowData, error) {
	const columns = `SELECT payer_account_id, owner_account_id, billing_group_id, account_id, service,
		list_cost, billable_cost, proforma_cost, record_count FROM proforma WHERE month = $1`
	if exact != nil {
		var out []ProformaRowData
		for _, g := range exact {
			rows, err := scanProformaRows(ctx, q, month, columns+` AND owner_account_id = $2 AND billing_group_id = $3`, month, g.owner, g.group)
			if err != nil {
				return nil, err
			}
			out = append(out, rows...)
		}
		return out, nil
	}
	query, args := columns, []any{month}
	if owner != "" {
		args = append(args, owner)
		query += ` AND owner_account_id = $` + strconv.Itoa(len(args))
	}
	if group != "" {
		args = append(args, group)
		query += ` AND billing_group_id = $` + strconv.Itoa(len(args))
	}
	return scanProformaRows(ctx, q, month, query, args...)
}

func scanProformaRows(ctx context.Context, q querier, month, query string, args ...any) ([]ProformaRowData, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read pro forma %s: %w", month, err)
	}
	defer rows.Close()
	var out []ProformaRowData
	for rows.Next() {
		r := ProformaRowData{ProformaKey: ProformaKey{Month: month}}
		var count int64
		if err := rows.Scan(&r.PayerAccountID, &r.OwnerAccountID, &r.BillingGroupID, &r.AccountID, &r.Service,
			&r.ListCost, &r.BillableCost, &r.ProformaCost, &count); err != nil {
			return nil, fmt.Errorf("readmodel: read pro forma %s: %w", month, err)
		}
		if r.RecordCount, err = fromDBInt("record_count", count); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read pro forma %s: %w", month, err)
	}
	return out, nil
}

// readItems reads the custom line items that charge month, of owner and
// group when set ("" = all): for an owner that has closed the month, the
// items as they stood at its close (proforma_closed_items, P5, R3); for any
// other, the live ones.
func readItems(ctx context.Context, q querier, month, owner, group string) ([]*billingv1.CustomLineItem, error) {
	args := []any{month}
	filters := ""
	if owner != "" {
		args = append(args, owner)
		filters += ` AND owner_account_id = $` + strconv.Itoa(len(args))
	}
	if group != "" {
		args = append(args, group)
		filters += ` AND billing_group_id = $` + strconv.Itoa(len(args))
	}
	query := `SELECT custom_line_item_id, item FROM proforma_items i
		WHERE NOT EXISTS (SELECT 1 FROM proforma_closed c WHERE c.month = $1 AND c.payer_account_id = i.owner_account_id)` + filters + `
		UNION ALL
		SELECT custom_line_item_id, item FROM proforma_closed_items WHERE month = $1` + filters + `
		ORDER BY 1`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read custom line items: %w", err)
	}
	defer rows.Close()
	var out []*billingv1.CustomLineItem
	for rows.Next() {
		var id, enc string
		if err := rows.Scan(&id, &enc); err != nil {
			return nil, fmt.Errorf("readmodel: read custom line items: %w", err)
		}
		it := &billingv1.CustomLineItem{}
		if err := decodeMessage(enc, it); err != nil {
			return nil, fmt.Errorf("readmodel: stored custom line item %s: %w", id, err)
		}
		if chargesMonth(it, month) {
			out = append(out, it)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read custom line items: %w", err)
	}
	return out, nil
}

// chargesMonth reports whether an item's range holds month (YYYY-MM compares as text).
func chargesMonth(it *billingv1.CustomLineItem, month string) bool {
	return it.GetStartMonth() <= month && (it.GetEndMonth() == "" || month <= it.GetEndMonth())
}

// monthLines reads what buildProforma needs for month (owner and group filter
// "" = all) in q and builds the lines.
func monthLines(ctx context.Context, q querier, month, owner, group string) ([]*proformaLine, error) {
	rows, err := readProformaRows(ctx, q, month, owner, group, nil)
	if err != nil {
		return nil, err
	}
	items, err := readItems(ctx, q, month, owner, group)
	if err != nil {
		return nil, err
	}
	return buildProforma(month, rows, items)
}

// accountLines builds the lines of the groups that hold usage of account in
// month or have a custom line item charging it, then keeps the account's own.
func accountLines(ctx context.Context, q querier, month, owner, group, account string) ([]*proformaLine, error) {
	query := `SELECT DISTINCT owner_account_id, billing_group_id FROM proforma WHERE month = $1 AND account_id = $2`
	args := []any{month, account}
	if owner != "" {
		args = append(args, owner)
		query += ` AND owner_account_id = $` + strconv.Itoa(len(args))
	}
	if group != "" {
		args = append(args, group)
		query += ` AND billing_group_id = $` + strconv.Itoa(len(args))
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("readmodel: read pro forma groups of %s: %w", account, err)
	}
	seen := map[ownerGroup]bool{}
	var groups []ownerGroup
	for rows.Next() {
		var g ownerGroup
		if err := rows.Scan(&g.owner, &g.group); err != nil {
			rows.Close()
			return nil, fmt.Errorf("readmodel: read pro forma groups of %s: %w", account, err)
		}
		seen[g], groups = true, append(groups, g)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("readmodel: read pro forma groups of %s: %w", account, err)
	}
	items, err := readItems(ctx, q, month, owner, group)
	if err != nil {
		return nil, err
	}
	var kept []*billingv1.CustomLineItem
	for _, it := range items {
		g := ownerGroup{it.GetOwnerAccountId(), it.GetBillingGroupId()}
		if it.GetAccountId() == account && !seen[g] {
			seen[g], groups = true, append(groups, g)
		}
	}
	for _, it := range items {
		if seen[ownerGroup{it.GetOwnerAccountId(), it.GetBillingGroupId()}] {
			kept = append(kept, it)
		}
	}
	if groups == nil {
		groups = []ownerGroup{} // none: read no rows
	}
	stored, err := readProformaRows(ctx, q, month, "", "", groups)
	if err != nil {
		return nil, err
	}
	lines, err := buildProforma(month, stored, kept)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(lines, func(l *proformaLine) bool { return l.account != account }), nil
}

// ReportProforma reads the pro forma view (R1) of month: usage rows and custom
// line item rows, optionally only of one payer (the groups' owner), one
// billing group and/or one account. Total is the exact sum of the rows'
// proforma_cost; Checkpoint is the proforma projection's position, read in the
// same snapshot. Bad filter values return an error wrapping ErrInvalidFilter.
func (db *DB) ReportProforma(ctx context.Context, month, payer, group, account string) (*billingv1.ReportProformaResponse, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	if payer != "" && !isAccountID(payer) {
		return nil, invalidFilter("payer_account_id %q is not a 12-digit account id", payer)
	}
	if account != "" && !isAccountID(account) {
		return nil, invalidFilter("account_id %q is not a 12-digit account id", account)
	}
	if group != "" && !domain.ValidID(group) {
		return nil, invalidFilter("billing_group_id %q is not a billing group id", group)
	}
	resp := &billingv1.ReportProformaResponse{Rows: []*billingv1.ProformaRow{}}
	var lines []*proformaLine
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if account != "" {
			lines, err = accountLines(ctx, tx, month, payer, group, account)
		} else {
			lines, err = monthLines(ctx, tx, month, payer, group)
		}
		if err != nil {
			return err
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, ProformaProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	total := apd.New(0, 0)
	for _, l := range sortLines(lines) {
		resp.Rows = append(resp.Rows, l.proto(month))
		if total, err = domain.AddDecimal(total, l.proforma); err != nil {
			return nil, fmt.Errorf("readmodel: pro forma total of %s: %w", month, err)
		}
	}
	resp.Total = domain.CanonicalDecimal(total)
	return resp, nil
}

// ReportCost reads the cost report (P6) of month: per billing group (of one
// payer when set) the billable cost, the pro forma cost (custom line items
// included), the margin and its percentage, with the totals. Checkpoint is the
// proforma projection's position.
func (db *DB) ReportCost(ctx context.Context, month, payer string) (*billingv1.ReportCostResponse, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	if payer != "" && !isAccountID(payer) {
		return nil, invalidFilter("payer_account_id %q is not a 12-digit account id", payer)
	}
	var lines []*proformaLine
	resp := &billingv1.ReportCostResponse{Rows: []*billingv1.CostRow{}}
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if lines, err = monthLines(ctx, tx, month, payer, ""); err != nil {
			return err
		}
		resp.Checkpoint, err = readCheckpoint(ctx, tx, ProformaProjection)
		return err
	})
	if err != nil {
		return nil, err
	}
	costs, err := buildCost(lines)
	if err != nil {
		return nil, fmt.Errorf("readmodel: cost report of %s: %w", month, err)
	}
	billable, proforma := apd.New(0, 0), apd.New(0, 0)
	for _, c := range costs {
		row, err := c.proto(month)
		if err != nil {
			return nil, err
		}
		resp.Rows = append(resp.Rows, row)
		if billable, err = domain.AddDecimal(billable, c.billable); err != nil {
			return nil, err
		}
		if proforma, err = domain.AddDecimal(proforma, c.proforma); err != nil {
			return nil, err
		}
	}
	var margin apd.Decimal
	if _, err := exactCtx.Sub(&margin, proforma, billable); err != nil {
		return nil, err
	}
	resp.BillableTotal = domain.CanonicalDecimal(billable)
	resp.ProformaTotal = domain.CanonicalDecimal(proforma)
	resp.MarginTotal = domain.CanonicalDecimal(&margin)
	if resp.MarginPercentage, err = MarginPercentage(&margin, proforma); err != nil {
		return nil, err
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Digests (R2).

// Read model names of the proforma projection in digests.
const (
	// DigestProforma is the pro forma view of a month (R1), custom line items included.
	DigestProforma = "proforma"
	// DigestCost is the cost report of a month (P6).
	DigestCost = "cost"
)

const (
	proformaDigestHeader = "billing.v1 proforma digest 1\n"
	costDigestHeader     = "billing.v1 cost digest 1\n"
)

// proformaDigests fingerprints a month's pro forma lines and cost report:
// SHA-256 over the canonical sorted lines (every field, billable cost
// included, so the cost report's inputs are covered line by line), with exact
// totals.
func proformaDigests(month string, lines []*proformaLine) ([]*billingv1.ReadModelDigest, error) {
	h := newDigest(proformaDigestHeader)
	list, billable, proforma := apd.New(0, 0), apd.New(0, 0), apd.New(0, 0)
	var records uint64
	var err error
	for _, l := range sortLines(lines) {
		h.add(l.owner, l.group, l.account, l.service, l.item, domain.CanonicalDecimal(l.list),
			domain.CanonicalDecimal(l.billable), domain.CanonicalDecimal(l.proforma), strconv.FormatUint(l.records, 10))
		if list, err = domain.AddDecimal(list, l.list); err != nil {
			return nil, err
		}
		if billable, err = domain.AddDecimal(billable, l.billable); err != nil {
			return nil, err
		}
		if proforma, err = domain.AddDecimal(proforma, l.proforma); err != nil {
			return nil, err
		}
		records += l.records
	}
	pd := &billingv1.ReadModelDigest{Name: DigestProforma, Digest: h.sum(), Rows: uint64(len(lines)), Totals: map[string]string{
		"list_cost": domain.CanonicalDecimal(list), "billable_cost": domain.CanonicalDecimal(billable),
		"proforma_cost": domain.CanonicalDecimal(proforma), "records": strconv.FormatUint(records, 10),
	}}
	costs, err := buildCost(lines)
	if err != nil {
		return nil, err
	}
	ch := newDigest(costDigestHeader)
	margin := apd.New(0, 0)
	for _, c := range costs {
		row, err := c.proto(month)
		if err != nil {
			return nil, err
		}
		ch.add(row.GetOwnerAccountId(), row.GetBillingGroupId(), row.GetBillableCost(), row.GetProformaCost(),
			row.GetMargin(), row.GetMarginPercentage())
		if margin, err = domain.AddDecimal(margin, c.margin); err != nil {
			return nil, err
		}
	}
	cd := &billingv1.ReadModelDigest{Name: DigestCost, Digest: ch.sum(), Rows: uint64(len(costs)), Totals: map[string]string{
		"billable_cost": domain.CanonicalDecimal(billable), "proforma_cost": domain.CanonicalDecimal(proforma),
		"margin": domain.CanonicalDecimal(margin),
	}}
	return []*billingv1.ReadModelDigest{pd, cd}, nil
}

// ProformaDigests computes the "proforma" and "cost" digests of month from
// the tables of db, from one snapshot, each carrying the proforma projection's
// checkpoint (ReadModelDigest.checkpoint: `billctl replay --verify` replays
// them up to it). billingd's QueryService.MonthDigest adds them to MonthDigest's;
// the replay calls it on its scratch database, so the live tables and the
// replay are fingerprinted by the same code.
func (db *DB) ProformaDigests(ctx context.Context, month string) ([]*billingv1.ReadModelDigest, error) {
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	var out []*billingv1.ReadModelDigest
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = proformaDigestsTx(ctx, tx, month)
		return err
	})
	return out, err
}

func proformaDigestsTx(ctx context.Context, tx *sql.Tx, month string) ([]*billingv1.ReadModelDigest, error) {
	lines, err := monthLines(ctx, tx, month, "", "")
	if err != nil {
		return nil, err
	}
	ds, err := proformaDigests(month, lines)
	if err != nil {
		return nil, fmt.Errorf("readmodel: digest pro forma of %s: %w", month, err)
	}
	cp, err := readCheckpoint(ctx, tx, ProformaProjection)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		d.Checkpoint = cp
	}
	return ds, nil
}
