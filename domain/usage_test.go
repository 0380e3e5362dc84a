package domain

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

func usage(id, account, start, end string) *billingv1.UsageRecord {
	return &billingv1.UsageRecord{
		UsageId: id, AccountId: account, ChargePeriodStart: timestamppb.New(at(start)), ChargePeriodEnd: timestamppb.New(at(end)),
		Service: "AmazonEC2", UsageType: "BoxUsage:m6i.large", Operation: "RunInstances", Region: "us-east-1",
		Quantity: "10", Unit: "Hrs", ListUnitPrice: "0.096", BilledCost: "0.80", Currency: "USD",
	}
}

func TestU4_InvalidRecordsAreRejectedWithAReason(t *testing.T) {
	now := at("2026-10-01T00:00:00Z")
	ok := func() *billingv1.UsageRecord {
		return usage("u-1", sourceB, "2026-09-03T00:00:00Z", "2026-09-03T01:00:00Z")
	}
	for _, tc := range []struct {
		name   string
		mutate func(r *billingv1.UsageRecord)
		reason string
	}{
		{"valid", func(*billingv1.UsageRecord) {}, ""},
		{"no id", func(r *billingv1.UsageRecord) { r.UsageId = "" }, ReasonMissingField},
		{"bad account", func(r *billingv1.UsageRecord) { r.AccountId = "12ab" }, ReasonUnknownAccount},
		{"no service", func(r *billingv1.UsageRecord) { r.Service = "" }, ReasonMissingField},
		{"no period", func(r *billingv1.UsageRecord) { r.ChargePeriodEnd = nil }, ReasonMissingField},
		{"end before start", func(r *billingv1.UsageRecord) { r.ChargePeriodEnd = timestamppb.New(at("2026-09-02T00:00:00Z")) }, ReasonInvalidPeriod},
		{"future", func(r *billingv1.UsageRecord) {
			r.ChargePeriodStart = timestamppb.New(at("2026-10-02T00:00:00Z"))
			r.ChargePeriodEnd = timestamppb.New(at("2026-10-02T01:00:00Z"))
		}, ReasonInvalidPeriod},
		{"negative quantity", func(r *billingv1.UsageRecord) { r.Quantity = "-1" }, ReasonInvalidQuantity},
		{"non-numeric quantity", func(r *billingv1.UsageRecord) { r.Quantity = "ten" }, ReasonInvalidQuantity},
		{"NaN quantity", func(r *billingv1.UsageRecord) { r.Quantity = "NaN" }, ReasonInvalidQuantity},
		{"bad cost", func(r *billingv1.UsageRecord) { r.BilledCost = "1,5" }, ReasonInvalidAmount},
		{"negative cost is a credit", func(r *billingv1.UsageRecord) { r.BilledCost = "-0.50" }, ""},
		{"negative list price", func(r *billingv1.UsageRecord) { r.ListUnitPrice = "-0.1" }, ReasonInvalidAmount},
		{"unknown currency", func(r *billingv1.UsageRecord) { r.Currency = "XYZ" }, ReasonUnknownCurrency},
		{"zero quantity", func(r *billingv1.UsageRecord) { r.Quantity = "0" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.mutate(r)
			rej := ValidateUsage(r, now)
			got := ""
			if rej != nil {
				got = rej.Reason
				if rej.Message == "" {
					t.Fatal("rejection without a message")
				}
			}
			if got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, rej, tc.reason)
			}
		})
	}
}

func TestU2_ContentHashIdentifiesTheSameContent(t *testing.T) {
	a := usage("u-1", sourceB, "2026-09-03T00:00:00Z", "2026-09-03T01:00:00Z")
	a.Tags = map[string]string{"team": "a", "env": "prod", "cost": "x"}
	b := usage("u-1", sourceB, "2026-09-03T00:00:00Z", "2026-09-03T01:00:00Z")
	b.Tags = map[string]string{"cost": "x", "env": "prod", "team": "a"}
	if string(UsageContentHash(a)) != string(UsageContentHash(b)) {
		t.Fatal("same content, different hash")
	}
	b.BilledCost = "0.81"
	if string(UsageContentHash(a)) == string(UsageContentHash(b)) {
		t.Fatal("different content, same hash")
	}
	if UsagePartition("u-1", 16) != UsagePartition("u-1", 16) || UsagePartition("u-1", 16) >= 16 {
		t.Fatal("partition not stable or out of range")
	}
}

func TestU3_T6_T7_UsageIsBookedToThePayerInForceForItsMonth(t *testing.T) {
	// C → B → A chain from 2026-09; B's transfer to A is withdrawn at the end of 2026-10.
	s := given(t).Orgs(payerA, sourceB).
		Do(&billingv1.RegisterOrganization{ManagementAccountId: orgC, Name: "C", MemberAccountIds: []string{"333333333334"}}).
		Do(invite("rt-ba", payerA, sourceB, "2026-09"), accept("rt-ba"), invite("rt-cb", sourceB, orgC, "2026-10"), accept("rt-cb"))
	s.At("2026-10-05T00:00:00Z").Do(withdraw("rt-ba", "2026-10", payerA))
	for _, tc := range []struct {
		account, start, payer, direct, source string
	}{
		{"333333333334", "2026-08-15T00:00:00Z", orgC, orgC, orgC},       // before any transfer: itself
		{"333333333334", "2026-09-15T00:00:00Z", orgC, orgC, orgC},       // C's transfer starts in October
		{"333333333334", "2026-10-15T00:00:00Z", payerA, sourceB, orgC},  // two-level chain: the top payer
		{"333333333334", "2026-11-15T00:00:00Z", sourceB, sourceB, orgC}, // A's transfer ended: B
		{sourceB, "2026-09-15T00:00:00Z", payerA, payerA, sourceB},
		{sourceB, "2026-11-15T00:00:00Z", sourceB, sourceB, sourceB}, // after the end: itself
	} {
		r := usage("u", tc.account, tc.start, tc.start)
		b, rej, err := BookUsage(s.w, r, nil)
		if err != nil || rej != nil {
			t.Fatalf("%v %v", err, rej)
		}
		if b.GetPayerAccountId() != tc.payer || b.GetDirectPayerAccountId() != tc.direct || b.GetSourceAccountId() != tc.source ||
			b.GetChargeMonth() != tc.start[:7] || b.GetBookingMonth() != tc.start[:7] || b.GetCorrection() {
			t.Errorf("%s %s: booked %v", tc.account, tc.start, b)
		}
	}
	// Unknown account.
	if _, rej, _ := BookUsage(s.w, usage("u", "999999999999", "2026-09-15T00:00:00Z", "2026-09-15T00:00:00Z"), nil); rej == nil || rej.Reason != ReasonUnknownAccount {
		t.Fatalf("unknown account: %v", rej)
	}
	// A closed month books into the next open month as a correction (U3 hook).
	closed := func(payer string, m Month) bool {
		return payer == payerA && (m.String() == "2026-09" || m.String() == "2026-10")
	}
	b, _, _ := BookUsage(s.w, usage("u", sourceB, "2026-09-15T00:00:00Z", "2026-09-15T00:00:00Z"), closed)
	if b.GetBookingMonth() != "2026-11" || b.GetChargeMonth() != "2026-09" || !b.GetCorrection() {
		t.Fatalf("correction: %v", b)
	}
}

func TestM1_DecimalsAreExactAndCanonical(t *testing.T) {
	sum, _ := ParseDecimal("0")
	for _, s := range []string{"0.80", "0.096", "1e-12", "1000000000000.000000000001", "-0.896"} {
		d, err := ParseDecimal(s)
		if err != nil {
			t.Fatal(err)
		}
		if sum, err = AddDecimal(sum, d); err != nil {
			t.Fatal(err)
		}
	}
	if got := CanonicalDecimal(sum); got != "1000000000000.000000000002" {
		t.Fatalf("sum %s", got)
	}
	for in, want := range map[string]string{"1.50": "1.5", "2.00": "2", "-0.0": "0", "100": "100", "1E+3": "1000", "0.000": "0"} {
		d, _ := ParseDecimal(in)
		if got := CanonicalDecimal(d); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "1.2.3", "Infinity", "NaN", "0x10", "1,5"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
