// Command billctl is the command-line client of billingd (DESIGN §6).
//
//	billctl [--server URL] [--token T] [-o json|table] COMMAND ...
//
// Global flags:
//   - --server (env BILLING_SERVER, default http://127.0.0.1:8080): billingd's HTTP address.
//   - --token (env BILLING_TOKEN): the bearer token. When neither is set and the
//     file ./data/admin.token exists (billingd's default data directory, seen from
//     the directory `make run` starts in), its content is used, so a local demo
//     needs no flag.
//   - -o/--output json|table (default table).
//
// Commands:
//
//	apply -f FILE|-            send commands from JSON Lines, one per line
//	usage send -f FILE|- [--nats-url URL] [--batch N] [--durable | --http]
//	usage import --format focus FILE.csv [--nats-url URL] [--batch N] [--http]
//	report transfers [--payer ID] [--source ID] [--status S]
//	report billable --month M [--payer ID] [--source ID]
//	report proforma --month M [--payer ID] [--billing-group ID] [--account ID] [--billing-view ID]
//	report cost --month M [--payer ID]
//	report invoices --month M [--payer ID] [--source ID] [--lines]
//	report payments [--payer ID] [--source ID] [--month M]
//	report tax --month M [--payer ID]
//	close --payer ID --month M [--request-id KEY]   issue the month's invoices (CloseMonth)
//	deadletter list [--reason R]
//	deadletter redrive [--id ID ...]
//	replay --month M [--as-of T] [--verify] [--nats-url URL]
//	audit verify [--nats-url URL] [--filter F] | --dir DIR [--key-id ID]
//	audit export --month M [--payer ID] --out DIR [--nats-url URL]
//	explain --invoice ID [--line N] [--records N] [--nats-url URL]
//	view list [--owner ID] [--grantee ID] [--include-deleted]
//	                           billing views, their filters and grantees (A2)
//	token create --role admin|payer|source|auditor|ingest [--account ID] [--name N]
//	                           issue a token (admin); prints it once, alone on stdout
//	token list [--all]         token ids, names, roles, accounts, created, revoked
//	token revoke ID [--reason R]
//	clock set TIME             move the simulated clock (RFC 3339 or YYYY-MM-DD)
//	info                       server address, clock and store position
//
// Errors are printed as "CODE: message" on stderr with exit status 1; usage
// errors exit with status 2. usage send/import also exit 1 when any record was
// rejected, after printing "line N: REASON: message" for each on stderr and the
// summary "accepted N, duplicates N, rejected N (REASON: n, …)" on stdout.
//
// Usage transports (the server side is billingd's; see the README):
//   - NATS request-reply on subject usage.v1.batch (default). Request: JSON
//     Lines, one UsageRecord per line (protojson, proto field names), at most
//     --batch lines and the server's max_payload; header "Authorization:
//     Bearer <token>". A line billctl cannot parse is sent as it is, so that
//     the server dead-letters it (answer MALFORMED). Reply: an
//     IngestBatchResponse in JSON whose results[].index is the 1-based line in
//     the request; an error reply is {"error":"…"} (or carries the
//     nats.go/micro headers Nats-Service-Error and Nats-Service-Error-Code).
//   - JetStream on subject usage.v1.records (--durable, stream USAGE_INGEST):
//     one UsageRecord in JSON per message, Nats-Msg-Id = "sha256-" + 32 hex
//     digits of the payload's SHA-256; the publisher ack means the record is
//     stored. The stored message carries no token but "Authorization:
//     Billing-HMAC-SHA256 <key id>:<signature>", an HMAC of the payload keyed
//     by the token's SHA-256; billingd terminates messages without a valid
//     signature of an admin or ingest token (see services/ingest).
//   - HTTP (--http): the same JSON Lines body to POST /v1/usage on --server.
//
// Map of the package: main.go (entry, run), cli.go (kong model and shared
// client plumbing), apply.go (JSON Lines → ExecuteRequest and the apply loop),
// usage.go (usage send, the batching loop, summaries), usage_send.go (NATS,
// HTTP and JetStream transports), focus.go (usage import: FOCUS CSV → usage
// records), progress.go (terminal progress bar), report.go (report, clock,
// info), invoices.go (close, report invoices|payments|tax), token.go (token
// create|list|revoke), deadletter.go,
// replay.go, audit.go, output.go (tables, JSON, error text).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
