package api_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// viewRun numbers the runs of the tests below: they write to the shared
// access world, whose view ids are never reused (go test -count=N).
var viewRun atomic.Int64

// TestA2_RevokeAndDeleteBillingViewTakeEffectAtOnce: right after
// RevokeBillingView returns, the former grantee's ReportProforma through the
// view is PERMISSION_DENIED; the owner may grant it again; right after
// DeleteBillingView returns, it is NOT_FOUND for the owner, the admin and
// whoever held a grant, and PERMISSION_DENIED for anyone else, and the id is
// never reused. ListBillingViews follows every step.
func TestA2_RevokeAndDeleteBillingViewTakeEffectAtOnce(t *testing.T) {
	f := accessWorld(t)
	ctx := context.Background()
	id := fmt.Sprintf("bv-rw-%d", viewRun.Add(1))
	run := func(who, line string) error {
		req := &billingv1.ExecuteRequest{}
		if err := protojson.Unmarshal([]byte(strings.ReplaceAll(line, "ID", id)), req); err != nil {
			t.Fatal(err)
		}
		_, err := f.command.Execute(ctx, bearer(req, f.tokens[who]))
		return err
	}
	mustRun := func(who, line string) {
		t.Helper()
		if err := run(who, line); err != nil {
			t.Fatalf("%s as %s: %v", line, who, err)
		}
	}
	wantCode := func(what string, err error, code connect.Code, fragment string) {
		t.Helper()
		if connect.CodeOf(err) != code || !strings.Contains(fmt.Sprint(err), fragment) {
			t.Fatalf("%s: %v, want %v mentioning %q", what, err, code, fragment)
		}
	}
	report := func(who string) (*billingv1.ReportProformaResponse, error) {
		res, err := f.query.ReportProforma(ctx, bearer(&billingv1.ReportProformaRequest{Month: "2026-09", BillingViewId: id}, f.tokens[who]))
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
	// list returns the view as who lists it (nil when it is not listed).
	list := func(who string, deleted bool) *billingv1.BillingViewInfo {
		t.Helper()
		res, err := f.query.ListBillingViews(ctx, bearer(&billingv1.ListBillingViewsRequest{IncludeDeleted: deleted}, f.tokens[who]))
		if err != nil {
			t.Fatalf("ListBillingViews as %s: %v", who, err)
		}
		for _, v := range res.Msg.GetViews() {
			if v.GetBillingViewId() == id {
				return v
			}
		}
		return nil
	}

	mustRun("P", `{"create_billing_view":{"billing_view_id":"ID","owner_account_id":"111111111111","type":"CUSTOM","name":"S's member account","filter":{"account_ids":["222222222223"]}}}`)
	mustRun("P", `{"grant_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`)
	res, err := report("S")
	if err != nil || len(res.GetRows()) == 0 {
		t.Fatalf("S reads the view granted to it: %v %v", res, err)
	}
	for _, r := range res.GetRows() {
		if r.GetAccountId() != acctS2 || r.GetOwnerAccountId() != acctP {
			t.Fatalf("S's row %v", r)
		}
	}
	if v := list("S", false); v == nil || !slices.Equal(v.GetGranteeAccountIds(), []string{acctS}) {
		t.Fatalf("S lists %v", v)
	}

	// Only the owner revokes: not the grantee, not another payer.
	for _, who := range []string{"S", "Q", "T"} {
		if ok, why := isDenied(run(who, `{"revoke_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`), "Execute"); !ok {
			t.Fatalf("RevokeBillingView as %s: %s", who, why)
		}
	}
	mustRun("P", `{"revoke_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`)
	_, err = report("S")
	if ok, why := isDenied(err, "ReportProforma"); !ok {
		t.Fatalf("S right after the revocation: %s", why)
	}
	if v := list("S", true); v != nil {
		t.Fatalf("S still lists the revoked view: %v", v)
	}
	if v := list("P", false); v == nil || len(v.GetGranteeAccountIds()) != 0 || v.GetDeleted() {
		t.Fatalf("P lists %v after the revocation", v)
	}
	wantCode("revoke again", run("P", `{"revoke_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`),
		connect.CodeFailedPrecondition, "is not granted to 222222222222")

	// Granted again, it reads again.
	mustRun("P", `{"grant_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`)
	if res, err := report("S"); err != nil || len(res.GetRows()) == 0 {
		t.Fatalf("S after the new grant: %v %v", res, err)
	}

	// Deleted: gone for the owner, the admin and the grantee; a stranger
	// cannot tell it from a foreign view.
	for _, who := range []string{"S", "Q"} {
		if ok, why := isDenied(run(who, `{"delete_billing_view":{"billing_view_id":"ID"}}`), "Execute"); !ok {
			t.Fatalf("DeleteBillingView as %s: %s", who, why)
		}
	}
	mustRun("P", `{"delete_billing_view":{"billing_view_id":"ID"}}`)
	for _, who := range []string{"S", "P", "admin", "auditor"} {
		_, err := report(who)
		wantCode("ReportProforma as "+who+" right after the deletion", err, connect.CodeNotFound, "billing view "+id+" was deleted")
	}
	for _, who := range []string{"Q", "T"} {
		_, err := report(who)
		if ok, why := isDenied(err, "ReportProforma"); !ok {
			t.Fatalf("%s through a deleted view: %s", who, why)
		}
	}
	wantCode("create the id again", run("P", `{"create_billing_view":{"billing_view_id":"ID","owner_account_id":"111111111111","type":"CUSTOM"}}`),
		connect.CodeAlreadyExists, "never reused")
	wantCode("grant the deleted view", run("P", `{"grant_billing_view":{"billing_view_id":"ID","account_id":"222222222222"}}`),
		connect.CodeNotFound, "was deleted")
	wantCode("delete it again", run("P", `{"delete_billing_view":{"billing_view_id":"ID"}}`), connect.CodeNotFound, "was deleted")
	if v := list("P", false); v != nil {
		t.Fatalf("P lists the deleted view without include_deleted: %v", v)
	}
	if v := list("P", true); v == nil || !v.GetDeleted() || len(v.GetGranteeAccountIds()) != 0 || v.GetOwnerAccountId() != acctP {
		t.Fatalf("P lists the deleted view as %v", v)
	}
	if v := list("auditor", true); v == nil || !v.GetDeleted() {
		t.Fatalf("the auditor lists the deleted view as %v", v)
	}
	if v := list("S", true); v != nil {
		t.Fatalf("S lists the deleted view: %v", v)
	}
}

// TestA2_ListBillingViewsFilters: the filters of ListBillingViews, and the
// requests a payer or a source may not make.
func TestA2_ListBillingViewsFilters(t *testing.T) {
	f := accessWorld(t)
	ctx := context.Background()
	ids := func(who string, req *billingv1.ListBillingViewsRequest) []string {
		t.Helper()
		res, err := f.query.ListBillingViews(ctx, bearer(req, f.tokens[who]))
		if err != nil {
			t.Fatalf("ListBillingViews %v as %s: %v", req, who, err)
		}
		var out []string
		for _, v := range res.Msg.GetViews() {
			if strings.HasPrefix(v.GetBillingViewId(), "bv-p-") || strings.HasPrefix(v.GetBillingViewId(), "bv-q-") {
				out = append(out, v.GetBillingViewId())
			}
		}
		return out
	}
	for _, tc := range []struct {
		who  string
		req  *billingv1.ListBillingViewsRequest
		want []string
	}{
		{"admin", &billingv1.ListBillingViewsRequest{}, []string{"bv-p-all", "bv-p-s", "bv-q-t"}},
		{"admin", &billingv1.ListBillingViewsRequest{OwnerAccountId: acctQ}, []string{"bv-q-t"}},
		{"admin", &billingv1.ListBillingViewsRequest{GranteeAccountId: acctS}, []string{"bv-p-s"}},
		{"admin", &billingv1.ListBillingViewsRequest{OwnerAccountId: acctQ, GranteeAccountId: acctS}, nil},
		{"P", &billingv1.ListBillingViewsRequest{GranteeAccountId: acctS}, []string{"bv-p-s"}},
		{"S", &billingv1.ListBillingViewsRequest{OwnerAccountId: acctP}, []string{"bv-p-s"}},
		{"S", &billingv1.ListBillingViewsRequest{OwnerAccountId: acctQ}, nil},
	} {
		if got := ids(tc.who, tc.req); !slices.Equal(got, tc.want) {
			t.Errorf("ListBillingViews %v as %s = %v, want %v", tc.req, tc.who, got, tc.want)
		}
	}
	for _, tc := range []struct {
		who  string
		req  *billingv1.ListBillingViewsRequest
		deny string
	}{
		{"P", &billingv1.ListBillingViewsRequest{OwnerAccountId: acctQ}, "owner_account_id 333333333333 is not your account"},
		{"S", &billingv1.ListBillingViewsRequest{GranteeAccountId: acctT}, "grantee_account_id 444444444444 is not your organization"},
	} {
		_, err := f.query.ListBillingViews(ctx, bearer(tc.req, f.tokens[tc.who]))
		if ok, why := isDenied(err, "ListBillingViews"); !ok || !strings.Contains(err.Error(), tc.deny) {
			t.Errorf("ListBillingViews %v as %s: %v (%s)", tc.req, tc.who, err, why)
		}
	}
	_, err := f.query.ListBillingViews(ctx, bearer(&billingv1.ListBillingViewsRequest{OwnerAccountId: "12"}, f.tokens["admin"]))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), `owner_account_id "12"`) {
		t.Errorf("a malformed owner: %v", err)
	}
}
