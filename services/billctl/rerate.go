package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/cockroachdb/apd/v3"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/projections"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// rerateCmd is `billctl rerate --month M --group BG --plan ID [--dry-run]`
// (P4; issue #6 item 4).
//
// With --dry-run it replays the month's pro forma twice from the event store
// into scratch databases — as it is, and with the billing group on the other
// plan — and prints the signed difference per billing group and account;
// nothing is written. For a month the group's owner has closed, both replays
// use the configuration as of the close (R3), so the "as it is" side equals
// the pro forma of the closed month.
//
// Without --dry-run it applies the change, which only the current open month
// allows: it sends UpdateBillingGroup, and the pro forma projection re-rates
// every open month of the owner (P4).
type rerateCmd struct {
	logFlags
	Month  string `required:"" help:"Month, YYYY-MM." placeholder:"YYYY-MM"`
	Group  string `required:"" help:"Billing group to re-rate." placeholder:"BG"`
	Plan   string `required:"" help:"Pricing plan to price the group with." placeholder:"ID"`
	DryRun bool   `name:"dry-run" help:"Only show the difference; change nothing."`
}

// Run re-rates or shows the what-if.
func (c *rerateCmd) Run(a *app) error {
	m, err := domain.ParseMonth(c.Month)
	if err != nil {
		return invalid("--month %q is not a month (YYYY-MM, e.g. 2026-09)", c.Month)
	}
	if !c.DryRun {
		return c.apply(a, m)
	}
	store, closeStore, err := a.openEventStore(c.logFlags)
	if err != nil {
		return err
	}
	defer closeStore()
	before, err := projections.ReplayProforma(a.ctx, store, c.Month, "", projections.ReplayOptions{})
	if err != nil {
		return err
	}
	owner := ""
	for _, r := range before.GetRows() {
		if r.GetBillingGroupId() == c.Group {
			owner = r.GetOwnerAccountId()
		}
	}
	opts := projections.ReplayOptions{}
	closedAt := ""
	if owner != "" {
		recs, err := store.ReadStream(a.ctx, domain.MonthStream(owner, c.Month))
		if err != nil {
			return err
		}
		if len(recs) > 0 && recs[0].Event.GetMonthClosed() != nil {
			opts.AsOf = recs[0].Event.GetRecordedAt().AsTime()
			closedAt = opts.AsOf.Format(time.RFC3339)
			if before, err = projections.ReplayProforma(a.ctx, store, c.Month, owner, opts); err != nil {
				return err
			}
		}
	}
	opts.PlanOverrides = map[string]string{c.Group: c.Plan}
	after, err := projections.ReplayProforma(a.ctx, store, c.Month, owner, opts)
	if err != nil {
		return err
	}
	diff, err := rerateDiff(before, after, c.Group)
	if err != nil {
		return err
	}
	return printRerate(a, c, diff, closedAt)
}

// rerateLine is one account of the group: pro forma before and after.
type rerateLine struct {
	Group   string `json:"billing_group_id"`
	Account string `json:"account_id"`
	Before  string `json:"proforma_cost_before"`
	After   string `json:"proforma_cost_after"`
	Delta   string `json:"delta"`
}

// rerateDiff sums the pro forma of the group per account on both sides.
func rerateDiff(before, after *billingv1.ReportProformaResponse, group string) ([]rerateLine, error) {
	type sums struct{ before, after apd.Decimal }
	acc := map[string]*sums{}
	add := func(rows []*billingv1.ProformaRow, pick func(*sums) *apd.Decimal) error {
		for _, r := range rows {
			if r.GetBillingGroupId() != group {
				continue
			}
			key := r.GetAccountId()
			if key == "" {
				key = "(custom line items)"
			}
			s := acc[key]
			if s == nil {
				s = &sums{}
				acc[key] = s
			}
			d, err := domain.ParseDecimal(r.GetProformaCost())
			if err != nil {
				return err
			}
			sum, err := domain.AddDecimal(pick(s), d)
			if err != nil {
				return err
			}
			pick(s).Set(sum)
		}
		return nil
	}
	if err := add(before.GetRows(), func(s *sums) *apd.Decimal { return &s.before }); err != nil {
		return nil, err
	}
	if err := add(after.GetRows(), func(s *sums) *apd.Decimal { return &s.after }); err != nil {
		return nil, err
	}
	if len(acc) == 0 {
		return nil, domain.Reject(domain.CodeNotFound, "billing group %s has no pro forma in the month", group)
	}
	var out []rerateLine
	total := rerateLine{Group: group, Account: "TOTAL"}
	var tb, ta apd.Decimal
	for k, s := range acc {
		var neg apd.Decimal
		neg.Neg(&s.before)
		delta, err := domain.AddDecimal(&s.after, &neg)
		if err != nil {
			return nil, err
		}
		out = append(out, rerateLine{Group: group, Account: k, Before: domain.CanonicalDecimal(&s.before), After: domain.CanonicalDecimal(&s.after), Delta: signed(delta)})
		b, _ := domain.AddDecimal(&tb, &s.before)
		tb.Set(b)
		x, _ := domain.AddDecimal(&ta, &s.after)
		ta.Set(x)
	}
	slices.SortFunc(out, func(a, b rerateLine) int { return cmp.Compare(a.Account, b.Account) })
	var neg apd.Decimal
	neg.Neg(&tb)
	d, err := domain.AddDecimal(&ta, &neg)
	if err != nil {
		return nil, err
	}
	total.Before, total.After, total.Delta = domain.CanonicalDecimal(&tb), domain.CanonicalDecimal(&ta), signed(d)
	return append(out, total), nil
}

// signed renders a difference with its sign ("+1.5", "-0.25", "0").
func signed(d *apd.Decimal) string {
	s := domain.CanonicalDecimal(d)
	if d.Sign() > 0 {
		return "+" + s
	}
	return s
}

func printRerate(a *app, c *rerateCmd, lines []rerateLine, closedAt string) error {
	if a.output == "json" {
		return writeJSONLine(a.stdout, map[string]any{"month": c.Month, "billing_group_id": c.Group, "pricing_plan_id": c.Plan,
			"dry_run": true, "configuration_as_of_close": closedAt, "lines": lines})
	}
	fmt.Fprintf(a.stdout, "what if billing group %s had plan %s in %s (dry run: nothing changed)", c.Group, c.Plan, c.Month)
	if closedAt != "" {
		fmt.Fprintf(a.stdout, "; configuration as of the close at %s", closedAt)
	}
	fmt.Fprintln(a.stdout)
	rows := [][]string{{"ACCOUNT", "BEFORE", "AFTER", "DELTA"}}
	for _, l := range lines[:len(lines)-1] {
		rows = append(rows, []string{l.Account, l.Before, l.After, l.Delta})
	}
	t := lines[len(lines)-1]
	return writeTableWithFooter(a.stdout, rows, []string{t.Account, t.Before, t.After, t.Delta})
}

// apply changes the group's plan for the current open month.
func (c *rerateCmd) apply(a *app, m domain.Month) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	info, err := a.adminClient().GetServerInfo(ctx, connect.NewRequest(&billingv1.GetServerInfoRequest{}))
	if err != nil {
		return err
	}
	now, err := time.Parse(time.RFC3339Nano, info.Msg.GetNow())
	if err != nil {
		return fmt.Errorf("server clock %q: %w", info.Msg.GetNow(), err)
	}
	if cur := domain.MonthOf(now); cur != m {
		return invalid("rerate without --dry-run changes the current open month (%s) only; use --dry-run to see %s under plan %s", cur, m, c.Plan)
	}
	res, err := a.commandClient().Execute(ctx, connect.NewRequest(&billingv1.ExecuteRequest{
		Command: &billingv1.ExecuteRequest_UpdateBillingGroup{UpdateBillingGroup: &billingv1.UpdateBillingGroup{BillingGroupId: c.Group, PricingPlanId: c.Plan}},
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg.GetResult())
	}
	fmt.Fprintf(a.stdout, "billing group %s now priced with plan %s; every open month of its owner is re-rated (P4), position %d\n", c.Group, c.Plan, res.Msg.GetResult().GetPosition())
	return nil
}
