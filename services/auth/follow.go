package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
)

// Follow keeps v current with the ledger's token events (domain.TokenFilter,
// billing.token.>): it applies every event recorded so far, calls loaded (when
// not nil) so the caller can start serving, then applies new events as they
// are appended, by any process, until ctx ends (it then returns nil).
//
// A token created or revoked through another process is therefore valid or
// invalid here within the subscription lag. Applying is idempotent, so the
// initial read, the subscription and the local Put/Revoke of the process that
// served the request may overlap.
func (v *Verifier) Follow(ctx context.Context, store eventstore.Store, loaded func()) error {
	var from uint64
	err := store.ReadAll(ctx, 0, domain.TokenFilter, func(r eventstore.Record) error {
		from = r.Position
		return v.Apply(r)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("load tokens: %w", err)
	}
	if loaded != nil {
		loaded()
	}
	err = store.Subscribe(ctx, from, domain.TokenFilter, v.Apply)
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("follow tokens: %w", err)
}

// Apply folds one token event into the verifier: TokenCreated adds the token
// (its hash; the event has no token), TokenRevoked makes it invalid. Other
// events are ignored.
func (v *Verifier) Apply(r eventstore.Record) error {
	ev := r.Event
	switch {
	case ev.GetTokenCreated() != nil:
		c := ev.GetTokenCreated()
		rec := TokenRecord{ID: c.GetTokenId(), Name: c.GetName(), Role: c.GetRole(), AccountID: c.GetAccountId(),
			SHA256: c.GetTokenSha256(), CreatedBy: ev.GetActor(), Origin: OriginLedger}
		if ev.GetRecordedAt() != nil {
			rec.CreatedAt = ev.GetRecordedAt().AsTime().UTC()
		}
		if err := v.Put(rec); err != nil {
			return fmt.Errorf("token event %s at position %d: %w", ev.GetEventId(), r.Position, err)
		}
	case ev.GetTokenRevoked() != nil:
		c := ev.GetTokenRevoked()
		at := ev.GetRecordedAt().AsTime()
		if !v.Revoke(c.GetTokenId(), at, c.GetReason()) {
			return fmt.Errorf("token event %s at position %d revokes unknown token %s", ev.GetEventId(), r.Position, c.GetTokenId())
		}
	}
	return nil
}
