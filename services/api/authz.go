package api

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/auth"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Authorization (DESIGN §5 A2, A3) is decided here and nowhere else, in two
// steps that read one table:
//
//  1. Before the request body is read (authn.go), the role's access to the
//     procedure: an admin may call everything; for the other roles the table
//     says allow (every request), scoped (requests about the principal's own
//     data) or nothing (denied).
//  2. For scoped access, the procedure's scope function (the Connect
//     interceptor below) checks every field of the request that names an
//     account, a billing group or a billing view against the principal's own
//     data, narrows the request to it (an unfiltered query is scoped to the
//     principal's own rows), and may filter the response's rows.
//
// A denial is PERMISSION_DENIED (Connect PermissionDenied, HTTP 403) with an
// ErrorInfo naming the procedure and the field, role or value denied; it is
// never an empty success. A procedure missing from the table is admin-only,
// and a command missing from domain.CommandParty is admin-only too.

// access is what a role may do with a procedure.
type access int

const (
	// denied: the role may not call the procedure (the zero value).
	denied access = iota
	// allowed: the role may call the procedure with any request.
	allowed
	// scoped: the role may call the procedure about its own data only; the
	// procedure's scope function checks and narrows each request.
	scoped
)

// MetricsProcedure is the name under which the table authorizes GET /metrics.
const MetricsProcedure = "/metrics"

// policy is the table: procedure → role → access. An admin may call
// everything and is not listed. Keep README "Access" in step.
var policy = map[string]map[string]access{
	billingv1connect.CommandServiceExecuteProcedure: {auth.RolePayer: scoped, auth.RoleSource: scoped},

	billingv1connect.QueryServiceListTransfersProcedure:    {auth.RoleAuditor: allowed, auth.RolePayer: scoped, auth.RoleSource: scoped},
	billingv1connect.QueryServiceReportBillableProcedure:   {auth.RoleAuditor: allowed, auth.RolePayer: scoped},
	billingv1connect.QueryServiceMonthDigestProcedure:      {auth.RoleAuditor: allowed},
	billingv1connect.QueryServiceReportProformaProcedure:   {auth.RoleAuditor: allowed, auth.RolePayer: scoped, auth.RoleSource: scoped},
	billingv1connect.QueryServiceReportCostProcedure:       {auth.RoleAuditor: allowed, auth.RolePayer: scoped},
	billingv1connect.QueryServiceReportInvoicesProcedure:   {auth.RoleAuditor: allowed, auth.RolePayer: scoped},
	billingv1connect.QueryServiceReportPaymentsProcedure:   {auth.RoleAuditor: allowed, auth.RolePayer: scoped},
	billingv1connect.QueryServiceReportTaxProcedure:        {auth.RoleAuditor: allowed, auth.RolePayer: scoped},
	billingv1connect.QueryServiceListBillingViewsProcedure: {auth.RoleAuditor: allowed, auth.RolePayer: scoped, auth.RoleSource: scoped},

	// POST /v1/usage is authorized as IngestBatch; NATS ingestion applies the
	// same rule (services/ingest).
	billingv1connect.UsageServiceIngestBatchProcedure:        {auth.RoleIngest: allowed},
	billingv1connect.UsageServiceListDeadLettersProcedure:    {auth.RoleAuditor: allowed},
	billingv1connect.UsageServiceRedriveDeadLettersProcedure: {},

	billingv1connect.AdminServiceSetClockProcedure: {},
	// Every role may ask where to publish usage and what time the ledger says.
	billingv1connect.AdminServiceGetServerInfoProcedure: {auth.RoleAuditor: allowed, auth.RolePayer: allowed, auth.RoleSource: allowed, auth.RoleIngest: allowed},
	billingv1connect.AdminServiceCreateTokenProcedure:   {},
	billingv1connect.AdminServiceListTokensProcedure:    {},
	billingv1connect.AdminServiceRevokeTokenProcedure:   {},

	MetricsProcedure: {auth.RoleAuditor: allowed},
}

// roleAccess returns the role's access to a procedure.
func roleAccess(procedure, role string) access {
	if role == auth.RoleAdmin {
		return allowed
	}
	return policy[procedure][role]
}

// PolicyTable returns, per procedure of the table, the roles that may call it
// and how ("allowed" or "scoped"), admin included; for documentation and tests.
func PolicyTable() map[string]map[string]string {
	out := map[string]map[string]string{}
	for proc, roles := range policy {
		row := map[string]string{auth.RoleAdmin: "allowed"}
		for role, a := range roles {
			switch a {
			case allowed:
				row[role] = "allowed"
			case scoped:
				row[role] = "scoped"
			}
		}
		out[proc] = row
	}
	return out
}

// checkRole is step 1: the role's access to the procedure.
func checkRole(p auth.Principal, procedure string) error {
	if roleAccess(procedure, p.Role) != denied {
		return nil
	}
	var may []string
	for role, a := range policy[procedure] {
		if a != denied {
			may = append(may, role)
		}
	}
	sort.Strings(may)
	return domain.Reject(domain.CodePermissionDenied, "%s is not allowed for the %s role (token %q); it is for %s",
		operation(procedure, nil), p.Role, p.Name, strings.Join(append([]string{auth.RoleAdmin}, may...), ", "))
}

// responseFilter narrows a response in place.
type responseFilter func(res any) error

// scopeFunc is step 2 for one procedure: it checks a scoped principal's
// request (msg, which it may narrow in place) and returns an optional filter
// for the response.
type scopeFunc func(ctx context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error)

// scopes holds the scope function of every procedure some role has scoped access to.
var scopes = map[string]scopeFunc{
	billingv1connect.CommandServiceExecuteProcedure:        scopeExecute,
	billingv1connect.QueryServiceListTransfersProcedure:    scopeListTransfers,
	billingv1connect.QueryServiceReportBillableProcedure:   scopeBillable,
	billingv1connect.QueryServiceReportProformaProcedure:   scopeProforma,
	billingv1connect.QueryServiceReportCostProcedure:       scopeCost,
	billingv1connect.QueryServiceReportInvoicesProcedure:   scopeInvoices,
	billingv1connect.QueryServiceReportPaymentsProcedure:   scopePayments,
	billingv1connect.QueryServiceReportTaxProcedure:        scopeTax,
	billingv1connect.QueryServiceListBillingViewsProcedure: scopeListBillingViews,
}

// authorizer is the Connect interceptor of step 2. It runs inside the error
// mapper, so its rejections are answered like any handler's.
type authorizer struct {
	// ledger reads organizations, transfers, billing groups and views.
	ledger domain.View
}

var _ connect.Interceptor = (*authorizer)(nil)

// WrapUnary implements connect.Interceptor.
func (z *authorizer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		procedure := req.Spec().Procedure
		p, ok := auth.FromContext(ctx)
		if !ok {
			return nil, fmt.Errorf("authorize %s: no principal in the request context", procedure)
		}
		// Step 1 again, so that a handler mounted without the HTTP middleware
		// still fails closed.
		if err := checkRole(p, procedure); err != nil {
			return nil, err
		}
		if roleAccess(procedure, p.Role) != scoped {
			return next(ctx, req)
		}
		scope := scopes[procedure]
		if scope == nil {
			return nil, domain.Reject(domain.CodePermissionDenied, "%s has no scope rule for the %s role", operation(procedure, nil), p.Role)
		}
		if z.ledger == nil {
			return nil, unimplemented("requests of " + p.Role + " tokens (no ledger view to authorize them)")
		}
		filter, err := scope(ctx, z, p, req.Any())
		if err != nil {
			return nil, err
		}
		res, err := next(ctx, req)
		if err != nil || filter == nil {
			return res, err
		}
		if err := filter(res.Any()); err != nil {
			return nil, withOp("authorize the response of "+operation(procedure, nil), err)
		}
		return res, nil
	}
}

// WrapStreamingClient implements connect.Interceptor; clients are not touched.
func (z *authorizer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor: no streaming procedure
// has a scope rule, so scoped roles are denied.
func (z *authorizer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		p, _ := auth.FromContext(ctx)
		if roleAccess(conn.Spec().Procedure, p.Role) != allowed {
			return domain.Reject(domain.CodePermissionDenied, "%s is not allowed for the %s role", operation(conn.Spec().Procedure, nil), p.Role)
		}
		return next(ctx, conn)
	}
}

// deny builds the PERMISSION_DENIED rejection of a scoped request.
func deny(p auth.Principal, what string, format string, args ...any) error {
	return domain.Reject(domain.CodePermissionDenied, "%s: %s (%s token %q of account %s, A2)",
		what, fmt.Sprintf(format, args...), p.Role, p.Name, p.AccountID)
}

// ownPayerFilter checks a payer_account_id filter of a payer's query and
// returns the filter to use: the payer's own account.
func ownPayerFilter(p auth.Principal, what, value string) (string, error) {
	if v := strings.TrimSpace(value); v != "" && v != p.AccountID {
		return "", deny(p, what, "payer_account_id %s is not your account", v)
	}
	return p.AccountID, nil
}

// scopeMonth parses the request's month; a malformed one is the handler's
// INVALID_ARGUMENT, checked here first because the scope depends on it.
func scopeMonth(month string) (domain.Month, error) {
	month = strings.TrimSpace(month)
	if err := checkMonth(month); err != nil {
		return domain.Month{}, err
	}
	return domain.ParseMonth(month)
}

// checkPaidFor checks a source_account_id filter of a payer's query: its own
// organization, or one it paid for in month m (nil = in some month), A3.
func (z *authorizer) checkPaidFor(p auth.Principal, what, source string, m *domain.Month) error {
	source = strings.TrimSpace(source)
	if source == "" || source == p.AccountID {
		return nil
	}
	if !isAccountID(source) {
		return nil // the handler rejects it as INVALID_ARGUMENT
	}
	var ok bool
	var err error
	if m != nil {
		ok, err = domain.PaidFor(z.ledger, p.AccountID, source, *m)
	} else {
		ok, err = domain.EverPaidFor(z.ledger, p.AccountID, source)
	}
	if err != nil {
		return err
	}
	if !ok {
		if m != nil {
			return deny(p, what, "you did not pay for source organization %s in %s", source, m)
		}
		return deny(p, what, "you never paid for source organization %s", source)
	}
	return nil
}

// scopeExecute lets a payer or source send the commands that act for its own
// account (domain.CommandParty).
func scopeExecute(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ExecuteRequest)
	name := CommandName(req)
	if name == "" {
		return nil, nil // the handler rejects the empty request
	}
	m := req.ProtoReflect()
	cmd := m.Get(m.WhichOneof(m.Descriptor().Oneofs().ByName("command"))).Message().Interface()
	party, err := domain.CommandParty(z.ledger, cmd)
	if err != nil {
		return nil, err
	}
	what := "Execute " + name
	switch {
	case party.Role == domain.PartyAdminOnly:
		return nil, deny(p, what, "%s is an admin command", name)
	case string(party.Role) != p.Role:
		return nil, deny(p, what, "%s acts for the %s of %s, not for a %s", name, party.Role, party.Subject, p.Role)
	case party.Account != p.AccountID:
		return nil, deny(p, what, "%s acts for account %s (%s), not for yours", name, party.Account, party.Subject)
	}
	return nil, nil
}

// scopeListTransfers: a payer lists the transfers it is the payer of, a
// source those it is the source of.
func scopeListTransfers(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ListTransfersRequest)
	what := "ListTransfers"
	payer, source := strings.TrimSpace(req.GetPayerAccountId()), strings.TrimSpace(req.GetSourceAccountId())
	switch p.Role {
	case auth.RolePayer:
		own, err := ownPayerFilter(p, what, payer)
		if err != nil {
			return nil, err
		}
		if source != "" && isAccountID(source) {
			ok, err := domain.HasTransferWith(z.ledger, p.AccountID, source)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, deny(p, what, "source_account_id %s: you have no transfer with that organization", source)
			}
		}
		req.PayerAccountId = own
	default: // source
		if source != "" && source != p.AccountID {
			return nil, deny(p, what, "source_account_id %s is not your organization", source)
		}
		if payer != "" && isAccountID(payer) {
			ok, err := domain.HasTransferWith(z.ledger, payer, p.AccountID)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, deny(p, what, "payer_account_id %s never invited your organization", payer)
			}
		}
		req.SourceAccountId = p.AccountID
	}
	return func(res any) error {
		for _, t := range res.(*billingv1.ListTransfersResponse).GetTransfers() {
			if (p.Role == auth.RolePayer && t.GetPayerAccountId() != p.AccountID) || (p.Role == auth.RoleSource && t.GetSourceAccountId() != p.AccountID) {
				return fmt.Errorf("the read model answered transfer %s of another organization", t.GetTransferId())
			}
		}
		return nil
	}, nil
}

// payerMonthScope is the scope of a payer's month-bound report: the month
// must be valid, a named payer must be the caller, and a named source one it
// paid for that month (A3). It returns the payer filter to apply.
func (z *authorizer) payerMonthScope(p auth.Principal, what, month, payer, source string) (string, error) {
	m, err := scopeMonth(month)
	if err != nil {
		return "", err
	}
	own, err := ownPayerFilter(p, what, payer)
	if err != nil {
		return "", err
	}
	if err := z.checkPaidFor(p, what, source, &m); err != nil {
		return "", err
	}
	return own, nil
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rowsOfPayer checks that every row the read model answered belongs to the
// calling payer; describe names a foreign row in the error.
func rowsOfPayer[R interface{ GetPayerAccountId() string }](rows []R, payer string, describe func(R) string) error {
	for _, r := range rows {
		if r.GetPayerAccountId() != payer {
			return fmt.Errorf("the read model answered %s", describe(r))
		}
	}
	return nil
}

// scopeBillable: a payer reads the billable rows it is the bill receiver of;
// they exist only for the months it paid for (A3).
func scopeBillable(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportBillableRequest)
	own, err := z.payerMonthScope(p, "ReportBillable", req.GetMonth(), req.GetPayerAccountId(), req.GetSourceAccountId())
	if err != nil {
		return nil, err
	}
	req.PayerAccountId = own
	return func(res any) error {
		return rowsOfPayer(res.(*billingv1.ReportBillableResponse).GetRows(), p.AccountID,
			func(r *billingv1.BillableRow) string { return "a billable row of payer " + r.GetPayerAccountId() })
	}, nil
}

// scopeCost: a payer reads the cost report of its own billing groups.
func scopeCost(_ context.Context, _ *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportCostRequest)
	own, err := ownPayerFilter(p, "ReportCost", req.GetPayerAccountId())
	if err != nil {
		return nil, err
	}
	req.PayerAccountId = own
	return func(res any) error {
		for _, r := range res.(*billingv1.ReportCostResponse).GetRows() {
			if r.GetOwnerAccountId() != p.AccountID {
				return fmt.Errorf("the read model answered a cost row of payer %s", r.GetOwnerAccountId())
			}
		}
		return nil
	}, nil
}

// scopeInvoices: a payer reads its own invoices, of its own organization or
// of the sources it paid for that month.
func scopeInvoices(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportInvoicesRequest)
	own, err := z.payerMonthScope(p, "ReportInvoices", req.GetMonth(), req.GetPayerAccountId(), req.GetSourceAccountId())
	if err != nil {
		return nil, err
	}
	req.PayerAccountId = own
	return func(res any) error {
		return rowsOfPayer(res.(*billingv1.ReportInvoicesResponse).GetRows(), p.AccountID,
			func(r *billingv1.InvoiceRow) string {
				return "invoice " + r.GetInvoiceId() + " of payer " + r.GetPayerAccountId()
			})
	}, nil
}

// scopePayments: a payer reads its own payments and balances.
func scopePayments(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportPaymentsRequest)
	what := "ReportPayments"
	own, err := ownPayerFilter(p, what, req.GetPayerAccountId())
	if err != nil {
		return nil, err
	}
	var m *domain.Month
	if month := strings.TrimSpace(req.GetMonth()); month != "" {
		mm, err := scopeMonth(month)
		if err != nil {
			return nil, err
		}
		m = &mm
	}
	if err := z.checkPaidFor(p, what, req.GetSourceAccountId(), m); err != nil {
		return nil, err
	}
	req.PayerAccountId = own
	return func(res any) error {
		r := res.(*billingv1.ReportPaymentsResponse)
		return firstError(
			rowsOfPayer(r.GetInvoices(), p.AccountID, func(x *billingv1.InvoicePayment) string {
				return "invoice " + x.GetInvoiceId() + " of payer " + x.GetPayerAccountId()
			}),
			rowsOfPayer(r.GetPayments(), p.AccountID, func(x *billingv1.PaymentRow) string {
				return "payment " + x.GetPaymentId() + " of payer " + x.GetPayerAccountId()
			}),
			rowsOfPayer(r.GetPayerBalances(), p.AccountID, func(x *billingv1.PayerBalance) string {
				return "the balance of payer " + x.GetPayerAccountId()
			}),
			rowsOfPayer(r.GetSourceBalances(), p.AccountID, func(x *billingv1.SourceBalance) string {
				return "a source balance of payer " + x.GetPayerAccountId()
			}))
	}, nil
}

// scopeTax: a payer reads the tax of its own invoices.
func scopeTax(_ context.Context, _ *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportTaxRequest)
	what := "ReportTax"
	if _, err := scopeMonth(req.GetMonth()); err != nil {
		return nil, err
	}
	own, err := ownPayerFilter(p, what, req.GetPayerAccountId())
	if err != nil {
		return nil, err
	}
	req.PayerAccountId = own
	return func(res any) error {
		return rowsOfPayer(res.(*billingv1.ReportTaxResponse).GetRows(), p.AccountID,
			func(r *billingv1.TaxRow) string { return "tax of payer " + r.GetPayerAccountId() })
	}, nil
}

// scopeProforma: the pro forma view.
//   - A payer reads the rows of its own billing groups (owner = its account),
//     of its own accounts and those of the organizations it paid for that
//     month (A3); through a billing view it owns, that view's rows; through a
//     view granted to it, the view's rows of its own accounts.
//   - A source reads the rows of its own accounts priced by its direct payer
//     of that month (P7: only its direct payer's prices); through a view
//     granted to it, the view's rows of its own accounts. Never billed cost or
//     margin: the pro forma rows carry neither.
func scopeProforma(_ context.Context, z *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ReportProformaRequest)
	what := "ReportProforma"
	m, err := scopeMonth(req.GetMonth())
	if err != nil {
		return nil, err
	}
	payer := strings.TrimSpace(req.GetPayerAccountId())
	group := strings.TrimSpace(req.GetBillingGroupId())
	account := strings.TrimSpace(req.GetAccountId())

	if viewID := strings.TrimSpace(req.GetBillingViewId()); viewID != "" {
		// The directory reads the view's stream from the store, so a grant
		// revoked, or a view deleted, by a command that returned is seen here.
		view, err := domain.FindBillingView(z.ledger, viewID)
		if err != nil {
			if domain.CodeOf(err) == domain.CodeNotFound {
				// Do not tell a foreign view from a missing one.
				return nil, deny(p, what, "billing_view_id %s is not a billing view you own or were granted", viewID)
			}
			return nil, err
		}
		owns := p.Role == auth.RolePayer && view.Owner() == p.AccountID
		if view.Deleted() {
			// Its owner and those who held a grant when it was deleted are
			// told it is gone; anyone else cannot tell it from a foreign one.
			if owns || view.GrantedWhenDeleted(p.AccountID) {
				return nil, domain.Reject(domain.CodeNotFound, "billing view %s was deleted", viewID)
			}
			return nil, deny(p, what, "billing_view_id %s is not a billing view you own or were granted", viewID)
		}
		if !owns && !view.GrantedTo(p.AccountID) {
			return nil, deny(p, what, "billing_view_id %s is not a billing view you own or were granted", viewID)
		}
		if payer != "" && payer != view.Owner() {
			return nil, deny(p, what, "payer_account_id %s: billing view %s shows the prices of %s", payer, viewID, view.Owner())
		}
		if group != "" && domain.ValidID(group) {
			owner, err := domain.BillingGroupOwner(z.ledger, group)
			if err != nil && domain.CodeOf(err) != domain.CodeNotFound {
				return nil, err
			}
			if owner != view.Owner() {
				return nil, deny(p, what, "billing_group_id %s is not a billing group of %s, the owner of billing view %s", group, view.Owner(), viewID)
			}
		}
		if owns {
			if err := z.checkPaidForAccount(p, what, account, m); err != nil {
				return nil, err
			}
			return z.paidForRows(p, m), nil
		}
		// A granted view is confined to the grantee's accounts (domain); the
		// response is narrowed to them all the same.
		if account != "" {
			if err := z.checkOwnAccount(p, what, account); err != nil {
				return nil, err
			}
		}
		return z.ownAccountRows(p)
	}

	switch p.Role {
	case auth.RolePayer:
		own, err := ownPayerFilter(p, what, payer)
		if err != nil {
			return nil, err
		}
		if group != "" && domain.ValidID(group) {
			owner, err := domain.BillingGroupOwner(z.ledger, group)
			if err != nil && domain.CodeOf(err) != domain.CodeNotFound {
				return nil, err
			}
			if owner != p.AccountID {
				return nil, deny(p, what, "billing_group_id %s is not one of your billing groups", group)
			}
		}
		if err := z.checkPaidForAccount(p, what, account, m); err != nil {
			return nil, err
		}
		req.PayerAccountId = own
		return z.paidForRows(p, m), nil
	default: // source
		org, err := z.ledger.Org(p.AccountID)
		if err != nil {
			return nil, err
		}
		direct := org.DirectPayerIn(m)
		if !org.Exists() {
			direct = p.AccountID
		}
		if payer != "" && payer != direct {
			return nil, deny(p, what, "payer_account_id %s is not your payer in %s (a source sees only its direct payer's prices, P7)", payer, m)
		}
		if group != "" && domain.ValidID(group) {
			owner, err := domain.BillingGroupOwner(z.ledger, group)
			if err != nil && domain.CodeOf(err) != domain.CodeNotFound {
				return nil, err
			}
			if owner != direct {
				return nil, deny(p, what, "billing_group_id %s is not a billing group of your payer %s in %s", group, direct, m)
			}
		}
		if account != "" {
			if err := z.checkOwnAccount(p, what, account); err != nil {
				return nil, err
			}
		}
		req.PayerAccountId = direct
		return z.ownAccountRows(p)
	}
}

// scopeListBillingViews: a payer lists the views it owns; a source the views
// granted to it, each naming only itself as grantee and none of the owner's
// other views (its source views), which it cannot read.
func scopeListBillingViews(_ context.Context, _ *authorizer, p auth.Principal, msg any) (responseFilter, error) {
	req := msg.(*billingv1.ListBillingViewsRequest)
	what := "ListBillingViews"
	owner, grantee := strings.TrimSpace(req.GetOwnerAccountId()), strings.TrimSpace(req.GetGranteeAccountId())
	if p.Role == auth.RolePayer {
		if owner != "" && owner != p.AccountID {
			return nil, deny(p, what, "owner_account_id %s is not your account", owner)
		}
		req.OwnerAccountId = p.AccountID
		return func(res any) error {
			for _, v := range res.(*billingv1.ListBillingViewsResponse).GetViews() {
				if v.GetOwnerAccountId() != p.AccountID {
					return fmt.Errorf("the ledger answered billing view %s of owner %s", v.GetBillingViewId(), v.GetOwnerAccountId())
				}
			}
			return nil
		}, nil
	}
	// source
	if grantee != "" && grantee != p.AccountID {
		return nil, deny(p, what, "grantee_account_id %s is not your organization", grantee)
	}
	req.GranteeAccountId = p.AccountID
	return func(res any) error {
		for _, v := range res.(*billingv1.ListBillingViewsResponse).GetViews() {
			if v.GetDeleted() || !slices.Contains(v.GetGranteeAccountIds(), p.AccountID) {
				return fmt.Errorf("the ledger answered billing view %s, which is not granted to %s", v.GetBillingViewId(), p.AccountID)
			}
			v.GranteeAccountIds, v.SourceViewIds = []string{p.AccountID}, nil
		}
		return nil
	}, nil
}

// checkPaidForAccount denies a payer's account_id that is neither its own
// nor of an organization it paid for in month m (A3).
func (z *authorizer) checkPaidForAccount(p auth.Principal, what, account string, m domain.Month) error {
	if account == "" || !isAccountID(account) {
		return nil // empty, or the handler rejects it as INVALID_ARGUMENT
	}
	org, err := z.ledger.AccountOwner(account)
	if err != nil {
		return err
	}
	ok := org != ""
	if ok && org != p.AccountID {
		if ok, err = domain.PaidFor(z.ledger, p.AccountID, org, m); err != nil {
			return err
		}
	}
	if !ok {
		return deny(p, what, "account_id %s is neither yours nor of an organization you paid for in %s", account, m)
	}
	return nil
}

// checkOwnAccount denies an account_id that is not an account of the
// principal's organization.
func (z *authorizer) checkOwnAccount(p auth.Principal, what, account string) error {
	if !isAccountID(account) {
		return nil // the handler rejects it as INVALID_ARGUMENT
	}
	org, err := z.ledger.AccountOwner(account)
	if err != nil {
		return err
	}
	if org != p.AccountID {
		return deny(p, what, "account_id %s is not an account of your organization", account)
	}
	return nil
}

// ownAccountRows keeps the pro forma rows of the principal's own accounts.
func (z *authorizer) ownAccountRows(p auth.Principal) (responseFilter, error) {
	org, err := z.ledger.Org(p.AccountID)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{p.AccountID: true}
	for _, a := range org.Accounts() {
		mine[a] = true
	}
	return func(res any) error {
		return filterProforma(res.(*billingv1.ReportProformaResponse), func(r *billingv1.ProformaRow) (bool, error) {
			return mine[r.GetAccountId()], nil
		})
	}, nil
}

// paidForRows keeps a payer's pro forma rows of its own accounts and of the
// organizations it paid for in month m (A3). The read model already prices
// only those; this is the second lock.
func (z *authorizer) paidForRows(p auth.Principal, m domain.Month) responseFilter {
	return func(res any) error {
		paid := map[string]bool{}
		return filterProforma(res.(*billingv1.ReportProformaResponse), func(r *billingv1.ProformaRow) (bool, error) {
			if r.GetOwnerAccountId() != p.AccountID {
				return false, nil
			}
			org, err := z.ledger.AccountOwner(r.GetAccountId())
			if err != nil || org == "" {
				return false, err
			}
			ok, seen := paid[org]
			if !seen {
				if ok, err = domain.PaidFor(z.ledger, p.AccountID, org, m); err != nil {
					return false, err
				}
				paid[org] = ok
			}
			return ok, nil
		})
	}
}

// filterProforma keeps the rows for which keep is true and recomputes the total.
func filterProforma(res *billingv1.ReportProformaResponse, keep func(*billingv1.ProformaRow) (bool, error)) error {
	rows := make([]*billingv1.ProformaRow, 0, len(res.GetRows()))
	for _, r := range res.GetRows() {
		ok, err := keep(r)
		if err != nil {
			return err
		}
		if ok {
			rows = append(rows, r)
		}
	}
	if len(rows) == len(res.GetRows()) {
		return nil
	}
	total, err := sumProforma(rows)
	if err != nil {
		return err
	}
	res.Rows, res.Total = rows, total
	return nil
}

// sumProforma is the exact sum of the rows' pro forma cost, canonical.
func sumProforma(rows []*billingv1.ProformaRow) (string, error) {
	sum, _ := domain.ParseDecimal("0")
	for _, r := range rows {
		d, err := domain.ParseDecimal(r.GetProformaCost())
		if err != nil {
			return "", fmt.Errorf("pro forma row %s/%s: %w", r.GetAccountId(), r.GetService(), err)
		}
		if sum, err = domain.AddDecimal(sum, d); err != nil {
			return "", err
		}
	}
	return domain.CanonicalDecimal(sum), nil
}
