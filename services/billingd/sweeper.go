package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"
)

// sweeper appends TransferExpired for invitations whose deadline passed (T3), so
// the read models show EXPIRED without waiting for a late command. It finds
// candidates in the transfers read model and lets the command pipeline decide,
// so a race with a late accept or another sweeper is settled by the transfer
// stream's version.
type sweeper struct {
	db       *readmodel.DB
	exec     commands.Executor
	clock    api.Clock
	interval time.Duration
	log      *slog.Logger
}

// SweeperActor is the actor of the events the sweeper appends.
const SweeperActor = "system:sweeper"

func (s *sweeper) run(ctx context.Context) error {
	tick := time.NewTicker(min(s.interval, time.Second))
	defer tick.Stop()
	var last time.Time
	var lastClock time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// Sweep every interval, and at once when a simulated clock moved.
		now := s.clock.Now()
		if time.Since(last) < s.interval && now.Equal(lastClock) {
			continue
		}
		last, lastClock = time.Now(), now
		s.sweep(ctx, now)
	}
}

func (s *sweeper) sweep(ctx context.Context, now time.Time) {
	ids, err := s.db.ExpiredInvitations(ctx, now)
	if err != nil {
		s.log.Error("sweeper: read transfers", "err", err)
		return
	}
	for _, id := range ids {
		req := &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_ExpireTransfer{ExpireTransfer: &billingv1.ExpireTransfer{TransferId: id}}}
		if _, err := s.exec.Execute(ctx, SweeperActor, req); err != nil && domain.CodeOf(err) != domain.CodeInvalidStateTransition {
			s.log.Error("sweeper: expire transfer", "transfer_id", id, "err", err)
		}
	}
}
