package domain

import (
	"maps"
	"slices"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// covers reports whether an accepted (or withdrawn) link is in force for the whole
// month. Transfers always cover whole months (T6), so a month is either fully in
// or fully out.
func (l Link) covers(m Month) bool {
	switch l.state {
	case billingv1.TransferLinkState_TRANSFER_LINK_STATE_ACCEPTED, billingv1.TransferLinkState_TRANSFER_LINK_STATE_WITHDRAWN:
	default:
		return false
	}
	if m.Start().Before(l.start) {
		return false
	}
	return l.end.IsZero() || !l.end.Before(m.End())
}

// DirectPayerIn returns who pays this organization's bill for month m (T6): the
// payer of the transfer in force that month, or the organization itself.
func (o Org) DirectPayerIn(m Month) string {
	for _, id := range slices.Sorted(maps.Keys(o.outbound)) {
		if l := o.outbound[id]; l.covers(m) {
			return l.payer
		}
	}
	return o.id
}

// ResolvePayer returns the bill receiver of an organization for month m: its
// direct payer, or, in a two-level chain, the payer's own payer (T6, T7).
func ResolvePayer(v View, orgID string, m Month) (string, error) {
	org, err := v.Org(orgID)
	if err != nil {
		return "", err
	}
	if !org.Exists() {
		return orgID, nil
	}
	p := org.DirectPayerIn(m)
	if p == orgID {
		return orgID, nil
	}
	payer, err := v.Org(p)
	if err != nil {
		return "", err
	}
	if top := payer.DirectPayerIn(m); top != p && payer.Exists() {
		return top, nil
	}
	return p, nil
}
