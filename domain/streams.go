package domain

import "strings"

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

// DecisionFamilies are the families of streams (subject filters) that the
// command pipeline guards as a whole: a decision that reads a stream of such a
// family has every append to the family guarded by the family's newest
// position taken before that read, so it is decided again if any stream of
// the family moved meanwhile. That keeps invariants spanning the family's
// streams: a live view's source views stay live (BillingViewFamily). Usage
// partitions are guarded by their writers and the month close on their own
// terms (UsagePartitionFilter).
func DecisionFamilies() []string { return []string{BillingViewFamily} }

// DecisionFamily returns the decision family (DecisionFamilies) stream belongs
// to, or "" when the stream's own version guards it.
func DecisionFamily(stream string) string {
	if strings.HasPrefix(stream, "billing.view.") {
		return BillingViewFamily
	}
	return ""
}

// GuardFamilies lists every family of streams some writer guards as a whole:
// the usage partitions and the decision families. An event store that must be
// told its guard families, as the KurrentDB adapter must, is given these.
func GuardFamilies() []string { return append(UsagePartitionFilters(), DecisionFamilies()...) }
