package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/alecthomas/kong"

	"github.com/billtransfer/ledger/proto/billing/v1/billingv1connect"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // a command or the server failed
	exitUsage = 2 // the command line is wrong
)

// defaultTokenFile is read when no token is given: billingd's admin token under
// its default data directory, relative to the working directory.
var defaultTokenFile = filepath.Join("data", "admin.token")

// requestTimeout bounds one RPC.
const requestTimeout = time.Minute

// cli is the kong model: global flags and one field per top-level command. A
// new command is one more field with a Run(*app) error method.
type cli struct {
	Server string `help:"billingd address (default ${default})." env:"BILLING_SERVER" default:"http://127.0.0.1:8080" placeholder:"URL"`
	Token  string `help:"Bearer token. Default: the content of ./data/admin.token when that file exists." env:"BILLING_TOKEN" placeholder:"TOKEN"`
	Output string `help:"Output format: ${enum}." short:"o" enum:"json,table" default:"table"`

	Apply      applyCmd      `cmd:"" help:"Send commands from a JSON Lines file, one per line; stops at the first rejected line."`
	Usage      usageCmd      `cmd:"" help:"Send or import usage records (NATS, or HTTP with --http)."`
	Report     reportCmd     `cmd:"" help:"Print read models."`
	Deadletter deadletterCmd `cmd:"" help:"List and re-drive dead-lettered usage records."`
	Close      closeCmd      `cmd:"" help:"Close a payer's billing month: issue its invoices (CloseMonth)."`
	Replay     replayCmd     `cmd:"" help:"Rebuild a month's read models from the events and print their digests."`
	Audit      auditCmd      `cmd:"" help:"Verify the event log's hash chains; export and verify sealed months offline."`
	Explain    explainCmd    `cmd:"" help:"Show the usage records, rates and arithmetic behind an invoice's lines."`
	Export     exportCmd     `cmd:"" help:"Export a month's billable or pro forma view (FOCUS 1.2 CSV)."`
	Rerate     rerateCmd     `cmd:"" help:"Show (--dry-run) or apply another pricing plan for a billing group's month (P4)."`
	View       viewCmd       `cmd:"" help:"List billing views (A2); create, grant, revoke and delete them with apply."`
	Tokens     tokenCmd      `cmd:"" name:"token" help:"Create, list and revoke bearer tokens (admin)."`
	Clock      clockCmd      `cmd:"" help:"Control the simulated ledger clock."`
	Info       infoCmd       `cmd:"" help:"Show the server's NATS address, clock and store position."`
}

// app is what every command's Run receives: I/O, output format and clients.
type app struct {
	ctx        context.Context
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	server     string
	output     string
	token      string
	httpClient *http.Client
}

// exitRequest carries kong's exit status (after --help, or a parse failure)
// out of the parser without calling os.Exit, so run stays testable.
type exitRequest int

// run is billctl without the process around it: it parses args, runs the
// command and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (status int) {
	defer func() {
		if r := recover(); r != nil {
			ex, ok := r.(exitRequest)
			if !ok {
				panic(r)
			}
			status = int(ex)
		}
	}()

	var c cli
	parser, err := kong.New(&c,
		kong.Name("billctl"),
		kong.Description("Command-line client of the billing ledger (billingd)."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(exitRequest(code)) }),
	)
	if err != nil {
		fmt.Fprintf(stderr, "billctl: %v\n", err)
		return exitError
	}
	if len(args) == 0 {
		args = []string{"--help"}
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "billctl: error: %v\nRun \"billctl --help\" for usage.\n", err)
		return exitUsage
	}

	server, err := normalizeServer(c.Server)
	if err != nil {
		fmt.Fprintf(stderr, "billctl: error: %v\n", err)
		return exitUsage
	}
	token := strings.TrimSpace(c.Token)
	if token == "" {
		token, err = readTokenFile(defaultTokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "billctl: error: %v\n", err)
			return exitError
		}
	}
	a := &app{
		ctx:        ctx,
		stdin:      stdin,
		stdout:     stdout,
		stderr:     stderr,
		server:     server,
		output:     c.Output,
		token:      token,
		httpClient: &http.Client{},
	}
	if err := kctx.Run(a); err != nil {
		var status exitStatus
		if errors.As(err, &status) {
			return int(status)
		}
		var done reported
		if !errors.As(err, &done) {
			code, msg := a.describe(err)
			fmt.Fprintf(stderr, "%s: %s\n", code, msg)
		}
		return exitError
	}
	return exitOK
}

// reported is returned by a command that has already printed its failure
// (apply prints the line number); run then only sets the exit status.
type reported struct{ error }

// exitStatus is returned by a command that has printed everything and wants
// a specific exit status.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// normalizeServer accepts "host:port" as well as a URL and drops a trailing slash.
func normalizeServer(s string) (string, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	if s == "" {
		return "", errors.New("--server is empty")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("--server %q: want an http:// or https:// URL", s)
	}
	return s, nil
}

// readTokenFile returns the trimmed content of path, or "" when it does not exist.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// clientOptions are shared by every service client: the bearer token on every
// request.
func (a *app) clientOptions() []connect.ClientOption {
	return []connect.ClientOption{connect.WithInterceptors(bearer(a.token))}
}

func (a *app) commandClient() billingv1connect.CommandServiceClient {
	return billingv1connect.NewCommandServiceClient(a.httpClient, a.server, a.clientOptions()...)
}

func (a *app) queryClient() billingv1connect.QueryServiceClient {
	return billingv1connect.NewQueryServiceClient(a.httpClient, a.server, a.clientOptions()...)
}

func (a *app) usageClient() billingv1connect.UsageServiceClient {
	return billingv1connect.NewUsageServiceClient(a.httpClient, a.server, a.clientOptions()...)
}

func (a *app) adminClient() billingv1connect.AdminServiceClient {
	return billingv1connect.NewAdminServiceClient(a.httpClient, a.server, a.clientOptions()...)
}

// callCtx bounds one RPC.
func (a *app) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, requestTimeout)
}

// bearer adds "Authorization: Bearer <token>" to every request (none when the
// token is empty: the server then explains what is missing).
func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if token != "" {
				req.Header().Set("Authorization", "Bearer "+token)
			}
			return next(ctx, req)
		}
	}
}
