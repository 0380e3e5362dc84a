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
// Commands (more are added as the ledger grows: usage send, report
// billable|proforma|…, close, replay, audit verify, deadletter, token create):
//
//	apply -f FILE|-            send commands from JSON Lines, one per line
//	clock set TIME             move the simulated clock (RFC 3339 or YYYY-MM-DD)
//	report transfers [--payer ID] [--source ID] [--status S]
//	info                       server address, clock and store position
//
// Errors are printed as "CODE: message" on stderr with exit status 1; usage
// errors exit with status 2.
//
// Map of the package: main.go (entry, run), cli.go (kong model and shared
// client plumbing), apply.go (JSON Lines → ExecuteRequest and the apply loop),
// report.go (report, clock, info), output.go (tables, JSON, error text).
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
