package main

import (
	"strings"

	"connectrpc.com/connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// viewCmd groups the billing view verbs (A2). Views are created, granted,
// revoked and deleted with `billctl apply` (CreateBillingView,
// GrantBillingView, RevokeBillingView, DeleteBillingView).
type viewCmd struct {
	List viewListCmd `cmd:"" help:"List billing views: id, owner, type, name, billing group, source views, filter and grantees (QueryService.ListBillingViews)."`
}

// viewListCmd is `billctl view list [--owner ID] [--grantee ID] [--include-deleted]`.
type viewListCmd struct {
	Owner          string `help:"Only the views of this owner (payer)." placeholder:"ID"`
	Grantee        string `help:"Only the views granted to this organization." placeholder:"ID"`
	IncludeDeleted bool   `name:"include-deleted" help:"Also list deleted views (they have no grantees)."`
}

// Run prints one row per view, or with -o json
// {"views":[{"billing_view_id":…,"owner_account_id":…,"type":…,"name":…,"billing_group_id":…,"source_view_ids":[…],"filter":{…},"grantee_account_ids":[…],"deleted":…}]}.
func (c *viewListCmd) Run(a *app) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	res, err := a.queryClient().ListBillingViews(ctx, connect.NewRequest(&billingv1.ListBillingViewsRequest{
		OwnerAccountId:   strings.TrimSpace(c.Owner),
		GranteeAccountId: strings.TrimSpace(c.Grantee),
		IncludeDeleted:   c.IncludeDeleted,
	}))
	if err != nil {
		return err
	}
	if a.output == "json" {
		return writeProtoJSON(a.stdout, res.Msg)
	}
	rows := [][]string{{"BILLING_VIEW", "OWNER", "TYPE", "NAME", "BILLING_GROUP", "SOURCE_VIEWS", "ACCOUNTS", "TAGS", "GRANTEES", "DELETED"}}
	for _, v := range res.Msg.GetViews() {
		var tags []string
		for _, t := range v.GetFilter().GetTags() {
			tags = append(tags, t.GetKey()+"="+strings.Join(t.GetValues(), "|"))
		}
		deleted := ""
		if v.GetDeleted() {
			deleted = "yes"
		}
		rows = append(rows, []string{v.GetBillingViewId(), v.GetOwnerAccountId(), v.GetType(), v.GetName(), v.GetBillingGroupId(),
			strings.Join(v.GetSourceViewIds(), ","), strings.Join(v.GetFilter().GetAccountIds(), ","), strings.Join(tags, ","),
			strings.Join(v.GetGranteeAccountIds(), ","), deleted})
	}
	return writeTable(a.stdout, rows)
}
