package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// queryMethods are the QueryService methods the fuzz test aims at.
var queryMethods = []string{"ListTransfers", "ReportBillable", "MonthDigest", "ReportProforma", "ReportCost", "ReportInvoices", "ReportPayments", "ReportTax", "ListBillingViews"}

// FuzzSourceCannotSeeBilledCost (A2) sends arbitrary JSON bodies to every
// QueryService method with the token of source S or source T of the access
// world, and fails if any 200 answer names billed cost, billable cost or
// margin, or an account of another organization. Denials and invalid
// requests may say anything; they are not a leak of data.
//
// `go test` (and CI) runs the seed corpus below as a unit test. For a longer
// search:
//
//	go test ./services/api -run '^$' -fuzz FuzzSourceCannotSeeBilledCost -fuzztime 2m
//
// New failing inputs are saved under testdata/fuzz/FuzzSourceCannotSeeBilledCost
// and replayed by every later `go test`.
func FuzzSourceCannotSeeBilledCost(f *testing.F) {
	seeds := []string{
		`{}`,
		`{"month":"2026-09"}`,
		`{"month":"2026-10"}`,
		`{"month":"2026-09","payerAccountId":"111111111111"}`,
		`{"month":"2026-09","payerAccountId":"333333333333"}`,
		`{"month":"2026-09","payer_account_id":"333333333333"}`,
		`{"month":"2026-09","sourceAccountId":"444444444444"}`,
		`{"month":"2026-09","sourceAccountId":"222222222222"}`,
		`{"month":"2026-09","accountId":"444444444445"}`,
		`{"month":"2026-09","accountId":"222222222223"}`,
		`{"month":"2026-09","accountId":"111111111112"}`,
		`{"month":"2026-09","billingGroupId":"tbg-rt-qt"}`,
		`{"month":"2026-09","billingGroupId":"tbg-rt-ps"}`,
		`{"month":"2026-09","billingViewId":"bv-p-s"}`,
		`{"month":"2026-09","billingViewId":"bv-p-all"}`,
		`{"month":"2026-09","billingViewId":"bv-q-t"}`,
		`{"month":"2026-09","billingViewId":"bv-p-s","payerAccountId":"333333333333"}`,
		`{"month":"2026-09","billingViewId":"bv-q-t","accountId":"444444444445"}`,
		`{"month":" 2026-09 ","payerAccountId":" 333333333333 "}`,
		`{"month":"2026-09","status":"ACCEPTED"}`,
		`{"payerAccountId":"","sourceAccountId":""}`,
		`{"month":"2026-09","unknown":1}`,
		`not json`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), i%2 == 0, s)
	}
	// ListBillingViews (the last method) with each source's token.
	for _, s := range []string{
		`{}`,
		`{"includeDeleted":true}`,
		`{"ownerAccountId":"333333333333","includeDeleted":true}`,
		`{"ownerAccountId":"111111111111"}`,
		`{"granteeAccountId":"444444444444"}`,
		`{"granteeAccountId":"222222222222"}`,
		`{"owner_account_id":"111111111111","grantee_account_id":"222222222222","include_deleted":true}`,
	} {
		f.Add(uint8(len(queryMethods)-1), false, s)
		f.Add(uint8(len(queryMethods)-1), true, s)
	}
	f.Fuzz(func(t *testing.T, method uint8, asT bool, body string) {
		w := accessWorld(t)
		who := "S"
		if asT {
			who = "T"
		}
		m := queryMethods[int(method)%len(queryMethods)]
		req, err := http.NewRequest(http.MethodPost, w.url+"/billing.v1.QueryService/"+m, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+w.tokens[who])
		res, err := w.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			return
		}
		if leak := findLeak(who, out); leak != "" {
			t.Fatalf("%s %s %s → 200 leaking %s:\n%s", who, m, body, leak, out)
		}
	})
}
