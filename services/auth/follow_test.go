package auth

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/memstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// appendToken appends a token event as the command pipeline would.
func appendToken(t *testing.T, store eventstore.Store, id string, version uint64, at time.Time, payload *billingv1.Event) {
	t.Helper()
	payload.EventId, payload.RecordedAt, payload.Actor = id+"-"+at.Format("150405"), timestamppb.New(at), "admin"
	if _, err := store.Append(context.Background(), eventstore.StreamAppend{Stream: domain.TokenStream(id), ExpectedVersion: version, Events: []*billingv1.Event{payload}}); err != nil {
		t.Fatal(err)
	}
}

func created(id, role, account, token string) *billingv1.Event {
	return &billingv1.Event{Payload: &billingv1.Event_TokenCreated{TokenCreated: &billingv1.TokenCreated{
		TokenId: id, Name: "holder-" + id, Role: role, AccountId: account, TokenSha256: HashToken(token)}}}
}

// TestFollowSharesTokensAcrossProcesses (A1): two verifiers (two billingd
// processes) follow one store; a token created and revoked through the store
// becomes valid, then invalid, on both, and the first-start file token of
// each stays valid on its own process only.
func TestFollowSharesTokensAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memstore.New()
	t0 := time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)
	appendToken(t, store, "tok-old", 0, t0, created("tok-old", RoleAuditor, "", "blt_old"))

	one, _ := NewVerifier(TokenRecord{Name: AdminName, Role: RoleAdmin, SHA256: HashToken("blt_admin-1")})
	two, _ := NewVerifier(TokenRecord{Name: AdminName, Role: RoleAdmin, SHA256: HashToken("blt_admin-2")})
	for _, v := range []*Verifier{one, two} {
		loaded := make(chan struct{})
		go func() {
			if err := v.Follow(ctx, store, func() { close(loaded) }); err != nil {
				t.Error(err)
			}
		}()
		<-loaded
		// Tokens recorded before the start are valid once Follow reports loaded.
		if p, err := v.Verify("blt_old"); err != nil || p != (Principal{Name: "holder-tok-old", Role: RoleAuditor}) {
			t.Fatalf("old token: %+v, %v", p, err)
		}
	}
	if _, err := two.Verify("blt_admin-1"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("process 2 accepted process 1's file token: %v", err)
	}

	appendToken(t, store, "tok-p", 0, t0.Add(time.Minute), created("tok-p", RolePayer, "111111111111", "blt_payer"))
	waitFor(t, func() bool {
		_, e1 := one.Verify("blt_payer")
		_, e2 := two.Verify("blt_payer")
		return e1 == nil && e2 == nil
	})
	rec, ok := two.Lookup("tok-p")
	if !ok || rec.Origin != OriginLedger || rec.CreatedBy != "admin" || !rec.CreatedAt.Equal(t0.Add(time.Minute)) || rec.AccountID != "111111111111" || rec.Revoked() {
		t.Fatalf("record %+v", rec)
	}

	appendToken(t, store, "tok-p", 1, t0.Add(2*time.Minute), &billingv1.Event{Payload: &billingv1.Event_TokenRevoked{TokenRevoked: &billingv1.TokenRevoked{TokenId: "tok-p", Reason: "rotated"}}})
	waitFor(t, func() bool {
		_, e1 := one.Verify("blt_payer")
		_, e2 := two.Verify("blt_payer")
		return errors.Is(e1, ErrInvalidToken) && errors.Is(e2, ErrInvalidToken)
	})
	ids := func(rs []TokenRecord) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	if got := ids(one.Tokens(false)); !slices.Equal(got, []string{"file:admin", "tok-old"}) {
		t.Fatalf("valid tokens %v", got)
	}
	all := one.Tokens(true)
	if got := ids(all); !slices.Equal(got, []string{"file:admin", "tok-old", "tok-p"}) {
		t.Fatalf("all tokens %v", got)
	}
	if r := all[2]; r.RevokedReason != "rotated" || !r.RevokedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("revoked record %+v", r)
	}
}

// TestRevocationIsForever: a TokenCreated applied after the revocation (the
// subscription catching up with a local Revoke) does not bring the token back.
func TestRevocationIsForever(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier()
	rec := TokenRecord{ID: "tok-1", Name: "n", Role: RoleIngest, SHA256: HashToken("blt_x"), Origin: OriginLedger}
	if err := v.Put(rec); err != nil {
		t.Fatal(err)
	}
	if !v.Revoke("tok-1", time.Now(), "leaked") || v.Revoke("tok-none", time.Now(), "") {
		t.Fatal("Revoke reports the wrong ids")
	}
	if err := v.Put(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify("blt_x"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("revoked token accepted after a replayed creation: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSignedPayloads: a durable message carries a signature of its payload,
// never the token; it authenticates that payload only, and not after
// revocation.
func TestSignedPayloads(t *testing.T) {
	t.Parallel()
	v, _ := NewVerifier(TokenRecord{ID: "tok-1", Name: "meter", Role: RoleIngest, SHA256: HashToken("blt_meter")})
	payload := []byte(`{"usage_id":"u-1"}`)
	header := SignPayload("blt_meter", payload)
	if strings.Contains(header, "blt_meter") || strings.Contains(header, HashToken("blt_meter")) {
		t.Fatalf("header %q holds the token or its hash", header)
	}
	if p, err := v.VerifySignature(header, payload); err != nil || p.Name != "meter" {
		t.Fatalf("VerifySignature = %+v, %v", p, err)
	}
	for name, tc := range map[string]struct {
		header  string
		payload []byte
		want    error
	}{
		"other payload": {header, []byte(`{"usage_id":"u-2"}`), ErrInvalidSignature},
		"other token":   {SignPayload("blt_other", payload), payload, ErrInvalidSignature},
		"bearer":        {"Bearer blt_meter", payload, ErrMalformedSignature},
		"garbage":       {SignatureScheme + " nope", payload, ErrMalformedSignature},
		"missing":       {"", payload, ErrMissingToken},
	} {
		if _, err := v.VerifySignature(tc.header, tc.payload); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	v.Revoke("tok-1", time.Now(), "")
	if _, err := v.VerifySignature(header, payload); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("revoked token's signature accepted: %v", err)
	}
}
