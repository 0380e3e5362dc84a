package commands_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// fixedClock is a settable ledger clock.
type fixedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fixedClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fixedClock) Set(s string) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func newClock() *fixedClock { c := &fixedClock{}; c.Set("2026-08-10T12:00:00Z"); return c }

func exec(t *testing.T, p commands.Executor, cmd any) (*billingv1.CommandResult, error) {
	t.Helper()
	return p.Execute(context.Background(), "test", request(cmd))
}

func must(t *testing.T, p commands.Executor, cmds ...any) *billingv1.CommandResult {
	t.Helper()
	var res *billingv1.CommandResult
	for _, c := range cmds {
		var err error
		if res, err = exec(t, p, c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	return res
}

func request(cmd any) *billingv1.ExecuteRequest {
	switch c := cmd.(type) {
	case *billingv1.ExecuteRequest:
		return c
	case *billingv1.RegisterOrganization:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: c}}
	case *billingv1.AddAccount:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_AddAccount{AddAccount: c}}
	case *billingv1.InviteBillSource:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_InviteBillSource{InviteBillSource: c}}
	case *billingv1.AcceptTransfer:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_AcceptTransfer{AcceptTransfer: c}}
	case *billingv1.DeclineTransfer:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_DeclineTransfer{DeclineTransfer: c}}
	case *billingv1.CancelTransfer:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_CancelTransfer{CancelTransfer: c}}
	case *billingv1.WithdrawTransfer:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_WithdrawTransfer{WithdrawTransfer: c}}
	case *billingv1.ExpireTransfer:
		return &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_ExpireTransfer{ExpireTransfer: c}}
	case proto.Message:
		// Any other command: the oneof field whose message type is the command's.
		req := &billingv1.ExecuteRequest{}
		m := req.ProtoReflect()
		fields := m.Descriptor().Oneofs().ByName("command").Fields()
		for i := 0; i < fields.Len(); i++ {
			if fd := fields.Get(i); fd.Message().FullName() == c.ProtoReflect().Descriptor().FullName() {
				m.Set(fd, protoreflect.ValueOfMessage(c.ProtoReflect()))
				return req
			}
		}
	}
	panic(fmt.Sprintf("unknown command %T", cmd))
}

func org(id string, members ...string) *billingv1.RegisterOrganization {
	return &billingv1.RegisterOrganization{ManagementAccountId: id, Name: "org " + id, MemberAccountIds: members}
}

func invite(tid, payer, source, month string) *billingv1.InviteBillSource {
	return &billingv1.InviteBillSource{TransferId: tid, PayerAccountId: payer, SourceAccountId: source, StartMonth: month}
}

func lastPosition(t *testing.T, s eventstore.Store) uint64 {
	t.Helper()
	p, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func forEachStore(t *testing.T, fn func(t *testing.T, newStore func() eventstore.Store)) {
	for name, mk := range storeFactories(t) {
		t.Run(name, func(t *testing.T) { fn(t, mk) })
	}
}

func TestPipeline_LifecycleAppendsChainedEventsOnEveryStream(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		p := commands.New(store, newClock(), commands.Options{})
		must(t, p, org("111111111111"), org("222222222222", "222222222223"))
		res := must(t, p, invite("rt-1", "111111111111", "222222222222", "2026-09"))
		if res.GetAggregateId() != "rt-1" || len(res.GetEventIds()) != 3 || res.GetPosition() == 0 {
			t.Fatalf("invite result %v", res)
		}
		must(t, p, &billingv1.AcceptTransfer{TransferId: "rt-1"})
		ctx := context.Background()
		for stream, want := range map[string]int{
			"billing.transfer.rt-1":                       2,
			"billing.org.111111111111":                    3,
			"billing.org.222222222222":                    3,
			"billing.account.222222222223":                1,
			"billing.pricing.111111111111.group.tbg-rt-1": 1,
		} {
			recs, err := store.ReadStream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != want {
				t.Errorf("%s: %d events, want %d", stream, len(recs), want)
			}
			if err := eventstore.VerifyChain(stream, recs); err != nil {
				t.Error(err)
			}
			for _, r := range recs {
				if r.Event.GetActor() != "test" || r.Event.GetEventId() == "" || !r.Event.GetRecordedAt().AsTime().Equal(newClock().Now()) {
					t.Errorf("%s v%d: envelope %v", stream, r.Event.GetStreamVersion(), r.Event)
				}
			}
		}
	})
}

func TestPipeline_RejectedCommandAppendsNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		p := commands.New(store, newClock(), commands.Options{})
		must(t, p, org("111111111111"))
		before := lastPosition(t, store)
		_, err := exec(t, p, invite("rt-1", "111111111111", "111111111111", "2026-09"))
		if domain.CodeOf(err) != domain.CodeSourceAndTargetCannotMatch {
			t.Fatalf("err %v", err)
		}
		_, err = exec(t, p, &billingv1.ExecuteRequest{})
		if domain.CodeOf(err) != domain.CodeInvalidArgument {
			t.Fatalf("empty request: %v", err)
		}
		if after := lastPosition(t, store); after != before {
			t.Fatalf("position moved from %d to %d", before, after)
		}
	})
}

func TestPipeline_RequestIDMakesCommandsIdempotent(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		p := commands.New(store, newClock(), commands.Options{})
		must(t, p, org("111111111111"), org("222222222222"))
		cmd := &billingv1.InviteBillSource{PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09", RequestId: "req-1"}
		first := must(t, p, cmd)
		if first.GetReplayed() || first.GetAggregateId() == "" || first.GetCorrelationId() != "req-1" {
			t.Fatalf("first %v", first)
		}
		// Every event carries the request id as its correlation id (logs and events join on it).
		recs, err := store.ReadStream(context.Background(), "billing.transfer."+first.GetAggregateId())
		if err != nil || len(recs) != 1 || recs[0].Event.GetCorrelationId() != "req-1" {
			t.Fatalf("transfer events %v, %v", recs, err)
		}
		pos := lastPosition(t, store)
		// A retry (even from another pipeline instance) returns the first result.
		again := must(t, commands.New(store, newClock(), commands.Options{}), cmd)
		if !again.GetReplayed() || again.GetAggregateId() != first.GetAggregateId() || len(again.GetEventIds()) != 3 || again.GetEventIds()[0] != first.GetEventIds()[0] {
			t.Fatalf("retry %v, first %v", again, first)
		}
		if lastPosition(t, store) != pos {
			t.Fatal("retry appended events")
		}
		// Same id, different content: rejected, nothing appended.
		_, err = exec(t, p, &billingv1.InviteBillSource{PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-10", RequestId: "req-1"})
		if domain.CodeOf(err) != domain.CodeRequestIDConflict {
			t.Fatalf("err %v", err)
		}
		_, err = exec(t, p, &billingv1.AcceptTransfer{TransferId: first.GetAggregateId(), RequestId: "req-1"})
		if domain.CodeOf(err) != domain.CodeRequestIDConflict {
			t.Fatalf("err %v", err)
		}
		_, err = exec(t, p, &billingv1.AcceptTransfer{TransferId: first.GetAggregateId(), RequestId: "bad id!"})
		if domain.CodeOf(err) != domain.CodeInvalidArgument {
			t.Fatalf("err %v", err)
		}
		if lastPosition(t, store) != pos {
			t.Fatal("rejected commands appended events")
		}
	})
}

func TestPipeline_ConcurrentRetriesOfOneRequestApplyOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		must(t, commands.New(store, newClock(), commands.Options{}), org("111111111111"), org("222222222222"))
		cmd := &billingv1.InviteBillSource{PayerAccountId: "111111111111", SourceAccountId: "222222222222", StartMonth: "2026-09", RequestId: "req-race"}
		var wg sync.WaitGroup
		ids := make([]string, 8)
		errs := make([]error, 8)
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := commands.New(store, newClock(), commands.Options{}).Execute(context.Background(), "test", request(cmd))
				errs[i] = err
				ids[i] = res.GetAggregateId()
			}()
		}
		wg.Wait()
		for i := range ids {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("retry %d: id %q err %v (first %q)", i, ids[i], errs[i], ids[0])
			}
		}
		recs, _ := store.ReadStream(context.Background(), "billing.org.222222222222")
		if len(recs) != 2 { // registered + one link
			t.Fatalf("source org has %d events, want 2", len(recs))
		}
	})
}

// TestT4_RaceBetweenTwoPipelinesHasExactlyOneWinner runs racing invitations of one
// source organization from separate pipelines (separate store clients where the
// adapter has them): the source organization's stream version lets exactly one win.
func TestT4_RaceBetweenTwoPipelinesHasExactlyOneWinner(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		setup := newStore()
		payers := []string{"111111111111", "333333333333", "444444444444", "555555555555"}
		p0 := commands.New(setup, newClock(), commands.Options{})
		for _, id := range payers {
			must(t, p0, org(id))
		}
		for round := 0; round < 5; round++ {
			source := "2222222222" + string(rune('0'+round)) + "0"
			must(t, p0, org(source))
			var wg sync.WaitGroup
			errs := make([]error, len(payers))
			start := make(chan struct{})
			for i, payer := range payers {
				wg.Add(1)
				p := commands.New(newStore(), newClock(), commands.Options{})
				go func() {
					defer wg.Done()
					<-start
					_, errs[i] = exec(t, p, invite("", payer, source, "2026-09"))
				}()
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch domain.CodeOf(err) {
				case "":
					if err != nil {
						t.Fatalf("unexpected error %v", err)
					}
					wins++
				case domain.CodeTransferAlreadyExists:
				default:
					t.Fatalf("unexpected rejection %v", err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d winners, want exactly 1 (%v)", round, wins, errs)
			}
			recs, _ := setup.ReadStream(context.Background(), "billing.org."+source)
			if len(recs) != 2 {
				t.Fatalf("round %d: source stream has %d events, want 2", round, len(recs))
			}
		}
	})
}

// TestT7_RaceThatWouldMakeADepthThreeChainHasOneWinner races the two edges whose
// union is a three-level chain (D→C and B→A, with C→B in place): they touch
// disjoint source/payer pairs, and only the write to the middle organization's
// stream makes them conflict.
func TestT7_RaceThatWouldMakeADepthThreeChainHasOneWinner(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func() eventstore.Store) {
		store := newStore()
		p := commands.New(store, newClock(), commands.Options{})
		for round := 0; round < 5; round++ {
			a, b, c, d := fmt.Sprintf("1%011d", round), fmt.Sprintf("2%011d", round), fmt.Sprintf("3%011d", round), fmt.Sprintf("4%011d", round)
			must(t, p, org(a), org(b), org(c), org(d))
			must(t, p, invite("", b, c, "2026-09"))
			var wg sync.WaitGroup
			errs := make([]error, 2)
			start := make(chan struct{})
			for i, cmd := range []*billingv1.InviteBillSource{
				invite("", a, b, "2026-09"),
				invite("", c, d, "2026-09"),
			} {
				wg.Add(1)
				pi := commands.New(newStore(), newClock(), commands.Options{})
				go func() { defer wg.Done(); <-start; _, errs[i] = exec(t, pi, cmd) }()
			}
			close(start)
			wg.Wait()
			okCount, deep := 0, 0
			for _, err := range errs {
				switch {
				case err == nil:
					okCount++
				case domain.CodeOf(err) == domain.CodeChainTooDeep:
					deep++
				default:
					t.Fatalf("unexpected %v", err)
				}
			}
			if okCount != 1 || deep != 1 {
				t.Fatalf("round %d: %d accepted, %d CHAIN_TOO_DEEP; want 1 and 1", round, okCount, deep)
			}
		}
	})
}
