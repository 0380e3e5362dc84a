package main

import (
	"context"
	"fmt"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// DefaultsActor is the actor of the configuration billingd ships (X1).
const DefaultsActor = "system:defaults"

// seedDefaults loads the shipped sellers of record as ordinary events on the first
// start (X1), so they can be listed, replayed and changed like any other
// configuration. A country already configured is left alone, and every command
// carries a fixed request id, so two processes starting at once seed once.
func seedDefaults(ctx context.Context, store eventstore.Store, exec commands.Executor) (int, error) {
	seeded := 0
	for _, cmd := range domain.DefaultSellersOfRecord() {
		recs, err := store.ReadStream(ctx, domain.SellerOfRecordStream(cmd.GetCountry()))
		if err != nil {
			return seeded, fmt.Errorf("read seller of record %s: %w", cmd.GetCountry(), err)
		}
		if len(recs) > 0 {
			continue
		}
		cmd.RequestId = "default-seller-of-record-" + cmd.GetCountry()
		req := &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_SetSellerOfRecord{SetSellerOfRecord: cmd}}
		if _, err := exec.Execute(ctx, DefaultsActor, req); err != nil {
			return seeded, fmt.Errorf("default seller of record %s: %w", cmd.GetCountry(), err)
		}
		seeded++
	}
	return seeded, nil
}
