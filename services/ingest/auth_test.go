package ingest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	"github.com/billtransfer/ledger/eventstore/memstore"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/services/auth"
)

const (
	ingestToken  = "blt_test-ingest"
	adminToken   = "blt_test-admin"
	payerToken   = "blt_test-payer"
	revokedToken = "blt_test-revoked"
)

// testVerifier accepts an ingest, an admin and a payer token; a fourth token
// was revoked.
func testVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(
		auth.TokenRecord{Name: "meter", Role: auth.RoleIngest, SHA256: auth.HashToken(ingestToken)},
		auth.TokenRecord{Name: "admin", Role: auth.RoleAdmin, SHA256: auth.HashToken(adminToken)},
		auth.TokenRecord{Name: "partner", Role: auth.RolePayer, AccountID: "111111111111", SHA256: auth.HashToken(payerToken)},
		auth.TokenRecord{ID: "tok-old", Name: "old", Role: auth.RoleIngest, SHA256: auth.HashToken(revokedToken)},
	)
	if err != nil {
		t.Fatal(err)
	}
	v.Revoke("tok-old", time.Now(), "rotated")
	return v
}

// withToken is a request with "Authorization: Bearer <token>" (none when empty).
func withToken(subject string, data []byte, token string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	if token != "" {
		m.Header.Set(AuthorizationHeader, "Bearer "+token)
	}
	return m
}

// signed is a durable message signed with token (auth.SignPayload).
func signed(data []byte, token string) *nats.Msg {
	m := nats.NewMsg(DurableSubject)
	m.Data = data
	m.Header.Set(AuthorizationHeader, auth.SignPayload(token, data))
	return m
}

// TestNATSIngestionChecksTheToken (A1, A2): the batch path answers a missing,
// invalid or revoked token UNAUTHENTICATED and a payer token
// PERMISSION_DENIED, ingesting nothing; the durable path terminates messages
// without a valid signature of an ingest or admin token (a bearer token
// included) and ingests the signed ones under their token's name.
func TestNATSIngestionChecksTheToken(t *testing.T) {
	emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	store := memstore.New()
	clock := fixedClock{time.Date(2026, 9, 10, 0, 0, 0, 0, time.UTC)}
	if _, err := commands.New(store, clock, commands.Options{}).Execute(context.Background(), "t", &billingv1.ExecuteRequest{Command: &billingv1.ExecuteRequest_RegisterOrganization{
		RegisterOrganization: &billingv1.RegisterOrganization{ManagementAccountId: "222222222222", Name: "S"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := commands.NewDirectory(store)
	go func() { _ = dir.Run(ctx) }()
	<-dir.Ready()
	w := commands.NewUsageWriter(store, clock, dir, commands.UsageWriterOptions{})

	if err := (&Server{NC: nc, Writer: w, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Run(ctx); err == nil || !strings.Contains(err.Error(), "Verifier is required") {
		t.Fatalf("Run without a verifier = %v", err)
	}
	srv := &Server{NC: nc, Writer: w, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Verifier: testVerifier(t)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Run(ctx) }()
	defer wg.Wait()
	defer cancel()

	rec := func(id string) []byte {
		return []byte(`{"usage_id":"` + id + `","account_id":"222222222222","charge_period_start":"2026-09-03T00:00:00Z","charge_period_end":"2026-09-03T01:00:00Z","service":"AmazonEC2","quantity":"1","billed_cost":"1","currency":"USD"}`)
	}
	request := func(m *nats.Msg) *nats.Msg {
		t.Helper()
		for i := 0; ; i++ { // the responder subscribes asynchronously
			reply, err := nc.RequestMsg(m, 5*time.Second)
			if err == nil {
				return reply
			}
			if i == 50 {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, tc := range []struct {
		name, token, code, status string
	}{
		{"missing token", "", "UNAUTHENTICATED", "401"},
		{"unknown token", "blt_nope", "UNAUTHENTICATED", "401"},
		{"revoked token", revokedToken, "UNAUTHENTICATED", "401"},
		{"payer token", payerToken, "PERMISSION_DENIED", "403"},
	} {
		reply := request(withToken(BatchSubject, rec("u-denied"), tc.token))
		var body struct{ Error string }
		_ = json.Unmarshal(reply.Data, &body)
		if !strings.HasPrefix(body.Error, tc.code+": ") || reply.Header.Get(ServiceErrorCodeHeader) != tc.status || !strings.HasPrefix(reply.Header.Get(ServiceErrorHeader), tc.code) {
			t.Errorf("%s: reply %s headers %v", tc.name, reply.Data, reply.Header)
		}
	}
	reply := request(withToken(BatchSubject, rec("u-admin"), adminToken))
	if !strings.Contains(string(reply.Data), `"accepted":1`) {
		t.Fatalf("admin batch: %s", reply.Data)
	}

	js, _ := njs.New(nc)
	forged := signed(rec("u-forged"), ingestToken)
	forged.Data = rec("u-forged2") // signature of another payload
	for _, m := range []*nats.Msg{
		withToken(DurableSubject, rec("u-anon"), ""),
		withToken(DurableSubject, rec("u-bearer"), ingestToken), // a bearer token would rest in the stream: refused
		signed(rec("u-payer"), payerToken),
		signed(rec("u-revoked"), revokedToken),
		forged,
		signed(rec("u-meter"), ingestToken),
	} {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	actors := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for actors["u-meter"] == "" {
		if time.Now().After(deadline) {
			t.Fatalf("durable record not ingested: %v", actors)
		}
		time.Sleep(20 * time.Millisecond)
		_ = store.ReadAll(ctx, 0, "billing.usage.>", func(r eventstore.Record) error {
			for _, b := range r.Event.GetUsageBatchRecorded().GetRecords() {
				actors[b.GetRecord().GetUsageId()] = r.Event.GetActor()
			}
			return nil
		})
	}
	if len(actors) != 2 || actors["u-admin"] != "admin" || actors["u-meter"] != "meter" {
		t.Fatalf("booked %v; want only u-admin (admin) and u-meter (meter)", actors)
	}
	// The terminated messages left the work queue: nothing is redelivered.
	stream, err := js.Stream(ctx, DurableStream)
	if err != nil {
		t.Fatal(err)
	}
	waitEmpty := time.Now().Add(5 * time.Second)
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(waitEmpty) {
			t.Fatalf("USAGE_INGEST still holds %d messages", info.State.Msgs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
