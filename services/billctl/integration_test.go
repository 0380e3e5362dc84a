package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore/memstore"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"
	"github.com/billtransfer/ledger/services/ingest"

	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
)

// realIngest runs billingd's NATS ingestion (services/ingest over the real
// usage writer and an in-memory store) with organization 222222222222
// (accounts 222222222222, 222222222223) registered, and returns the NATS URL
// and the writer. This checks billctl against the payload contract as the
// server implements it, not only against the test responder.
func realIngest(t *testing.T) (string, *commands.UsageWriter) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store := memstore.New()
	clk := clock.NewSimulated(time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), nil)
	_, err := commands.New(store, clk, commands.Options{}).Execute(ctx, "admin", &billingv1.ExecuteRequest{
		Command: &billingv1.ExecuteRequest_RegisterOrganization{RegisterOrganization: &billingv1.RegisterOrganization{
			ManagementAccountId: "222222222222", Name: "Source Co", MemberAccountIds: []string{"222222222223"},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := commands.NewDirectory(store)
	go func() { _ = dir.Run(ctx) }()
	<-dir.Ready()
	w := commands.NewUsageWriter(store, clk, dir, commands.UsageWriterOptions{Partitions: 4})

	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; nc.Close() })
	v, err := auth.NewVerifier(auth.TokenRecord{Name: "admin", Role: auth.RoleAdmin, SHA256: auth.HashToken(testToken)})
	if err != nil {
		t.Fatal(err)
	}
	srv := &ingest.Server{NC: nc, Writer: w, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Verifier: v}
	go func() { defer close(done); _ = srv.Run(ctx) }()
	// Wait until the responder answers.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := nc.Request(subjectBatch, nil, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest responder not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, w
}

func TestUsageSendAgainstBillingdIngest(t *testing.T) {
	t.Parallel()
	url, w := realIngest(t)
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "-f", writeFile(t, mixedFile), "--nats-url", url, "--batch", "2")
	if code != 1 || stdout != "accepted 2, duplicates 1, rejected 2 (MALFORMED: 1, UNKNOWN_ACCOUNT: 1)\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	if !strings.HasPrefix(stderr, "line 3: MALFORMED: incomplete JSON") || !strings.Contains(stderr, "\nline 4: UNKNOWN_ACCOUNT: ") {
		t.Fatalf("stderr = %q", stderr)
	}

	// The same records over HTTP (POST /v1/usage) are duplicates now, and the
	// malformed line is dead-lettered again through the same writer.
	srv := newServer(t, api.Options{Usage: w, Malformed: w})
	code, stdout, stderr = runCLI(t, "", "--server", srv, "--token", testToken, "usage", "send", "--http", "-f", writeFile(t, mixedFile))
	if code != 1 || stdout != "accepted 0, duplicates 3, rejected 2 (MALFORMED: 1, UNKNOWN_ACCOUNT: 1)\n" {
		t.Fatalf("http: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

func TestUsageSendDurableAgainstBillingdIngest(t *testing.T) {
	t.Parallel()
	url, _ := realIngest(t)
	code, stdout, stderr := runCLI(t, "", "--token", testToken, "usage", "send", "--durable", "-f", writeFile(t, mixedFile), "--nats-url", url)
	if code != 1 || stdout != "published 5, failed 0, rejected 1 (MALFORMED: 1)\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}
