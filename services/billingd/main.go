// Command billingd is the ledger server (DESIGN §1, §6). By default it runs every
// role in one process: an embedded NATS server with JetStream file storage under
// --data-dir as the event store, the command pipeline, the projectors writing
// SQLite read models under --data-dir, the Connect API (gRPC + JSON over HTTP),
// GET /healthz and the expiry sweeper. With --nats-url it uses an external NATS
// server or cluster instead of the embedded one. --role runs some of the roles
// (command, ingest, projector, query; planParts in projectors.go says what
// each starts): with a shared PostgreSQL read model, projector processes share
// the projections by leases in JetStream KV (services/lease) and query
// processes read the checkpoints the projectors commit.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

func main() {
	var cfg Config
	kong.Parse(&cfg,
		kong.Name("billingd"),
		kong.Description("Event-sourced billing ledger server: bill transfer, pricing, invoices (see README)."),
		kong.UsageOnError(),
	)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "billingd:", err)
		os.Exit(1)
	}
}
