package domain

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

const tokenHash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"

// ---------------------------------------------------------------------------
// A1: tokens.

func TestA1_TokenIsCreatedWithItsHashOnly(t *testing.T) {
	pricingWorld(t).When(&billingv1.CreateToken{TokenId: "tok-1", Name: "partner", Role: RolePayer, AccountId: payerA, TokenSha256: tokenHash}).Then(
		Change{Stream: "billing.token.tok-1", Events: evs(&billingv1.TokenCreated{TokenId: "tok-1", Name: "partner", Role: RolePayer, AccountId: payerA, TokenSha256: tokenHash})})
}

func TestA1_TokenRules(t *testing.T) {
	tok := func(mod func(*billingv1.CreateToken)) *billingv1.CreateToken {
		c := &billingv1.CreateToken{TokenId: "tok-1", Name: "n", Role: RoleSource, AccountId: sourceB, TokenSha256: tokenHash}
		mod(c)
		return c
	}
	tests := []struct {
		name      string
		cmd       *billingv1.CreateToken
		code      Code
		fragments []string
	}{
		{"unknown role", tok(func(c *billingv1.CreateToken) { c.Role = "root" }), CodeInvalidArgument, []string{`role "root"`, "admin, payer, source, auditor, ingest"}},
		{"source needs an account", tok(func(c *billingv1.CreateToken) { c.AccountId = "" }), CodeInvalidArgument, []string{"a source token acts for one organization"}},
		{"source account is not registered", tok(func(c *billingv1.CreateToken) { c.AccountId = "999999999999" }), CodeNotFound, []string{"source organization 999999999999 is not registered"}},
		{"a member account is not an organization", tok(func(c *billingv1.CreateToken) { c.AccountId = acctB3 }), CodeInvalidArgument, []string{"member account of organization 222222222222"}},
		{"auditor takes no account", tok(func(c *billingv1.CreateToken) { c.Role = RoleAuditor }), CodeInvalidArgument, []string{"acts for no account"}},
		{"hash must be hex SHA-256", tok(func(c *billingv1.CreateToken) { c.TokenSha256 = "blt_clear-token" }), CodeInvalidArgument, []string{"token_sha256"}},
		{"hash must be lower case", tok(func(c *billingv1.CreateToken) { c.TokenSha256 = strings.ToUpper(tokenHash) }), CodeInvalidArgument, []string{"lower-case"}},
		{"name required", tok(func(c *billingv1.CreateToken) { c.Name = "" }), CodeInvalidArgument, []string{"name"}},
		{"bad id", tok(func(c *billingv1.CreateToken) { c.TokenId = "a.b" }), CodeInvalidArgument, []string{"token_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pricingWorld(t).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
	t.Run("ids are unique", func(t *testing.T) {
		pricingWorld(t).Do(tok(func(*billingv1.CreateToken) {})).
			When(tok(func(c *billingv1.CreateToken) { c.Role, c.AccountId = RoleIngest, "" })).ThenError(CodeAlreadyExists, "tok-1")
	})
}

func TestA1_TokenRevocation(t *testing.T) {
	s := pricingWorld(t).Do(&billingv1.CreateToken{TokenId: "tok-1", Name: "ingest", Role: RoleIngest, TokenSha256: tokenHash})
	s.When(&billingv1.RevokeToken{TokenId: "tok-1", Reason: "leaked"}).Then(
		Change{Stream: "billing.token.tok-1", Events: evs(&billingv1.TokenRevoked{TokenId: "tok-1", Reason: "leaked"})})
	if tk := FoldToken(s.w[TokenStream("tok-1")]); !tk.Revoked() || tk.RevokedReason() != "leaked" || tk.SHA256() != tokenHash || tk.Role() != RoleIngest {
		t.Fatalf("token state %+v", tk)
	}
	s.When(&billingv1.RevokeToken{TokenId: "tok-1"}).ThenError(CodeFailedPrecondition, "already revoked")
	s.When(&billingv1.RevokeToken{TokenId: "tok-2"}).ThenError(CodeNotFound, "tok-2")
}

// ---------------------------------------------------------------------------
// A2: billing views.

// viewWorld is pricingWorld plus C transferred to A too (rt-2, so the transfer
// group tbg-rt-2 holds C and C2) and a billing group bg-mixed of A holding A's
// own member account A2.
func viewWorld(t *testing.T) *scenario {
	t.Helper()
	return pricingWorld(t).Do(invite("rt-2", payerA, orgC, "2026-09"), accept("rt-2")).
		Do(&billingv1.CreateBillingGroup{BillingGroupId: "bg-mixed", OwnerAccountId: payerA, Name: "mixed", PrimaryAccountId: acctA2, AccountIds: []string{acctA2}, PricingPlanId: "BASIC"})
}

func TestA2_CreateBillingViewRecordsACanonicalFilter(t *testing.T) {
	s := viewWorld(t)
	s.When(&billingv1.CreateBillingView{BillingViewId: "bv-group", OwnerAccountId: payerA, Type: "BILLING_GROUP", Name: "B's group", BillingGroupId: "tbg-rt-1"}).Then(
		Change{Stream: "billing.view.bv-group", Events: evs(&billingv1.BillingViewCreated{BillingViewId: "bv-group", OwnerAccountId: payerA,
			Type: billingv1.BillingViewType_BILLING_VIEW_TYPE_BILLING_GROUP, Name: "B's group", BillingGroupId: "tbg-rt-1"})})
	s.When(&billingv1.CreateBillingView{BillingViewId: "bv-b", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-group"},
		Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB4, acctB3}, Tags: []*billingv1.TagFilter{{Key: "team", Values: []string{"web", "api", "web"}}, {Key: "env", Values: []string{"prod"}}}}}).Then(
		Change{Stream: "billing.view.bv-b", Events: evs(&billingv1.BillingViewCreated{BillingViewId: "bv-b", OwnerAccountId: payerA,
			Type: billingv1.BillingViewType_BILLING_VIEW_TYPE_CUSTOM, SourceViewIds: []string{"bv-group"},
			Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB3, acctB4}, Tags: []*billingv1.TagFilter{{Key: "env", Values: []string{"prod"}}, {Key: "team", Values: []string{"api", "web"}}}}})})
}

func TestA2_CreateBillingViewRules(t *testing.T) {
	view := func(mod func(*billingv1.CreateBillingView)) *billingv1.CreateBillingView {
		c := &billingv1.CreateBillingView{BillingViewId: "bv-1", OwnerAccountId: payerA, Type: "BILLING_GROUP", BillingGroupId: "tbg-rt-1"}
		mod(c)
		return c
	}
	tests := []struct {
		name      string
		cmd       *billingv1.CreateBillingView
		code      Code
		fragments []string
	}{
		{"type required", view(func(c *billingv1.CreateBillingView) { c.Type = "" }), CodeInvalidArgument, []string{"type is required"}},
		{"unknown type", view(func(c *billingv1.CreateBillingView) { c.Type = "PRIMARY" }), CodeInvalidArgument, []string{`"PRIMARY"`}},
		{"group view needs its group", view(func(c *billingv1.CreateBillingView) { c.BillingGroupId = "" }), CodeInvalidArgument, []string{"billing_group_id is required"}},
		{"unknown group", view(func(c *billingv1.CreateBillingView) { c.BillingGroupId = "bg-none" }), CodeNotFound, []string{"billing group bg-none"}},
		{"another payer's group", view(func(c *billingv1.CreateBillingView) { c.OwnerAccountId = orgC }), CodePermissionDenied, []string{"belongs to 111111111111"}},
		{"group view takes no sources", view(func(c *billingv1.CreateBillingView) { c.SourceViewIds = []string{"bv-x"} }), CodeInvalidArgument, []string{"source_view_ids must be empty"}},
		{"custom view takes no group", view(func(c *billingv1.CreateBillingView) { c.Type = "CUSTOM" }), CodeInvalidArgument, []string{"billing_group_id must be empty"}},
		{"unknown source view", view(func(c *billingv1.CreateBillingView) {
			c.Type, c.BillingGroupId, c.SourceViewIds = "CUSTOM", "", []string{"bv-x"}
		}), CodeNotFound, []string{"billing view bv-x"}},
		{"bad filter account", view(func(c *billingv1.CreateBillingView) {
			c.Filter = &billingv1.BillingViewFilter{AccountIds: []string{"12"}}
		}), CodeInvalidArgument, []string{"filter.account_ids"}},
		{"duplicate filter account", view(func(c *billingv1.CreateBillingView) {
			c.Filter = &billingv1.BillingViewFilter{AccountIds: []string{acctB3, acctB3}}
		}), CodeInvalidArgument, []string{"twice"}},
		{"tag without values", view(func(c *billingv1.CreateBillingView) {
			c.Filter = &billingv1.BillingViewFilter{Tags: []*billingv1.TagFilter{{Key: "team"}}}
		}), CodeInvalidArgument, []string{`tag "team" needs`}},
		{"owner not registered", view(func(c *billingv1.CreateBillingView) { c.OwnerAccountId = "999999999999" }), CodeNotFound, []string{"owner organization 999999999999"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			viewWorld(t).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
	t.Run("ids are never reused", func(t *testing.T) {
		viewWorld(t).Do(view(func(*billingv1.CreateBillingView) {})).When(view(func(*billingv1.CreateBillingView) {})).ThenError(CodeAlreadyExists, "bv-1")
	})
	t.Run("a source view of another owner", func(t *testing.T) {
		viewWorld(t).Do(&billingv1.CreateBillingView{BillingViewId: "bv-a", OwnerAccountId: payerA, Type: "CUSTOM"}).
			When(&billingv1.CreateBillingView{BillingViewId: "bv-c", OwnerAccountId: orgC, Type: "CUSTOM", SourceViewIds: []string{"bv-a"}}).
			ThenError(CodePermissionDenied, "source view bv-a belongs to 111111111111")
	})
}

func TestA2_GrantBillingViewOnlyToTheOrganizationItIsConfinedTo(t *testing.T) {
	s := viewWorld(t).Do(
		&billingv1.CreateBillingView{BillingViewId: "bv-group", OwnerAccountId: payerA, Type: "BILLING_GROUP", BillingGroupId: "tbg-rt-1"},
		&billingv1.CreateBillingView{BillingViewId: "bv-b", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-group"},
			Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB3}}},
		&billingv1.CreateBillingView{BillingViewId: "bv-bc", OwnerAccountId: payerA, Type: "CUSTOM",
			Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB3, acctC2}}},
		&billingv1.CreateBillingView{BillingViewId: "bv-union", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-b"}},
	)
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: sourceB}).Then(
		Change{Stream: "billing.view.bv-b", Events: evs(&billingv1.BillingViewGranted{BillingViewId: "bv-b", OwnerAccountId: payerA, AccountId: sourceB})})
	if b := FoldBillingView(s.w[BillingViewStream("bv-b")]); !b.GrantedTo(sourceB) || b.GrantedTo(orgC) {
		t.Fatalf("grants %v", b.Grantees())
	}
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: sourceB}).ThenError(CodeAlreadyExists, "already granted")
	// A view bounded by its sources' filters is confined too.
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-union", AccountId: sourceB}).ThenOK()
	// A2: never another organization's accounts, never an unbounded group.
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-bc", AccountId: sourceB}).ThenError(CodeFailedPrecondition, "account 333333333334", "not an account of organization 222222222222")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: orgC}).ThenError(CodeFailedPrecondition, "account 222222222223")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-group", AccountId: sourceB}).ThenError(CodeFailedPrecondition, "not confined")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: payerA}).ThenError(CodeInvalidArgument, "owns billing view")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-none", AccountId: sourceB}).ThenError(CodeNotFound, "bv-none")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: acctB3}).ThenError(CodeInvalidArgument, "member account")
}

func TestA2_ResolveBillingViewSelectsRows(t *testing.T) {
	s := viewWorld(t).Do(
		&billingv1.CreateBillingView{BillingViewId: "bv-group", OwnerAccountId: payerA, Type: "BILLING_GROUP", BillingGroupId: "tbg-rt-1"},
		&billingv1.CreateBillingView{BillingViewId: "bv-mixed", OwnerAccountId: payerA, Type: "BILLING_GROUP", BillingGroupId: "bg-mixed"},
		&billingv1.CreateBillingView{BillingViewId: "bv-b3", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-group", "bv-mixed"},
			Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB3, acctB4}}},
		&billingv1.CreateBillingView{BillingViewId: "bv-all", OwnerAccountId: payerA, Type: "CUSTOM"},
		&billingv1.CreateBillingView{BillingViewId: "bv-tags", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-all"},
			Filter: &billingv1.BillingViewFilter{Tags: []*billingv1.TagFilter{{Key: "team", Values: []string{"web"}}}}},
	)
	type row struct{ group, account string }
	tests := []struct {
		view   string
		tagged bool
		yes    []row
		no     []row
	}{
		{"bv-group", false, []row{{"tbg-rt-1", sourceB}, {"tbg-rt-1", acctB3}}, []row{{"bg-mixed", acctA2}, {"", acctB3}}},
		{"bv-b3", false, []row{{"tbg-rt-1", acctB3}, {"tbg-rt-1", acctB4}}, []row{{"tbg-rt-1", sourceB}, {"bg-mixed", acctA2}, {"tbg-rt-2", acctC2}, {"", acctB3}}},
		{"bv-mixed", false, []row{{"bg-mixed", acctA2}}, []row{{"tbg-rt-1", acctB3}}},
		{"bv-all", false, []row{{"tbg-rt-2", acctC2}, {"", payerA}}, nil},
		{"bv-tags", true, []row{{"tbg-rt-2", acctC2}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.view, func(t *testing.T) {
			_, sel, err := ResolveBillingView(s.w, tc.view)
			if err != nil {
				t.Fatal(err)
			}
			if sel.Owner != payerA || sel.TagFiltered != tc.tagged {
				t.Fatalf("selection owner %s tagged %v", sel.Owner, sel.TagFiltered)
			}
			for _, r := range tc.yes {
				if !sel.Match(r.group, r.account) {
					t.Errorf("%s does not select %v", tc.view, r)
				}
			}
			for _, r := range tc.no {
				if sel.Match(r.group, r.account) {
					t.Errorf("%s selects %v", tc.view, r)
				}
			}
		})
	}
	if _, _, err := ResolveBillingView(s.w, "bv-nope"); CodeOf(err) != CodeNotFound {
		t.Fatalf("unknown view: %v", err)
	}
}

// revokeWorld is viewWorld with A's views: bv-b (B's account B3, granted to
// B), bv-union (built on bv-b, granted to B), bv-all (not granted) and C's
// view bv-c (built on nothing).
func revokeWorld(t *testing.T) *scenario {
	t.Helper()
	return viewWorld(t).Do(
		&billingv1.CreateBillingView{BillingViewId: "bv-b", OwnerAccountId: payerA, Type: "CUSTOM", Filter: &billingv1.BillingViewFilter{AccountIds: []string{acctB3}}},
		&billingv1.CreateBillingView{BillingViewId: "bv-union", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-b"}},
		&billingv1.CreateBillingView{BillingViewId: "bv-all", OwnerAccountId: payerA, Type: "CUSTOM"},
		&billingv1.CreateBillingView{BillingViewId: "bv-c", OwnerAccountId: orgC, Type: "CUSTOM"},
		&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: sourceB},
		&billingv1.GrantBillingView{BillingViewId: "bv-union", AccountId: sourceB},
	)
}

func TestA2_RevokeBillingViewEndsOneGrant(t *testing.T) {
	s := revokeWorld(t)
	s.When(&billingv1.RevokeBillingView{BillingViewId: "bv-b", AccountId: sourceB}).Then(
		Change{Stream: "billing.view.bv-b", Events: evs(&billingv1.BillingViewRevoked{BillingViewId: "bv-b", OwnerAccountId: payerA, AccountId: sourceB})})
	b := FoldBillingView(s.w[BillingViewStream("bv-b")])
	if b.GrantedTo(sourceB) || len(b.Grantees()) != 0 || !b.Live() || b.GrantedWhenDeleted(sourceB) {
		t.Fatalf("after revoke: grantees %v live %v", b.Grantees(), b.Live())
	}
	// The other view's grant is untouched.
	if u := FoldBillingView(s.w[BillingViewStream("bv-union")]); !u.GrantedTo(sourceB) {
		t.Fatalf("bv-union lost its grant: %v", u.Grantees())
	}
	// Revoked twice: the grant is already gone.
	s.When(&billingv1.RevokeBillingView{BillingViewId: "bv-b", AccountId: sourceB}).ThenError(CodeFailedPrecondition,
		"billing view bv-b is not granted to 222222222222 (it is granted to no organization)")
	// The owner may grant it again.
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-b", AccountId: sourceB}).Then(
		Change{Stream: "billing.view.bv-b", Events: evs(&billingv1.BillingViewGranted{BillingViewId: "bv-b", OwnerAccountId: payerA, AccountId: sourceB})})
	if b := FoldBillingView(s.w[BillingViewStream("bv-b")]); !b.GrantedTo(sourceB) || len(b.Grantees()) != 1 {
		t.Fatalf("after re-grant: grantees %v", b.Grantees())
	}
}

func TestA2_RevokeBillingViewRules(t *testing.T) {
	tests := []struct {
		name      string
		cmd       *billingv1.RevokeBillingView
		code      Code
		fragments []string
	}{
		{"not granted to that organization", &billingv1.RevokeBillingView{BillingViewId: "bv-b", AccountId: orgC}, CodeFailedPrecondition,
			[]string{"billing view bv-b is not granted to 333333333333 (it is granted to 222222222222)"}},
		{"granted to nobody", &billingv1.RevokeBillingView{BillingViewId: "bv-all", AccountId: sourceB}, CodeFailedPrecondition,
			[]string{"billing view bv-all is not granted to 222222222222 (it is granted to no organization)"}},
		{"the owner holds no grant", &billingv1.RevokeBillingView{BillingViewId: "bv-b", AccountId: payerA}, CodeFailedPrecondition,
			[]string{"not granted to 111111111111"}},
		{"unknown view", &billingv1.RevokeBillingView{BillingViewId: "bv-none", AccountId: sourceB}, CodeNotFound, []string{"billing view bv-none does not exist"}},
		{"bad view id", &billingv1.RevokeBillingView{BillingViewId: "bv.b", AccountId: sourceB}, CodeInvalidArgument, []string{"billing_view_id"}},
		{"account required", &billingv1.RevokeBillingView{BillingViewId: "bv-b"}, CodeInvalidArgument, []string{"account_id"}},
		{"bad account", &billingv1.RevokeBillingView{BillingViewId: "bv-b", AccountId: "2222"}, CodeInvalidArgument, []string{"account_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			revokeWorld(t).When(tc.cmd).ThenError(tc.code, tc.fragments...)
		})
	}
	t.Run("a deleted view", func(t *testing.T) {
		revokeWorld(t).Do(&billingv1.DeleteBillingView{BillingViewId: "bv-union"}).
			When(&billingv1.RevokeBillingView{BillingViewId: "bv-union", AccountId: sourceB}).ThenError(CodeNotFound, "billing view bv-union was deleted")
	})
}

func TestA2_DeleteBillingViewEndsEveryGrantForEver(t *testing.T) {
	s := revokeWorld(t)
	s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-union"}).Then(
		Change{Stream: "billing.view.bv-union", Events: evs(&billingv1.BillingViewDeleted{BillingViewId: "bv-union", OwnerAccountId: payerA, RevokedAccountIds: []string{sourceB}})})
	b := FoldBillingView(s.w[BillingViewStream("bv-union")])
	if !b.Exists() || b.Live() || !b.Deleted() || b.GrantedTo(sourceB) || len(b.Grantees()) != 0 || !b.GrantedWhenDeleted(sourceB) || b.GrantedWhenDeleted(orgC) || b.Owner() != payerA {
		t.Fatalf("after delete: exists %v live %v deleted %v grantees %v", b.Exists(), b.Live(), b.Deleted(), b.Grantees())
	}
	// Gone for every use, and its id is never reused.
	s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-union"}).ThenError(CodeNotFound, "billing view bv-union was deleted")
	s.When(&billingv1.GrantBillingView{BillingViewId: "bv-union", AccountId: sourceB}).ThenError(CodeNotFound, "billing view bv-union was deleted")
	s.When(&billingv1.CreateBillingView{BillingViewId: "bv-union", OwnerAccountId: payerA, Type: "CUSTOM"}).ThenError(CodeAlreadyExists,
		"billing view bv-union existed and was deleted; view ids are never reused")
	s.When(&billingv1.CreateBillingView{BillingViewId: "bv-new", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-union"}}).ThenError(CodeNotFound,
		"billing view bv-union was deleted")
	if _, _, err := ResolveBillingView(s.w, "bv-union"); CodeOf(err) != CodeNotFound {
		t.Fatalf("resolve a deleted view: %v", err)
	}
	// A deleted CUSTOM view no longer holds its source: bv-b can go now.
	s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-b"}).Then(
		Change{Stream: "billing.view.bv-b", Events: evs(&billingv1.BillingViewDeleted{BillingViewId: "bv-b", OwnerAccountId: payerA, RevokedAccountIds: []string{sourceB}})})
	// A view granted to nobody ends no grant.
	s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-all"}).Then(
		Change{Stream: "billing.view.bv-all", Events: evs(&billingv1.BillingViewDeleted{BillingViewId: "bv-all", OwnerAccountId: payerA})})
}

func TestA2_DeleteBillingViewRules(t *testing.T) {
	t.Run("while live CUSTOM views use it as a source", func(t *testing.T) {
		s := revokeWorld(t).Do(
			&billingv1.CreateBillingView{BillingViewId: "bv-also", OwnerAccountId: payerA, Type: "CUSTOM", SourceViewIds: []string{"bv-all", "bv-b"}},
		)
		s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-b"}).ThenError(CodeFailedPrecondition,
			"billing view bv-b is a source view of live CUSTOM view(s) bv-also, bv-union of 111111111111; delete them first")
		s.When(&billingv1.DeleteBillingView{BillingViewId: "bv-all"}).ThenError(CodeFailedPrecondition, "source view of live CUSTOM view(s) bv-also of")
		if b := FoldBillingView(s.w[BillingViewStream("bv-b")]); !b.Live() || !b.GrantedTo(sourceB) {
			t.Fatalf("a rejected delete changed bv-b: live %v grantees %v", b.Live(), b.Grantees())
		}
	})
	t.Run("unknown view", func(t *testing.T) {
		revokeWorld(t).When(&billingv1.DeleteBillingView{BillingViewId: "bv-none"}).ThenError(CodeNotFound, "billing view bv-none does not exist")
	})
	t.Run("bad view id", func(t *testing.T) {
		revokeWorld(t).When(&billingv1.DeleteBillingView{}).ThenError(CodeInvalidArgument, "billing_view_id")
	})
	t.Run("needs a view that can read every view", func(t *testing.T) {
		s := revokeWorld(t)
		_, err := Decide(struct{ View }{s.w}, &billingv1.DeleteBillingView{BillingViewId: "bv-all"}, s.env())
		if err == nil || CodeOf(err) != "" || !strings.Contains(err.Error(), BillingViewFamily) {
			t.Fatalf("delete through a view without FamilyReader: %v", err)
		}
	})
}

func TestA2_AllBillingViewsListsEveryViewByID(t *testing.T) {
	s := revokeWorld(t).Do(&billingv1.DeleteBillingView{BillingViewId: "bv-all"}, &billingv1.RevokeBillingView{BillingViewId: "bv-union", AccountId: sourceB})
	views, err := AllBillingViews(s.w)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		id, owner, typ string
		sources        []string
		accounts       []string
		grantees       []string
		deleted        bool
	}
	var got []row
	for _, b := range views {
		got = append(got, row{b.ID(), b.Owner(), b.Type(), b.SourceViewIDs(), b.Filter().GetAccountIds(), b.Grantees(), b.Deleted()})
	}
	want := []row{
		{"bv-all", payerA, ViewCustom, nil, nil, nil, true},
		{"bv-b", payerA, ViewCustom, nil, []string{acctB3}, []string{sourceB}, false},
		{"bv-c", orgC, ViewCustom, nil, nil, nil, false},
		{"bv-union", payerA, ViewCustom, []string{"bv-b"}, nil, nil, false},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(row{}), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("views (-want +got):\n%s", diff)
	}
	if _, err := AllBillingViews(struct{ View }{s.w}); err == nil {
		t.Fatal("AllBillingViews through a view that cannot read a family")
	}
}

func TestA2_BillingViewsAreADecisionFamily(t *testing.T) {
	if f := DecisionFamily(BillingViewStream("bv-1")); f != BillingViewFamily {
		t.Fatalf("DecisionFamily(view stream) = %q", f)
	}
	for _, stream := range []string{OrgStream(payerA), TransferStream("rt-1"), UsageStream("2026-09", 7), "billing.viewer.x"} {
		if f := DecisionFamily(stream); f != "" {
			t.Errorf("DecisionFamily(%s) = %q, want none", stream, f)
		}
	}
	fams := GuardFamilies()
	if !slices.Contains(fams, BillingViewFamily) || !slices.Contains(fams, UsagePartitionFilter(7)) || len(fams) != int(UsagePartitions)+1 {
		t.Fatalf("GuardFamilies = %v", fams)
	}
}

// ---------------------------------------------------------------------------
// A2: on whose behalf a command acts.

func TestA2_CommandParty(t *testing.T) {
	s := viewWorld(t).Do(
		newRule("pr-1", "MARKUP", "GLOBAL", "10"), newPlan("pp-1", "pr-1"),
		&billingv1.CreateCustomLineItem{CustomLineItemId: "cli-1", BillingGroupId: "tbg-rt-1", Name: "fee", ChargeType: "FEE", FlatAmount: "5", StartMonth: "2026-09"},
		&billingv1.CreateBillingView{BillingViewId: "bv-1", OwnerAccountId: payerA, Type: "CUSTOM"},
		&billingv1.CreateBillingView{BillingViewId: "bv-gone", OwnerAccountId: payerA, Type: "CUSTOM"},
		&billingv1.DeleteBillingView{BillingViewId: "bv-gone"},
	)
	payer := func(a string) Party { return Party{Role: PartyPayer, Account: a} }
	source := func(a string) Party { return Party{Role: PartySource, Account: a} }
	admin := Party{Role: PartyAdminOnly}
	tests := []struct {
		name string
		cmd  proto.Message
		want Party
		code Code
	}{
		{"register", &billingv1.RegisterOrganization{ManagementAccountId: "555555555555"}, admin, ""},
		{"add account", &billingv1.AddAccount{ManagementAccountId: payerA, AccountId: "555555555556"}, admin, ""},
		{"invite", invite("rt-9", orgC, sourceB, "2026-10"), payer(orgC), ""},
		{"accept", accept("rt-1"), source(sourceB), ""},
		{"decline", &billingv1.DeclineTransfer{TransferId: "rt-2"}, source(orgC), ""},
		{"cancel", &billingv1.CancelTransfer{TransferId: "rt-1"}, payer(payerA), ""},
		{"withdraw by default", withdraw("rt-1", "2026-09", ""), payer(payerA), ""},
		{"withdraw by the source", withdraw("rt-1", "2026-09", sourceB), source(sourceB), ""},
		{"expire", &billingv1.ExpireTransfer{TransferId: "rt-1"}, admin, ""},
		{"unknown transfer", accept("rt-none"), Party{}, CodeNotFound},
		{"create rule", newRule("pr-2", "MARKUP", "GLOBAL", "1"), payer(payerA), ""},
		{"update rule", &billingv1.UpdatePricingRule{PricingRuleId: "pr-1"}, payer(payerA), ""},
		{"unknown rule", &billingv1.DeletePricingRule{PricingRuleId: "pr-none"}, Party{}, CodeNotFound},
		{"associate rules", &billingv1.AssociatePricingRules{PricingPlanId: "pp-1"}, payer(payerA), ""},
		{"update transfer group", &billingv1.UpdateBillingGroup{BillingGroupId: "tbg-rt-1"}, payer(payerA), ""},
		{"create item", &billingv1.CreateCustomLineItem{BillingGroupId: "bg-mixed"}, payer(payerA), ""},
		{"delete item", &billingv1.DeleteCustomLineItem{CustomLineItemId: "cli-1"}, payer(payerA), ""},
		{"tax settings of a member account", &billingv1.SetTaxSettings{AccountId: acctB3}, payer(sourceB), ""},
		{"tax settings of an unknown account", &billingv1.SetTaxSettings{AccountId: "999999999999"}, Party{}, CodeNotFound},
		{"seller of record", &billingv1.SetSellerOfRecord{Country: "US"}, admin, ""},
		{"tax rate", &billingv1.SetTaxRate{Jurisdiction: "DE"}, admin, ""},
		{"exchange rate", &billingv1.SetExchangeRate{From: "USD", To: "EUR"}, admin, ""},
		{"invoice unit", &billingv1.CreateInvoiceUnit{OwnerAccountId: orgC}, payer(orgC), ""},
		{"unknown invoice unit", &billingv1.DeleteInvoiceUnit{InvoiceUnitId: "iu-none"}, Party{}, CodeNotFound},
		{"payment profile", &billingv1.SetPaymentProfile{PayerAccountId: payerA}, payer(payerA), ""},
		{"close", &billingv1.CloseMonth{PayerAccountId: payerA, Month: "2026-09"}, payer(payerA), ""},
		{"payment", &billingv1.RecordPayment{PayerAccountId: orgC}, payer(orgC), ""},
		{"refund", &billingv1.RefundPayment{PayerAccountId: payerA}, payer(payerA), ""},
		{"create view", &billingv1.CreateBillingView{OwnerAccountId: orgC}, payer(orgC), ""},
		{"grant view", &billingv1.GrantBillingView{BillingViewId: "bv-1"}, payer(payerA), ""},
		{"revoke view", &billingv1.RevokeBillingView{BillingViewId: "bv-1", AccountId: sourceB}, payer(payerA), ""},
		{"delete view", &billingv1.DeleteBillingView{BillingViewId: "bv-1"}, payer(payerA), ""},
		{"delete a deleted view: still its owner's", &billingv1.DeleteBillingView{BillingViewId: "bv-gone"}, payer(payerA), ""},
		{"unknown view", &billingv1.RevokeBillingView{BillingViewId: "bv-none"}, Party{}, CodeNotFound},
		{"create token", &billingv1.CreateToken{}, admin, ""},
		{"revoke token", &billingv1.RevokeToken{}, admin, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CommandParty(s.w, tc.cmd)
			if tc.code != "" {
				if CodeOf(err) != tc.code {
					t.Fatalf("err = %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Role != tc.want.Role || got.Account != tc.want.Account {
				t.Fatalf("party = %+v, want %+v", got, tc.want)
			}
			if got.Role != PartyAdminOnly && got.Subject == "" {
				t.Fatalf("party %+v names no subject", got)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// A3: a payer keeps the months it paid for.

func TestA3_PaidForFollowsTheTransferMonths(t *testing.T) {
	// A pays for B from 2026-09; B withdraws at the end of 2026-09. C (a
	// reseller) pays for D from 2026-09 and A pays for C from 2026-09: A tops
	// the chain D → C → A (T7).
	const orgD = "444444444444"
	s := pricingWorld(t).Orgs(orgD).
		Do(invite("rt-cd", orgC, orgD, "2026-09"), accept("rt-cd")).
		Do(invite("rt-ac", payerA, orgC, "2026-09"), accept("rt-ac")).
		Do(withdraw("rt-1", "2026-09", sourceB))
	tests := []struct {
		payer, source, month string
		want                 bool
	}{
		{payerA, sourceB, "2026-08", false},
		{payerA, sourceB, "2026-09", true},
		{payerA, sourceB, "2026-10", false}, // the transfer ended
		{payerA, payerA, "2026-10", true},
		{orgC, orgD, "2026-09", true},   // direct payer
		{payerA, orgD, "2026-09", true}, // bill receiver of the chain
		{orgC, sourceB, "2026-09", false},
		{payerA, "999999999999", "2026-09", false},
	}
	for _, tc := range tests {
		m, _ := ParseMonth(tc.month)
		got, err := PaidFor(s.w, tc.payer, tc.source, m)
		if err != nil || got != tc.want {
			t.Errorf("PaidFor(%s, %s, %s) = %v, %v; want %v", tc.payer, tc.source, tc.month, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		payer, source string
		want          bool
	}{{payerA, sourceB, true}, {payerA, orgD, true}, {orgC, orgD, true}, {orgC, sourceB, false}, {orgD, orgC, false}} {
		if got, err := EverPaidFor(s.w, tc.payer, tc.source); err != nil || got != tc.want {
			t.Errorf("EverPaidFor(%s, %s) = %v, %v; want %v", tc.payer, tc.source, got, err, tc.want)
		}
	}
	if ok, _ := HasTransferWith(s.w, payerA, sourceB); !ok {
		t.Error("HasTransferWith(A, B) = false")
	}
	if ok, _ := HasTransferWith(s.w, payerA, orgD); ok {
		t.Error("HasTransferWith(A, D) = true: A never invited D")
	}
}
