package commands

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// Sealer seals every closed month (issue #6): it follows the month streams and,
// for each MonthClosed without a seal, appends a signed MonthSealed naming the
// head of every stream the close wrote (the month stream, each usage partition
// up to the close's marker, the receivable up to the close's posting). Several
// processes may run one: the seal stream is written once (expected version 0).
type Sealer struct {
	store eventstore.Store
	clock Clock
	key   ed25519.PrivateKey
	log   *slog.Logger
}

// NewSealer returns a sealer signing with key.
func NewSealer(store eventstore.Store, clock Clock, key ed25519.PrivateKey, log *slog.Logger) *Sealer {
	if log == nil {
		log = slog.Default()
	}
	return &Sealer{store: store, clock: clock, key: key, log: log}
}

// Run seals closed months until ctx ends.
func (s *Sealer) Run(ctx context.Context) error {
	return s.store.Subscribe(ctx, 0, "billing.month.>", func(r eventstore.Record) error {
		mc := r.Event.GetMonthClosed()
		if mc == nil {
			return nil
		}
		if _, err := s.Seal(ctx, r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// A seal that cannot be written now is retried at the next start;
			// the close itself stands.
			s.log.Error("seal month", "payer", mc.GetPayerAccountId(), "month", mc.GetMonth(), "err", err)
		}
		return nil
	})
}

// errStop ends a ReadAll early.
var errStop = errors.New("stop")

// Seal seals the close recorded at closed (a MonthClosed record) unless it is
// sealed already, and returns the seal (nil when another process sealed it).
func (s *Sealer) Seal(ctx context.Context, closed eventstore.Record) (*billingv1.MonthSealed, error) {
	mc := closed.Event.GetMonthClosed()
	payer, month := mc.GetPayerAccountId(), mc.GetMonth()
	stream := domain.SealStream(payer, month)
	if recs, err := s.store.ReadStream(ctx, stream); err != nil || len(recs) > 0 {
		return nil, err
	}
	heads, err := CloseHeads(ctx, s.store, closed)
	if err != nil {
		return nil, err
	}
	seal := eventstore.NewMonthSeal(payer, month, heads, s.key)
	now := s.clock.Now().UTC()
	id, err := NewV7At(now)
	if err != nil {
		return nil, err
	}
	ev := &billingv1.Event{EventId: id.String(), RecordedAt: timestamppb.New(now), Actor: "sealer",
		CorrelationId: closed.Event.GetCorrelationId(), CausationId: closed.Event.GetEventId(),
		Payload: &billingv1.Event_MonthSealed{MonthSealed: seal}}
	if _, err := s.store.Append(ctx, eventstore.StreamAppend{Stream: stream, ExpectedVersion: 0, Events: []*billingv1.Event{ev}}); err != nil {
		if eventstore.IsConflict(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("append seal %s: %w", stream, err)
	}
	return seal, nil
}

// CloseHeads returns the head of every stream the close at closed wrote: its
// events are one atomic append, so the partition markers and the postings come
// right after the MonthClosed record.
func CloseHeads(ctx context.Context, store eventstore.Store, closed eventstore.Record) ([]*billingv1.SealedStream, error) {
	mc := closed.Event.GetMonthClosed()
	payer, month := mc.GetPayerAccountId(), mc.GetMonth()
	ms := domain.MonthStream(payer, month)
	recs, err := store.ReadStream(ctx, ms)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("month stream %s is empty", ms)
	}
	last := recs[len(recs)-1].Event
	heads := []*billingv1.SealedStream{{Stream: ms, Version: last.GetStreamVersion(), Hash: last.GetHash()}}
	found := 0
	err = store.ReadAll(ctx, closed.Position, domain.UsageMonthFilter(month), func(r eventstore.Record) error {
		if m := r.Event.GetUsageMonthClosed(); m != nil && m.GetPayerAccountId() == payer && m.GetMonth() == month {
			heads = append(heads, &billingv1.SealedStream{Stream: r.Event.GetStream(), Version: r.Event.GetStreamVersion(), Hash: r.Event.GetHash()})
			if found++; found == domain.UsagePartitions {
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if found != domain.UsagePartitions {
		return nil, fmt.Errorf("found %d of the %d usage partition markers of the close of %s by %s", found, domain.UsagePartitions, month, payer)
	}
	// The close's invoices, counted (new closes) or listed (closes written
	// before MonthClosed counted them).
	if want := domain.ClosedInvoiceCount(mc); want > 0 {
		rs := domain.ReceivableStream(payer)
		var posted *billingv1.SealedStream
		// A large close posts its invoices in several consecutive InvoicesPosted
		// events (one atomic append): the head is the one that completes the
		// close's invoices, so a read that sees only part of the append fails
		// instead of sealing a prefix.
		found := 0
		err = store.ReadAll(ctx, closed.Position, rs, func(r eventstore.Record) error {
			if p := r.Event.GetInvoicesPosted(); p != nil && p.GetMonth() == month {
				found += len(p.GetInvoices())
				if found >= want {
					posted = &billingv1.SealedStream{Stream: rs, Version: r.Event.GetStreamVersion(), Hash: r.Event.GetHash()}
					return errStop
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
		if posted == nil {
			return nil, fmt.Errorf("the invoices of the close of %s by %s were not posted to %s (%d of %d found)", month, payer, rs, found, want)
		}
		heads = append(heads, posted)
	}
	return heads, nil
}
