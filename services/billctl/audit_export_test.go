package main

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/eventstore"
	ledgerjs "github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/services/clock"
)

// execAny wraps any command in its ExecuteRequest oneof field.
func execAny(t *testing.T, p commands.Executor, cmds ...proto.Message) {
	t.Helper()
	for _, c := range cmds {
		req := &billingv1.ExecuteRequest{}
		m := req.ProtoReflect()
		fields := m.Descriptor().Oneofs().ByName("command").Fields()
		for i := 0; i < fields.Len(); i++ {
			if fd := fields.Get(i); fd.Message().FullName() == c.ProtoReflect().Descriptor().FullName() {
				m.Set(fd, protoreflect.ValueOfMessage(c.ProtoReflect()))
			}
		}
		if _, err := p.Execute(context.Background(), "admin", req); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
}

// TestAuditExportAndOfflineVerify (issue #6): a closed, sealed month exports
// to a directory that `audit verify --dir` checks with no server; one changed
// byte, or another signing key than the one required, fails it.
func TestAuditExportAndOfflineVerify(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store, err := ledgerjs.Open(ctx, nc, ledgerjs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewSimulated(time.Date(2026, 9, 10, 0, 0, 0, 0, time.UTC), nil)
	p := commands.New(store, clk, commands.Options{})
	execAny(t, p,
		&billingv1.RegisterOrganization{ManagementAccountId: "111111111111", Name: "Payer Inc", MemberAccountIds: []string{"111111111112"}},
		&billingv1.SetSellerOfRecord{Country: "US", Seller: "Amazon Web Services, Inc.", DefaultCurrency: "USD"},
		&billingv1.SetTaxSettings{AccountId: "111111111111", LegalName: "Payer Inc", Country: "US"},
		&billingv1.SetTaxRate{Jurisdiction: "US", RatePercentage: "0", EffectiveFrom: "2026-01-01"},
	)
	dir := commands.NewDirectory(store)
	go func() { _ = dir.Run(ctx) }()
	<-dir.Ready()
	w := commands.NewUsageWriter(store, clk, dir, commands.UsageWriterOptions{})
	start := time.Date(2026, 9, 2, 0, 0, 0, 0, time.UTC)
	if _, err := w.Ingest(ctx, "test", "test", []*billingv1.UsageRecord{
		{UsageId: "u-1", AccountId: "111111111112", ChargePeriodStart: timestamppb.New(start), ChargePeriodEnd: timestamppb.New(start.Add(time.Hour)),
			Service: "AmazonEC2", Quantity: "1", Unit: "Hrs", ListUnitPrice: "1", BilledCost: "12.345", Currency: "USD"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := clk.Set(ctx, time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	execAny(t, p, &billingv1.CloseMonth{PayerAccountId: "111111111111", Month: "2026-09"})
	_, key, _ := ed25519.GenerateKey(nil)
	var closed eventstore.Record
	if err := store.ReadAll(ctx, 0, "billing.month.>", func(r eventstore.Record) error {
		if r.Event.GetMonthClosed() != nil {
			closed = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := commands.NewSealer(store, clk, key, nil).Seal(ctx, closed); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "export")
	code, stdout, stderr := runCLI(t, "", "audit", "export", "--nats-url", url, "--month", "2026-09", "--out", out)
	if code != 0 || !strings.HasPrefix(stdout, "exported 1 seals, 19 streams, 21 events of 2026-09") {
		t.Fatalf("export: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	keyID := eventstore.SealKeyID(key.Public().(ed25519.PublicKey))
	code, stdout, stderr = runCLI(t, "", "audit", "verify", "--dir", out, "--key-id", keyID)
	if code != 0 || !strings.Contains(stdout, "intact") || !strings.Contains(stdout, "signed by key "+keyID) {
		t.Fatalf("verify: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "", "audit", "verify", "--dir", out, "--key-id", "0000000000000000")
	if code != 1 || !strings.Contains(stdout, "not 0000000000000000") {
		t.Fatalf("verify with another key id: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = runCLI(t, "", "audit", "export", "--nats-url", url, "--month", "2026-09", "--out", out)
	if code == 0 || !strings.Contains(stderr, "already holds an export") {
		t.Fatalf("export over an export: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "audit", "export", "--nats-url", url, "--month", "2026-08", "--out", t.TempDir())
	if code == 0 || !strings.Contains(stderr, "no sealed close of 2026-08") {
		t.Fatalf("export of an unsealed month: exit %d, stderr %q", code, stderr)
	}

	path := filepath.Join(out, exportEventsFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/3] ^= 0x04
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, "", "audit", "verify", "--dir", out)
	if code != 1 || !strings.HasPrefix(stdout, "BROKEN: ") {
		t.Fatalf("verify after one byte changed: exit %d, stdout %q", code, stdout)
	}
}
