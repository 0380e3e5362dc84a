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
	return answer(ctx, s, req.Header().Get(MinPositionHeader), "report invoices "+filter.Month,
		func() *billingv1.ReportInvoicesResponse { return &billingv1.ReportInvoicesResponse{} },
		func(ctx context.Context) (*billingv1.ReportInvoicesResponse, error) {
			return s.opts.Invoices.ReportInvoices(ctx, filter)
		})
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
	return answer(ctx, s, req.Header().Get(MinPositionHeader), "report payments",
		func() *billingv1.ReportPaymentsResponse { return &billingv1.ReportPaymentsResponse{} },
		func(ctx context.Context) (*billingv1.ReportPaymentsResponse, error) {
			return s.opts.Invoices.ReportPayments(ctx, filter)
		})
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
	return answer(ctx, s, req.Header().Get(MinPositionHeader), "report tax "+filter.Month,
		func() *billingv1.ReportTaxResponse { return &billingv1.ReportTaxResponse{} },
		func(ctx context.Context) (*billingv1.ReportTaxResponse, error) {
			return s.opts.Invoices.ReportTax(ctx, filter)
		})
}
