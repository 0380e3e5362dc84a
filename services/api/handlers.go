package api

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// service implements the Connect services over the ports in Options.
type service struct {
	opts Options
}

var (
	_ billingv1connect.CommandServiceHandler = (*service)(nil)
	_ billingv1connect.QueryServiceHandler   = (*service)(nil)
	_ billingv1connect.UsageServiceHandler   = (*service)(nil)
	_ billingv1connect.AdminServiceHandler   = (*service)(nil)
)

// Execute implements CommandService.Execute: it runs the command as the
// authenticated principal.
func (s *service) Execute(ctx context.Context, req *connect.Request[billingv1.ExecuteRequest]) (*connect.Response[billingv1.ExecuteResponse], error) {
	name := CommandName(req.Msg)
	if name == "" {
		return nil, domain.Reject(domain.CodeInvalidArgument, "the request carries no command")
	}
	if s.opts.Executor == nil {
		return nil, unimplemented("commands")
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, withOp("execute "+name, errors.New("no principal in the request context"))
	}
	result, err := s.opts.Executor.Execute(ctx, p.Name, req.Msg)
	if err != nil {
		return nil, withOp("execute "+name, err)
	}
	if result == nil {
		result = &billingv1.CommandResult{}
	}
	res := connect.NewResponse(&billingv1.ExecuteResponse{Result: result})
	res.Header().Set(PositionHeader, strconv.FormatUint(result.GetPosition(), 10))
	if c := result.GetCorrelationId(); c != "" {
		res.Header().Set(CorrelationHeader, c)
	}
	return res, nil
}

// CommandName returns the message name of the command carried by req (e.g.
// "InviteBillSource"), or "" when it carries none.
func CommandName(req *billingv1.ExecuteRequest) string {
	m := req.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("command"))
	if fd == nil {
		return ""
	}
	return string(fd.Message().Name())
}

// transferStatuses are the statuses of the transfers read model (issue 2).
var transferStatuses = []string{"REQUESTED", "ACCEPTED", "DECLINED", "CANCELED", "EXPIRED", "WITHDRAWN"}

// ListTransfers implements QueryService.ListTransfers. It validates the
// filters, waits for the read model (see MinPositionHeader) and reads it.
func (s *service) ListTransfers(ctx context.Context, req *connect.Request[billingv1.ListTransfersRequest]) (*connect.Response[billingv1.ListTransfersResponse], error) {
	if s.opts.Transfers == nil {
		return nil, unimplemented("the transfers read model")
	}
	filter := &billingv1.ListTransfersRequest{
		PayerAccountId:  strings.TrimSpace(req.Msg.GetPayerAccountId()),
		SourceAccountId: strings.TrimSpace(req.Msg.GetSourceAccountId()),
		Status:          strings.ToUpper(strings.TrimSpace(req.Msg.GetStatus())),
	}
	if err := checkAccountFilters(
		accountFilter{"payer_account_id", filter.PayerAccountId},
		accountFilter{"source_account_id", filter.SourceAccountId},
	); err != nil {
		return nil, err
	}
	if filter.Status != "" && !slices.Contains(transferStatuses, filter.Status) {
		return nil, domain.Reject(domain.CodeInvalidArgument, "status %q is not one of %s",
			req.Msg.GetStatus(), strings.Join(transferStatuses, ", "))
	}
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Transfers.ListTransfers(ctx, filter)
	if err != nil {
		return nil, withOp("list transfers", err)
	}
	return connect.NewResponse(&billingv1.ListTransfersResponse{Transfers: rows, Checkpoint: checkpoint}), nil
}

// ReportBillable implements QueryService.ReportBillable: the billable view
// (R1) of one month, optionally for one payer and/or one source organization.
func (s *service) ReportBillable(ctx context.Context, req *connect.Request[billingv1.ReportBillableRequest]) (*connect.Response[billingv1.ReportBillableResponse], error) {
	if s.opts.Billable == nil {
		return nil, unimplemented("the billable read model")
	}
	filter := &billingv1.ReportBillableRequest{
		Month:           strings.TrimSpace(req.Msg.GetMonth()),
		PayerAccountId:  strings.TrimSpace(req.Msg.GetPayerAccountId()),
		SourceAccountId: strings.TrimSpace(req.Msg.GetSourceAccountId()),
	}
	if err := checkMonth(filter.Month); err != nil {
		return nil, err
	}
	if err := checkAccountFilters(
		accountFilter{"payer_account_id", filter.PayerAccountId},
		accountFilter{"source_account_id", filter.SourceAccountId},
	); err != nil {
		return nil, err
	}
	return answer(ctx, s, req.Header().Get(MinPositionHeader), "report billable "+filter.Month,
		func() *billingv1.ReportBillableResponse { return &billingv1.ReportBillableResponse{Total: "0"} },
		func(ctx context.Context) (*billingv1.ReportBillableResponse, error) {
			return s.opts.Billable.ReportBillable(ctx, filter)
		})
}

// MonthDigest implements QueryService.MonthDigest: the digest and totals of
// each read model of a month, which replay --verify compares with (R2): the
// Billable port's (usage, pro forma, cost), then the Invoices port's
// (invoices, tax, payments) when it is wired.
func (s *service) MonthDigest(ctx context.Context, req *connect.Request[billingv1.MonthDigestRequest]) (*connect.Response[billingv1.MonthDigestResponse], error) {
	if s.opts.Billable == nil {
		return nil, unimplemented("the read model digests")
	}
	month := strings.TrimSpace(req.Msg.GetMonth())
	if err := checkMonth(month); err != nil {
		return nil, err
	}
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Billable.MonthDigest(ctx, month)
	if err != nil {
		return nil, withOp("digest month "+month, err)
	}
	if res == nil {
		res = &billingv1.MonthDigestResponse{}
	}
	if s.opts.Invoices != nil {
		// The invoices, tax and payments read models (their own projections
		// and checkpoints, carried by each digest).
		ds, err := s.opts.Invoices.InvoiceDigests(ctx, month)
		if err != nil {
			return nil, withOp("digest invoices of month "+month, err)
		}
		res.Digests = append(res.Digests, ds...)
	}
	if res.GetCheckpoint() == 0 {
		res.Checkpoint = checkpoint
	}
	return connect.NewResponse(res), nil
}

// ReportProforma implements QueryService.ReportProforma: the pro forma view
// (R1) of one month, optionally for one payer (the billing groups' owner), one
// billing group and/or one account, or the rows of one billing view (A2).
func (s *service) ReportProforma(ctx context.Context, req *connect.Request[billingv1.ReportProformaRequest]) (*connect.Response[billingv1.ReportProformaResponse], error) {
	if s.opts.Proforma == nil {
		return nil, unimplemented("the pro forma read model")
	}
	filter := &billingv1.ReportProformaRequest{
		Month:          strings.TrimSpace(req.Msg.GetMonth()),
		PayerAccountId: strings.TrimSpace(req.Msg.GetPayerAccountId()),
		BillingGroupId: strings.TrimSpace(req.Msg.GetBillingGroupId()),
		AccountId:      strings.TrimSpace(req.Msg.GetAccountId()),
	}
	var selection *domain.Selection
	if viewID := strings.TrimSpace(req.Msg.GetBillingViewId()); viewID != "" {
		sel, err := s.billingView(viewID, filter.PayerAccountId)
		if err != nil {
			return nil, err
		}
		selection, filter.PayerAccountId = &sel, sel.Owner
	}
	if err := checkMonth(filter.Month); err != nil {
		return nil, err
	}
	if err := checkAccountFilters(
		accountFilter{"payer_account_id", filter.PayerAccountId},
		accountFilter{"account_id", filter.AccountId},
	); err != nil {
		return nil, err
	}
	if filter.BillingGroupId != "" && !domain.ValidID(filter.BillingGroupId) {
		return nil, domain.Reject(domain.CodeInvalidArgument, "billing_group_id %q is not a billing group id (1 to 64 letters, digits, '-' or '_')", filter.BillingGroupId)
	}
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Proforma.ReportProforma(ctx, filter)
	if err != nil {
		return nil, withOp("report proforma "+filter.Month, err)
	}
	if res == nil {
		res = &billingv1.ReportProformaResponse{Total: "0"}
	}
	if selection != nil {
		err := filterProforma(res, func(r *billingv1.ProformaRow) (bool, error) {
			return r.GetOwnerAccountId() == selection.Owner && selection.Match(r.GetBillingGroupId(), r.GetAccountId()), nil
		})
		if err != nil {
			return nil, withOp("report proforma "+filter.Month+" through billing view "+req.Msg.GetBillingViewId(), err)
		}
	}
	if res.GetCheckpoint() == 0 {
		res.Checkpoint = checkpoint
	}
	return connect.NewResponse(res), nil
}

// billingView resolves a billing view into the rows it selects (A2). A payer
// filter must name the view's owner. A view that filters on tags is refused:
// pro forma rows are kept per account and service and carry no tags, so its
// rows cannot be told apart, and answering more than it selects would leak.
func (s *service) billingView(id, payer string) (domain.Selection, error) {
	if s.opts.Ledger == nil {
		return domain.Selection{}, unimplemented("billing views (no ledger view)")
	}
	if !domain.ValidID(id) {
		return domain.Selection{}, domain.Reject(domain.CodeInvalidArgument, "billing_view_id %q is not a billing view id (1 to 64 letters, digits, '-' or '_')", id)
	}
	_, sel, err := domain.ResolveBillingView(s.opts.Ledger, id)
	if err != nil {
		return domain.Selection{}, err
	}
	if payer != "" && payer != sel.Owner {
		return domain.Selection{}, domain.Reject(domain.CodeInvalidArgument, "payer_account_id %s: billing view %s shows the pro forma of %s", payer, id, sel.Owner)
	}
	if sel.TagFiltered {
		return domain.Selection{}, domain.Reject(domain.CodeFailedPrecondition,
			"billing view %s filters on tags, but the pro forma read model keeps rows per account and service without tags; use a view that filters on accounts", id)
	}
	return sel, nil
}

// ListBillingViews implements QueryService.ListBillingViews: every billing
// view (A2) matching the filters, deleted ones only when asked. The views are
// folded from their streams through the ledger view (billingd's
// commands.Directory reads them from the store, as the authorization of
// ReportProforma does), so the answer reflects every command that returned
// before it; there is no read model to wait for.
func (s *service) ListBillingViews(_ context.Context, req *connect.Request[billingv1.ListBillingViewsRequest]) (*connect.Response[billingv1.ListBillingViewsResponse], error) {
	if _, ok := s.opts.Ledger.(domain.FamilyReader); !ok {
		return nil, unimplemented("billing views (no ledger view that lists them)")
	}
	owner := strings.TrimSpace(req.Msg.GetOwnerAccountId())
	grantee := strings.TrimSpace(req.Msg.GetGranteeAccountId())
	if err := checkAccountFilters(
		accountFilter{"owner_account_id", owner},
		accountFilter{"grantee_account_id", grantee},
	); err != nil {
		return nil, err
	}
	views, err := domain.AllBillingViews(s.opts.Ledger)
	if err != nil {
		return nil, withOp("list billing views", err)
	}
	res := &billingv1.ListBillingViewsResponse{}
	for _, b := range views {
		switch {
		case b.Deleted() && !req.Msg.GetIncludeDeleted(),
			owner != "" && b.Owner() != owner,
			grantee != "" && !b.GrantedTo(grantee):
			continue
		}
		res.Views = append(res.Views, &billingv1.BillingViewInfo{
			BillingViewId:     b.ID(),
			OwnerAccountId:    b.Owner(),
			Type:              b.Type(),
			Name:              b.Name(),
			BillingGroupId:    b.BillingGroupID(),
			SourceViewIds:     b.SourceViewIDs(),
			Filter:            b.Filter(),
			GranteeAccountIds: b.Grantees(),
			Deleted:           b.Deleted(),
		})
	}
	return connect.NewResponse(res), nil
}

// ReportCost implements QueryService.ReportCost: the cost report (P6) of one
// month, optionally for one payer.
func (s *service) ReportCost(ctx context.Context, req *connect.Request[billingv1.ReportCostRequest]) (*connect.Response[billingv1.ReportCostResponse], error) {
	if s.opts.Proforma == nil {
		return nil, unimplemented("the cost report")
	}
	filter := &billingv1.ReportCostRequest{
		Month:          strings.TrimSpace(req.Msg.GetMonth()),
		PayerAccountId: strings.TrimSpace(req.Msg.GetPayerAccountId()),
	}
	if err := checkMonth(filter.Month); err != nil {
		return nil, err
	}
	if err := checkAccountFilters(accountFilter{"payer_account_id", filter.PayerAccountId}); err != nil {
		return nil, err
	}
	return answer(ctx, s, req.Header().Get(MinPositionHeader), "report cost "+filter.Month,
		func() *billingv1.ReportCostResponse {
			return &billingv1.ReportCostResponse{BillableTotal: "0", ProformaTotal: "0", MarginTotal: "0"}
		},
		func(ctx context.Context) (*billingv1.ReportCostResponse, error) {
			return s.opts.Proforma.ReportCost(ctx, filter)
		})
}

// checkMonth rejects a missing or malformed month, naming the value.
func checkMonth(month string) error {
	if month == "" {
		return domain.Reject(domain.CodeInvalidArgument, "month is required (YYYY-MM, e.g. 2026-09)")
	}
	if _, err := domain.ParseMonth(month); err != nil {
		return domain.Reject(domain.CodeInvalidArgument, "month %q is not a YYYY-MM month (e.g. 2026-09)", month)
	}
	return nil
}

// accountFilter is an optional account id filter of a query, with its field name.
type accountFilter struct{ name, id string }

// checkAccountFilters rejects a non-empty filter that is not a 12-digit id.
func checkAccountFilters(filters ...accountFilter) error {
	for _, f := range filters {
		if f.id != "" && !isAccountID(f.id) {
			return domain.Reject(domain.CodeInvalidArgument, "%s %q is not a 12-digit account id", f.name, f.id)
		}
	}
	return nil
}

// awaitReadModel waits until the read model has applied the position a query
// must reflect and returns it (0 when unknown). An explicit minimum (header)
// that is not reached in time fails with Unavailable; the implicit one (the
// store's last position) is best effort: on timeout the query answers from the
// read model as it is, and reports checkpoint 0.
func (s *service) awaitReadModel(ctx context.Context, minHeader string) (uint64, error) {
	var target uint64
	explicit := minHeader != ""
	if explicit {
		v, err := strconv.ParseUint(strings.TrimSpace(minHeader), 10, 64)
		if err != nil {
			return 0, domain.Reject(domain.CodeInvalidArgument, "header %s %q is not a store position", MinPositionHeader, minHeader)
		}
		target = v
	} else if s.opts.Positions != nil {
		v, err := s.opts.Positions.LastPosition(ctx)
		if err != nil {
			return 0, withOp("read the store position", err)
		}
		target = v
	}
	if s.opts.Waiter == nil || target == 0 {
		return 0, nil
	}
	wctx, cancel := context.WithTimeout(ctx, s.opts.WaitTimeout)
	defer cancel()
	err := s.opts.Waiter.WaitFor(wctx, target)
	switch {
	case err == nil:
		return target, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	case !errors.Is(err, context.DeadlineExceeded):
		return 0, withOp("wait for the read model", err)
	case explicit:
		return 0, newError(connect.CodeUnavailable, "UNAVAILABLE",
			fmt.Sprintf("the read model has not reached store position %d within %s; retry later", target, s.opts.WaitTimeout))
	default:
		s.opts.Logger.WarnContext(ctx, "query answered from a lagging read model", "position", target, "waited", s.opts.WaitTimeout)
		return 0, nil
	}
}

// SetClock implements AdminService.SetClock: it moves a simulated clock forward.
func (s *service) SetClock(ctx context.Context, req *connect.Request[billingv1.SetClockRequest]) (*connect.Response[billingv1.SetClockResponse], error) {
	t, err := clock.Parse(req.Msg.GetTime())
	if err != nil {
		return nil, domain.Reject(domain.CodeInvalidArgument, "%v", err)
	}
	if !s.opts.Clock.Simulated() {
		return nil, domain.Reject(domain.CodeFailedPrecondition,
			"the server uses the wall clock; start billingd with --simulated-clock to set the time")
	}
	if err := s.opts.Clock.Set(ctx, t); err != nil {
		return nil, withOp("set clock", err)
	}
	return connect.NewResponse(&billingv1.SetClockResponse{Now: formatTime(s.opts.Clock.Now())}), nil
}

// GetServerInfo implements AdminService.GetServerInfo.
func (s *service) GetServerInfo(ctx context.Context, _ *connect.Request[billingv1.GetServerInfoRequest]) (*connect.Response[billingv1.GetServerInfoResponse], error) {
	var last uint64
	if s.opts.Positions != nil {
		v, err := s.opts.Positions.LastPosition(ctx)
		if err != nil {
			return nil, withOp("get server info", err)
		}
		last = v
	}
	store := s.opts.EventStore
	if store == "" {
		store = "jetstream"
	}
	return connect.NewResponse(&billingv1.GetServerInfoResponse{
		NatsUrl:        s.opts.NATSURL,
		Now:            formatTime(s.opts.Clock.Now()),
		SimulatedClock: s.opts.Clock.Simulated(),
		LastPosition:   last,
		EventStore:     store,
	}), nil
}

// unimplemented reports a port that billingd did not wire (e.g. a --role
// without read models).
func unimplemented(what string) error {
	return newError(connect.CodeUnimplemented, "UNIMPLEMENTED", "this process does not serve "+what)
}

// formatTime renders a ledger time on the wire: RFC 3339, UTC.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// isAccountID reports whether s is a 12-digit account id.
func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
