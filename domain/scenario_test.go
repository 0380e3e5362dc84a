package domain

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// world is an in-memory set of streams: the test's View.
type world map[string][]*billingv1.Event

func (w world) Org(id string) (Org, error)                       { return FoldOrg(w[OrgStream(id)]), nil }
func (w world) Transfer(id string) (Transfer, error)             { return FoldTransfer(w[TransferStream(id)]), nil }
func (w world) Events(stream string) ([]*billingv1.Event, error) { return w[stream], nil }

// EachFamilyEvent implements FamilyReader for families "prefix.>", stream by
// stream in name order (the world keeps no global order), each event naming
// its stream as the store's envelope does.
func (w world) EachFamilyEvent(family string, fn func(*billingv1.Event) error) error {
	prefix, ok := strings.CutSuffix(family, ">")
	if !ok {
		return fmt.Errorf("world: family %q is not prefix.>", family)
	}
	for _, stream := range slices.Sorted(maps.Keys(w)) {
		if !strings.HasPrefix(stream, prefix) {
			continue
		}
		for _, e := range w[stream] {
			e = proto.Clone(e).(*billingv1.Event)
			e.Stream = stream
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w world) AccountOwner(id string) (string, error) {
	for _, e := range w[AccountStream(id)] {
		if c := e.GetAccountClaimed(); c != nil {
			return c.GetManagementAccountId(), nil
		}
	}
	return "", nil
}

// scenario is the given-when-then harness (STYLE "Tests"): Given sets up streams by
// running real decisions (Do) or raw events (Given), When runs the command under
// test, and Then/ThenError check the outcome exactly.
type scenario struct {
	t      *testing.T
	w      world
	now    time.Time
	policy Policy
}

func given(t *testing.T) *scenario {
	t.Helper()
	return &scenario{t: t, w: world{}, now: at("2026-08-10T12:00:00Z"), policy: DefaultPolicy}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// At moves the scenario's clock.
func (s *scenario) At(now string) *scenario { s.now = at(now); return s }

// Policy sets the limits.
func (s *scenario) Policy(p Policy) *scenario { s.policy = p; return s }

func (s *scenario) env() Env { return Env{Now: s.now, Policy: s.policy, NewTransferID: "rt-generated"} }

// Do runs a command that must succeed and applies its events.
func (s *scenario) Do(cmds ...proto.Message) *scenario {
	s.t.Helper()
	for _, c := range cmds {
		out, err := Decide(s.w, c, s.env())
		if err != nil {
			s.t.Fatalf("given %T: %v", c, err)
		}
		s.apply(out)
	}
	return s
}

func (s *scenario) apply(out Outcome) {
	for _, ch := range out.Changes {
		s.w[ch.Stream] = append(s.w[ch.Stream], ch.Events...)
	}
}

// Orgs registers organizations by management account id.
func (s *scenario) Orgs(ids ...string) *scenario {
	s.t.Helper()
	for _, id := range ids {
		s.Do(&billingv1.RegisterOrganization{ManagementAccountId: id, Name: "org " + id})
	}
	return s
}

type result struct {
	s   *scenario
	out Outcome
	err error
}

// When runs the command under test; its events are applied when it succeeds.
func (s *scenario) When(c proto.Message) *result {
	out, err := Decide(s.w, c, s.env())
	if err == nil {
		s.apply(out)
	}
	return &result{s: s, out: out, err: err}
}

// ThenError checks the rejection code and that the message contains each fragment.
func (r *result) ThenError(code Code, fragments ...string) *scenario {
	r.s.t.Helper()
	if r.err == nil {
		r.s.t.Fatalf("expected %s, got success with %d changes", code, len(r.out.Changes))
	}
	if got := CodeOf(r.err); got != code {
		r.s.t.Fatalf("expected %s, got %v", code, r.err)
	}
	for _, f := range fragments {
		if !strings.Contains(r.err.Error(), f) {
			r.s.t.Errorf("error %q does not mention %q", r.err, f)
		}
	}
	return r.s
}

// Then checks the exact changes, stream by stream.
func (r *result) Then(want ...Change) *scenario {
	r.s.t.Helper()
	if r.err != nil {
		r.s.t.Fatalf("expected success, got %v", r.err)
	}
	if diff := cmp.Diff(want, r.out.Changes, protocmp.Transform()); diff != "" {
		r.s.t.Fatalf("changes differ (-want +got):\n%s", diff)
	}
	return r.s
}

// ThenOK checks success and returns the outcome.
func (r *result) ThenOK() Outcome {
	r.s.t.Helper()
	if r.err != nil {
		r.s.t.Fatalf("expected success, got %v", r.err)
	}
	return r.out
}
