// Package scenario is the channel-partner scenario of issue #7 item 6, shared
// by `make demo` (services/demo) and the dashboard's browser test
// (services/e2e): a channel partner in the US paying for three customer
// organizations — a US reseller with its own end customer (a two-level chain,
// T7/P7), a German company and a Japanese company — with a pricing plan (a
// global markup and a service discount), a flat support fee and a percentage
// management fee, two months of usage, September closed with invoices in USD,
// EUR and JPY, and a partial payment.
//
// The scenario is data: Steps lists billctl invocations (arguments and
// stdin), which the caller runs against its billingd with an admin token.
package scenario

import (
	"fmt"
	"strings"
	"time"
)

// Accounts of the scenario.
const (
	// Partner is the channel partner: the payer of the three customer organizations.
	Partner = "100000000001"
	// PartnerOps is a member account of the partner's own organization.
	PartnerOps = "100000000002"
	// Reseller is the US reseller's management account (paid for by the partner).
	Reseller = "200000000001"
	// ResellerDev is a member account of the reseller.
	ResellerDev = "200000000002"
	// EndCustomer is the reseller's end customer (the second level of the chain).
	EndCustomer = "210000000001"
	// Germany is the German organization's management account.
	Germany = "300000000001"
	// GermanyDev is a member account of the German organization.
	GermanyDev = "300000000002"
	// Japan is the Japanese organization's management account.
	Japan = "400000000001"
)

// Start is the simulated clock billingd starts from: Setup is applied then.
const Start = "2026-08-10T00:00:00Z"

// ClosedMonth is the month the scenario closes (invoices in USD, EUR and
// JPY, a partial payment); the month after it is open.
const ClosedMonth = "2026-09"

// Step is one billctl invocation: its arguments after the global flags
// (--server, --token, -o) and its stdin ("" for none).
type Step struct {
	// What the step does, for progress output.
	What string
	// Stdin is fed to billctl ("" for none).
	Stdin string
	// Args are billctl's arguments, e.g. {"apply", "-f", "-"}.
	Args []string
}

// Steps returns the scenario in order, for a billingd started with the
// simulated clock at Start and an admin token.
func Steps() []Step {
	return []Step{
		{"organizations, transfers (a two-level chain), pricing, fees, tax, FX", Setup, []string{"apply", "-f", "-"}},
		{"clock to the end of September", "", []string{"clock", "set", "2026-09-29T00:00:00Z"}},
		{"September usage", Usage("2026-09"), []string{"usage", "send", "-f", "-"}},
		{"clock to October 1st", "", []string{"clock", "set", "2026-10-01T06:00:00Z"}},
		{"close September: invoices in USD, EUR and JPY", "", []string{"close", "--payer", Partner, "--month", ClosedMonth}},
		{"clock to the end of October", "", []string{"clock", "set", "2026-10-29T00:00:00Z"}},
		{"October usage", Usage("2026-10"), []string{"usage", "send", "-f", "-"}},
		{"a partial payment of the USD invoice", `{"command":"RecordPayment","payment_id":"pay-2026-10-15","payer_account_id":"` + Partner + `","amount":"500.00","currency":"USD","method":"CARD"}` + "\n", []string{"apply", "-f", "-"}},
	}
}

// Setup is applied with `billctl apply` while the clock stands at Start:
// organizations, transfers, pricing, fees, tax settings and rates, exchange
// rates and payment profiles.
var Setup = strings.TrimSpace(`
{"command":"RegisterOrganization","management_account_id":"100000000001","name":"Cloud Partner Inc","member_account_ids":["100000000002"]}
{"command":"RegisterOrganization","management_account_id":"200000000001","name":"Reseller LLC (US)","member_account_ids":["200000000002"]}
{"command":"RegisterOrganization","management_account_id":"210000000001","name":"End Customer Co (US)"}
{"command":"RegisterOrganization","management_account_id":"300000000001","name":"Bauhaus GmbH (DE)","member_account_ids":["300000000002"]}
{"command":"RegisterOrganization","management_account_id":"400000000001","name":"Sakura KK (JP)"}
{"command":"CreatePricingRule","pricing_rule_id":"markup-15","owner_account_id":"100000000001","name":"global-markup-15","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"15"}
{"command":"CreatePricingRule","pricing_rule_id":"ec2-discount-5","owner_account_id":"100000000001","name":"ec2-discount-5","type":"DISCOUNT","scope":"SERVICE","service":"AmazonEC2","modifier_percentage":"5"}
{"command":"CreatePricingPlan","pricing_plan_id":"partner-standard","owner_account_id":"100000000001","name":"standard","pricing_rule_ids":["markup-15","ec2-discount-5"]}
{"command":"CreatePricingRule","pricing_rule_id":"reseller-markup-10","owner_account_id":"200000000001","name":"reseller-markup-10","type":"MARKUP","scope":"GLOBAL","modifier_percentage":"10"}
{"command":"CreatePricingPlan","pricing_plan_id":"reseller-standard","owner_account_id":"200000000001","name":"reseller","pricing_rule_ids":["reseller-markup-10"]}
{"command":"InviteBillSource","transfer_id":"rt-end","payer_account_id":"200000000001","source_account_id":"210000000001","start_month":"2026-09","pricing_plan_id":"reseller-standard"}
{"command":"AcceptTransfer","transfer_id":"rt-end"}
{"command":"InviteBillSource","transfer_id":"rt-us","payer_account_id":"100000000001","source_account_id":"200000000001","start_month":"2026-09","pricing_plan_id":"partner-standard"}
{"command":"AcceptTransfer","transfer_id":"rt-us"}
{"command":"InviteBillSource","transfer_id":"rt-de","payer_account_id":"100000000001","source_account_id":"300000000001","start_month":"2026-09","pricing_plan_id":"partner-standard"}
{"command":"AcceptTransfer","transfer_id":"rt-de"}
{"command":"InviteBillSource","transfer_id":"rt-jp","payer_account_id":"100000000001","source_account_id":"400000000001","start_month":"2026-09","pricing_plan_id":"partner-standard"}
{"command":"AcceptTransfer","transfer_id":"rt-jp"}
{"command":"CreateCustomLineItem","custom_line_item_id":"support-us","billing_group_id":"tbg-rt-us","name":"support","charge_type":"FEE","flat_amount":"250","start_month":"2026-09"}
{"command":"CreateCustomLineItem","custom_line_item_id":"support-de","billing_group_id":"tbg-rt-de","name":"support","charge_type":"FEE","flat_amount":"250","start_month":"2026-09"}
{"command":"CreateCustomLineItem","custom_line_item_id":"support-jp","billing_group_id":"tbg-rt-jp","name":"support","charge_type":"FEE","flat_amount":"250","start_month":"2026-09"}
{"command":"CreateCustomLineItem","custom_line_item_id":"mgmt-us","billing_group_id":"tbg-rt-us","name":"management-fee","charge_type":"FEE","percentage":"3","start_month":"2026-09"}
{"command":"CreateCustomLineItem","custom_line_item_id":"mgmt-de","billing_group_id":"tbg-rt-de","name":"management-fee","charge_type":"FEE","percentage":"3","start_month":"2026-09"}
{"command":"CreateCustomLineItem","custom_line_item_id":"mgmt-jp","billing_group_id":"tbg-rt-jp","name":"management-fee","charge_type":"FEE","percentage":"3","start_month":"2026-09"}
{"command":"SetTaxSettings","account_id":"100000000001","legal_name":"Cloud Partner Inc","country":"US","region":"WA","tax_registration_number":"91-1234567"}
{"command":"SetTaxSettings","account_id":"300000000001","legal_name":"Bauhaus GmbH","country":"DE","tax_registration_number":"DE123456789"}
{"command":"SetTaxSettings","account_id":"400000000001","legal_name":"Sakura KK","country":"JP","tax_registration_number":"T1234567890123"}
{"command":"CreateInvoiceUnit","invoice_unit_id":"iu-germany","owner_account_id":"100000000001","name":"Germany","receiver_account_id":"300000000001","account_ids":["300000000001","300000000002"],"tax_inheritance_disabled":true}
{"command":"CreateInvoiceUnit","invoice_unit_id":"iu-japan","owner_account_id":"100000000001","name":"Japan","receiver_account_id":"400000000001","account_ids":["400000000001"],"tax_inheritance_disabled":true}
{"command":"SetTaxRate","jurisdiction":"US-WA","rate_percentage":"10.25","effective_from":"2026-01-01"}
{"command":"SetTaxRate","jurisdiction":"DE","rate_percentage":"19","effective_from":"2026-01-01"}
{"command":"SetTaxRate","jurisdiction":"JP","rate_percentage":"10","effective_from":"2019-10-01"}
{"command":"SetExchangeRate","from":"USD","to":"EUR","rate":"0.9215","effective_date":"2026-09-01"}
{"command":"SetExchangeRate","from":"USD","to":"JPY","rate":"151.37","effective_date":"2026-09-01"}
{"command":"SetPaymentProfile","payer_account_id":"100000000001","seller":"Amazon Web Services, Inc.","currency":"USD","payment_method":"CARD"}
{"command":"SetPaymentProfile","payer_account_id":"100000000001","seller":"Amazon Web Services EMEA SARL","currency":"EUR","payment_method":"BANK_TRANSFER"}
`) + "\n"

// demoAccounts are the accounts with usage, with a size factor.
var demoAccounts = []struct {
	id     string
	factor int
}{
	{PartnerOps, 2}, {Reseller, 5}, {ResellerDev, 3}, {EndCustomer, 4}, {Germany, 6}, {GermanyDev, 2}, {Japan, 7},
}

// demoServices are the services used, with a unit price in USD per unit and a unit.
var demoServices = []struct{ name, usageType, unit, price string }{
	{"AmazonEC2", "BoxUsage:m7i.large", "Hrs", "0.1008"},
	{"AmazonS3", "TimedStorage-ByteHrs", "GB-Mo", "0.023"},
	{"AmazonRDS", "InstanceUsage:db.r6g.large", "Hrs", "0.258"},
}

// Usage returns a month's usage as JSON Lines: for every account, every
// third day, every service, one record whose quantity follows the account's
// size; costs are quantity × price, exact decimals.
func Usage(month string) string {
	start, err := time.Parse("2006-01", month)
	if err != nil {
		panic(err)
	}
	var b strings.Builder
	growth := int(start.Month()) - 8 // September 1, October 2: usage grows
	for _, a := range demoAccounts {
		for day := 1; day <= 28; day += 3 {
			t := start.AddDate(0, 0, day-1)
			for si, s := range demoServices {
				qty := a.factor*(10+day%7+growth*si) + si*3
				cost := mulPrice(qty, s.price)
				fmt.Fprintf(&b, `{"usage_id":"demo-%s-%s-%02d-%s","account_id":"%s","charge_period_start":"%s","charge_period_end":"%s","service":"%s","usage_type":"%s","quantity":"%d","unit":"%s","list_unit_price":"%s","billed_cost":"%s","currency":"USD"}`+"\n",
					month, a.id, day, s.name, a.id, t.Format(time.RFC3339), t.Add(24*time.Hour).Format(time.RFC3339), s.name, s.usageType, qty, s.unit, s.price, cost)
			}
		}
	}
	return b.String()
}

// mulPrice multiplies an integer quantity by a decimal price exactly, as text.
func mulPrice(qty int, price string) string {
	whole, frac, _ := strings.Cut(price, ".")
	digits := whole + frac
	var n int64
	for _, c := range digits {
		n = n*10 + int64(c-'0')
	}
	n *= int64(qty)
	s := fmt.Sprintf("%0*d", len(frac)+1, n)
	return s[:len(s)-len(frac)] + "." + s[len(s)-len(frac):]
}
