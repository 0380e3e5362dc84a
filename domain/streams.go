package domain

// Stream names (DESIGN §2). Ids are validated before they reach these helpers.

// OrgStream is the stream of an organization, named by its management account.
func OrgStream(managementAccountID string) string { return "billing.org." + managementAccountID }

// AccountStream is the claim stream of one account (which organization owns it).
func AccountStream(accountID string) string { return "billing.account." + accountID }

// TransferStream is the stream of one transfer.
func TransferStream(transferID string) string { return "billing.transfer." + transferID }

// BillingGroupStream is the stream of a payer's billing group.
func BillingGroupStream(payerAccountID, billingGroupID string) string {
	return "billing.pricing." + payerAccountID + ".group." + billingGroupID
}

// RequestStream holds the outcome of the command with this request id.
func RequestStream(requestID string) string { return "billing.request." + requestID }

// ClockStream holds the simulated clock's moves.
const ClockStream = "billing.clock"

// MonthStream is the stream of a payer's month close: MonthClosed then its
// invoices (InvoicesIssued and InvoiceLinesIssued events; InvoiceIssued in
// closes written before those existed), written once (X5).
func MonthStream(payerAccountID, month string) string {
	return "billing.month." + payerAccountID + "." + month
}

// ReceivableStream is a payer's accounts receivable: posted invoices, payments
// and refunds (Y2, Y3).
func ReceivableStream(payerAccountID string) string { return "billing.receivable." + payerAccountID }

// SealStream holds the seal of a payer's closed month (issue #6: MonthSealed).
func SealStream(payerAccountID, month string) string {
	return "billing.seal." + payerAccountID + "." + month
}
