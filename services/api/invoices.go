package api

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// ReportInvoices implements QueryService.ReportInvoices: the invoices issued
// for one month (X5) with their payment state (Y3), optionally of one payer
// and/or one source organization.
func (s *service) ReportInvoices(ctx context.Context, req *connect.Request[billingv1.ReportInvoicesRequest]) (*connect.Response[billingv1.ReportInvoicesResponse], error) {
	if s.opts.Invoices == nil {
		return nil, unimplemented("the invoices read model")
	}
	filter := &billingv1.ReportInvoicesRequest{
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
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Invoices.ReportInvoices(ctx, filter)
	if err != nil {
		return nil, withOp("report invoices "+filter.Month, err)
	}
	if res == nil {
		res = &billingv1.ReportInvoicesResponse{}
	}
	if res.GetCheckpoint() == 0 {
		res.Checkpoint = checkpoint
	}
	return connect.NewResponse(res), nil
}

// ReportPayments implements QueryService.ReportPayments: invoice states,
// balances and payments (Y2, Y3), optionally of one payer, one source
// organization and/or one billing month.
func (s *service) ReportPayments(ctx context.Context, req *connect.Request[billingv1.ReportPaymentsRequest]) (*connect.Response[billingv1.ReportPaymentsResponse], error) {
	if s.opts.Invoices == nil {
		return nil, unimplemented("the payments read model")
	}
	filter := &billingv1.ReportPaymentsRequest{
		PayerAccountId:  strings.TrimSpace(req.Msg.GetPayerAccountId()),
		SourceAccountId: strings.TrimSpace(req.Msg.GetSourceAccountId()),
		Month:           strings.TrimSpace(req.Msg.GetMonth()),
	}
	if filter.Month != "" {
		if err := checkMonth(filter.Month); err != nil {
			return nil, err
		}
	}
	if err := checkAccountFilters(
		accountFilter{"payer_account_id", filter.PayerAccountId},
		accountFilter{"source_account_id", filter.SourceAccountId},
	); err != nil {
		return nil, err
	}
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Invoices.ReportPayments(ctx, filter)
	if err != nil {
		return nil, withOp("report payments", err)
	}
	if res == nil {
		res = &billingv1.ReportPaymentsResponse{}
	}
	if res.GetCheckpoint() == 0 {
		res.Checkpoint = checkpoint
	}
	return connect.NewResponse(res), nil
}

// ReportTax implements QueryService.ReportTax: the tax view (R1) of one
// month, optionally of one payer.
func (s *service) ReportTax(ctx context.Context, req *connect.Request[billingv1.ReportTaxRequest]) (*connect.Response[billingv1.ReportTaxResponse], error) {
	if s.opts.Invoices == nil {
		return nil, unimplemented("the tax read model")
	}
	filter := &billingv1.ReportTaxRequest{
		Month:          strings.TrimSpace(req.Msg.GetMonth()),
		PayerAccountId: strings.TrimSpace(req.Msg.GetPayerAccountId()),
	}
	if err := checkMonth(filter.Month); err != nil {
		return nil, err
	}
	if err := checkAccountFilters(accountFilter{"payer_account_id", filter.PayerAccountId}); err != nil {
		return nil, err
	}
	checkpoint, err := s.awaitReadModel(ctx, req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Invoices.ReportTax(ctx, filter)
	if err != nil {
		return nil, withOp("report tax "+filter.Month, err)
	}
	if res == nil {
		res = &billingv1.ReportTaxResponse{}
	}
	if res.GetCheckpoint() == 0 {
		res.Checkpoint = checkpoint
	}
	return connect.NewResponse(res), nil
}
