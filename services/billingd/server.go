package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/billtransfer/ledger/commands"
	"github.com/billtransfer/ledger/domain"
	"github.com/billtransfer/ledger/eventstore"
	"github.com/billtransfer/ledger/eventstore/esdb"
	"github.com/billtransfer/ledger/eventstore/jetstream"
	billingv1 "github.com/billtransfer/ledger/proto/billing/v1"
	"github.com/billtransfer/ledger/readmodel"
	"github.com/billtransfer/ledger/services/api"
	"github.com/billtransfer/ledger/services/auth"
	"github.com/billtransfer/ledger/services/clock"
	"github.com/billtransfer/ledger/services/dashboard"
	"github.com/billtransfer/ledger/services/ingest"
	"github.com/billtransfer/ledger/services/lease"
)

// Config is billingd's command line (DESIGN §6). Keep it stable: it is public.
type Config struct {
	DataDir        string        `name:"data-dir" default:"./data" env:"BILLING_DATA_DIR" help:"Directory for the embedded JetStream store, SQLite read models and tokens."`
	HTTP           string        `name:"http" default:"127.0.0.1:8080" env:"BILLING_HTTP" help:"HTTP listen address for the Connect API, /healthz and the dashboard."`
	NATSURL        string        `name:"nats-url" env:"BILLING_NATS_URL" help:"External NATS server or cluster URL(s), comma-separated. Empty = start an embedded server."`
	NATSListen     string        `name:"nats-listen" default:"127.0.0.1:4222" env:"BILLING_NATS_LISTEN" help:"Listen address of the embedded NATS server (port 0 picks a free one)."`
	Store          string        `name:"store" default:"jetstream" enum:"jetstream,eventstoredb" help:"Event store: jetstream (the NATS server's, embedded or --nats-url) or eventstoredb (KurrentDB 25.1 or newer at --eventstore-url; NATS still carries usage ingestion, projector leases and wake-ups)."`
	EventStoreURL  string        `name:"eventstore-url" env:"BILLING_EVENTSTORE_URL" help:"KurrentDB connection string for --store eventstoredb, e.g. kurrentdb://localhost:2113?tls=false."`
	ReadModel      string        `name:"readmodel" default:"sqlite" help:"Read model storage: sqlite (under --data-dir) or postgres://..."`
	Role           string        `name:"role" default:"all" help:"Comma-separated roles: command,ingest,projector,query (default all)."`
	SimulatedClock string        `name:"simulated-clock" help:"Start a simulated clock at this RFC 3339 time; only 'billctl clock set' moves it."`
	SyncAlways     bool          `name:"sync-always" help:"fsync every JetStream write of the embedded server (slower; survives an OS crash without loss)."`
	Replicas       int           `name:"replicas" default:"1" help:"JetStream replicas of the BILLING stream: 1 for the embedded or a single server, 3 on a cluster (R3)."`
	MaxInbound     int           `name:"max-inbound-transfers" default:"1000" help:"Most live inbound transfers per payer (T9)."`
	SweepInterval  time.Duration `name:"sweep-interval" default:"30s" help:"How often the sweeper looks for expired invitations (T3)."`
	ReadyMaxLag    uint64        `name:"ready-max-lag" default:"10000" help:"GET /readyz answers 503 while a projector is more store positions behind than this."`
	LeaseTTL       time.Duration `name:"lease-ttl" default:"10s" help:"With a PostgreSQL read model, projector processes share the projections by leases in JetStream KV that expire this long after their last renewal (a crashed process's projections move within about this); the same on every process."`
	LogLevel       string        `name:"log-level" default:"info" enum:"debug,info,warn,error" help:"Log level."`
}

// roles parses --role.
func (c Config) roles() (map[string]bool, error) {
	all := map[string]bool{"command": true, "ingest": true, "projector": true, "query": true}
	if c.Role == "" || c.Role == "all" {
		return all, nil
	}
	out := map[string]bool{}
	for _, r := range strings.Split(c.Role, ",") {
		r = strings.TrimSpace(r)
		if !all[r] {
			return nil, fmt.Errorf("--role: unknown role %q (want command, ingest, projector, query or all)", r)
		}
		out[r] = true
	}
	return out, nil
}

// Server is a running billingd; tests start it in-process.
type Server struct {
	// HTTPAddr is the bound HTTP address.
	HTTPAddr string
	// NATSURL is the NATS address clients use.
	NATSURL string
	// SealKeyID names the key that signs month seals ("" without the command role).
	SealKeyID string
	// AdminToken is set when this start created the admin token.
	AdminToken string
	ready      atomic.Bool
	done       chan error
}

// Run starts billingd and blocks until ctx ends (graceful shutdown) or a part fails.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	s, err := Start(ctx, cfg, out)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Wait blocks until the server has stopped and returns why.
func (s *Server) Wait() error { return <-s.done }

// Start starts every part and returns once the server is ready.
func Start(ctx context.Context, cfg Config, out io.Writer) (*Server, error) {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	roles, err := cfg.roles()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.Store == "eventstoredb" && cfg.EventStoreURL == "":
		return nil, errors.New("--store eventstoredb needs --eventstore-url (a KurrentDB connection string, e.g. kurrentdb://localhost:2113?tls=false)")
	case cfg.Store != "eventstoredb" && cfg.EventStoreURL != "":
		return nil, fmt.Errorf("--eventstore-url is for --store eventstoredb; the store is %s", cfg.Store)
	}
	if cfg.ReadModel != "sqlite" && !readmodel.IsPostgresURL(cfg.ReadModel) {
		return nil, fmt.Errorf("--readmodel %q: want sqlite or a postgres:// URL", cfg.ReadModel)
	}
	// shared: the read model is one database for every process (PostgreSQL),
	// so projector processes share the projections by leases and a query
	// process reads what projectors elsewhere commit. Otherwise it is this
	// process's own SQLite file, which only its own projectors write.
	shared := readmodel.IsPostgresURL(cfg.ReadModel)
	plan, err := planParts(roles, shared)
	if err != nil {
		return nil, fmt.Errorf("--role %s with --readmodel sqlite: %w", cfg.Role, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) (*Server, error) { cleanup(); return nil, err }

	// Event store: embedded NATS unless --nats-url.
	natsURL := cfg.NATSURL
	if natsURL == "" {
		emb, err := jetstream.StartEmbedded(jetstream.EmbeddedConfig{DataDir: cfg.DataDir, Listen: cfg.NATSListen, SyncAlways: cfg.SyncAlways, ServerName: "billingd"})
		if err != nil {
			return fail(fmt.Errorf("start embedded NATS on %s: %w", cfg.NATSListen, err))
		}
		cleanups = append(cleanups, emb.Shutdown)
		natsURL = emb.ClientURL()
		log.Info("embedded NATS server started", "url", natsURL, "store_dir", filepath.Join(cfg.DataDir, "jetstream"), "sync_always", cfg.SyncAlways)
	}
	nc, err := nats.Connect(natsURL, nats.Name("billingd"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fail(fmt.Errorf("connect to NATS %s: %w", natsURL, err))
	}
	cleanups = append(cleanups, func() { _ = nc.Drain() })
	store, closeStore, err := openStore(ctx, cfg, nc, log)
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, closeStore)

	// Clock.
	var clk api.Clock = clock.Wall{}
	if cfg.SimulatedClock != "" {
		start, err := clock.Parse(cfg.SimulatedClock)
		if err != nil {
			return fail(fmt.Errorf("--simulated-clock: %w", err))
		}
		sim, err := persistentClock(ctx, store, start)
		if err != nil {
			return fail(err)
		}
		clk = sim
		log.Info("simulated clock", "now", sim.Now().Format(time.RFC3339Nano))
	}

	// Read models: SQLite under --data-dir, or PostgreSQL (migrated at open).
	rmTarget := filepath.Join(cfg.DataDir, "readmodel.db")
	if cfg.ReadModel != "sqlite" {
		rmTarget = cfg.ReadModel
	}
	db, err := readmodel.Open(ctx, rmTarget)
	if err != nil {
		return fail(fmt.Errorf("open read model: %w", err))
	}
	cleanups = append(cleanups, func() { _ = db.Close() })
	log.Info("read model opened", "backend", db.Backend())

	// Tokens.
	token, created, err := auth.EnsureAdminToken(cfg.DataDir)
	if err != nil {
		return fail(fmt.Errorf("admin token: %w", err))
	}
	verifier, err := auth.LoadVerifier(cfg.DataDir)
	if err != nil {
		return fail(fmt.Errorf("load tokens: %w", err))
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(runCtx)
	s := &Server{NATSURL: natsURL, done: make(chan error, 1)}
	if created {
		s.AdminToken = token
		fmt.Fprintf(out, "\nFirst start: admin token (also in %s, mode 0600):\n\n    %s\n\n", filepath.Join(cfg.DataDir, "admin.token"), token)
	}

	// Projectors: every projection here (SQLite), or this process's share by
	// leases (PostgreSQL).
	var projs *projectorSet
	switch plan.Projectors {
	case leasedProjectors:
		projs = newProjectorSet(db, store, log)
		leases, err := lease.New(ctx, nc, projectionNames, projs.runLeased, lease.Config{TTL: cfg.LeaseTTL, Replicas: cfg.Replicas, Logger: log})
		if err != nil {
			cancel()
			return fail(fmt.Errorf("projector leases: %w", err))
		}
		sub, err := nc.Subscribe(kickSubject, projs.kicked)
		if err != nil {
			cancel()
			return fail(fmt.Errorf("subscribe to %s: %w", kickSubject, err))
		}
		cleanups = append(cleanups, func() { _ = sub.Unsubscribe() })
		g.Go(func() error { return leases.Run(gctx) })
		log.Info("projections shared with the other projector processes by leases", "owner", leases.Owner(), "ttl", cfg.LeaseTTL)
	case localProjectors:
		projs = newProjectorSet(db, store, log)
		for _, name := range statusOrder {
			r := projs.runner(name)
			g.Go(func() error {
				err := r.Run(gctx)
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return fmt.Errorf("%s projector: %w", name, err)
			})
		}
	}
	// What waits for the read model (read-your-writes).
	var waiter, usageWaiter api.Waiter
	switch plan.Waiter {
	case readModelWaiter:
		waiter = checkpointWaiter{db: db, nc: nc, names: projectionNames}
		usageWaiter = checkpointWaiter{db: db, nc: nc, names: []string{"usage"}}
	case runnerWaiter:
		var all waitAll
		for _, name := range statusOrder {
			all = append(all, projs.get(name))
		}
		waiter, usageWaiter = all, projs.get("usage")
	}
	// What /readyz and /metrics report on.
	status := statusSource(noStatus)
	switch plan.Status {
	case readModelStatusMode:
		status = readModelStatus(db, projs)
	case runnerStatusMode:
		status = projs.status
	}
	if sim, ok := clk.(*clock.Simulated); ok {
		g.Go(func() error { return followClock(gctx, store, sim) })
	}

	m := newMetrics()
	pipeline := m.timed(commands.Logged(commands.New(store, clk, commands.Options{Policy: domain.Policy{MaxInboundTransfers: cfg.MaxInbound}}), log))
	if plan.Commands {
		n, err := seedDefaults(ctx, store, commands.New(store, clk, commands.Options{}))
		if err != nil {
			cancel()
			return fail(fmt.Errorf("load the shipped sellers of record: %w", err))
		}
		if n > 0 {
			log.Info("loaded the shipped sellers of record", "countries", n)
		}
	}
	// Tokens created or revoked through any process (billing.token.>) are
	// followed before the API serves, so a restart never rejects a valid token.
	tokensLoaded := make(chan struct{})
	g.Go(func() error { return verifier.Follow(gctx, store, func() { close(tokensLoaded) }) })
	// The directory of organizations and accounts: usage booking reads it, and
	// so does the authorization of payer and source requests (api.Options.Ledger).
	// A projector-only process serves neither.
	var dir *commands.Directory
	waitLoaded := []<-chan struct{}{tokensLoaded}
	if plan.Directory {
		dir = commands.NewDirectory(store)
		g.Go(func() error { return dir.Run(gctx) })
		waitLoaded = append(waitLoaded, dir.Ready())
	}
	for _, loaded := range waitLoaded {
		select {
		case <-loaded:
		case <-gctx.Done():
			cancel()
			return fail(fmt.Errorf("load tokens and organizations: %w", g.Wait()))
		}
	}
	opts := api.Options{
		Positions:  store,
		Clock:      clk,
		NATSURL:    natsURL,
		EventStore: cfg.Store,
		Verifier:   verifier,
		Metrics:    m.handler(),
		Logger:     log,
		Ready:      s.ready.Load,
	}
	if dir != nil {
		opts.Ledger = dir
	}
	if plan.Commands {
		opts.Executor = pipeline
	}
	if plan.Queries {
		opts.Transfers = transferReader{db}
		opts.Waiter = waiter
		opts.Billable = billableReader{db}
		opts.Proforma = proformaReader{db}
		opts.Invoices = db
	}
	var usageWriter *commands.UsageWriter
	if plan.Ingest {
		usageWriter = commands.NewUsageWriter(store, clk, dir, commands.UsageWriterOptions{Metrics: m.usageOutcome})
		opts.Usage = usageWriter
		opts.Malformed = usageWriter
		is := &ingest.Server{NC: nc, Writer: usageWriter, Log: log, Verifier: verifier}
		g.Go(func() error { return is.Run(gctx) })
	}
	// The dead letter is a read model: listed by the query role, re-driven
	// through the ingest role's writer.
	if plan.DeadLetters {
		opts.DeadLetters = deadLetters{db: db, list: plan.Queries, writer: usageWriter, waiter: usageWaiter}
	}
	mux := api.NewHandler(opts)
	mux.Handle("/", dashboard.MustNew()) // the page calls the API with the user's token: no auth here
	m.registerProjectorMetrics(store, status)
	// GET /readyz stays open like /healthz: probes carry no token.
	mux.HandleFunc("GET /readyz", readyz(store, status, s.ready.Load, cfg.ReadyMaxLag))
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		cancel()
		return fail(fmt.Errorf("--http %s: %w", cfg.HTTP, err))
	}
	s.HTTPAddr = ln.Addr().String()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if plan.Commands {
		key, _, err := loadSealKey(cfg.DataDir)
		if err != nil {
			cancel()
			return fail(fmt.Errorf("seal key: %w", err))
		}
		s.SealKeyID = eventstore.SealKeyID(key.Public().(ed25519.PublicKey))
		log.Info("month seals signed with", "key_id", s.SealKeyID, "file", filepath.Join(cfg.DataDir, sealKeyFile))
		sealer := commands.NewSealer(store, clk, key, log)
		g.Go(func() error {
			if err := sealer.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("sealer: %w", err)
			}
			return nil
		})
	}
	// The sweeper finds expired invitations in the transfers read model: it
	// needs one that some projector maintains where this process reads.
	switch {
	case plan.Sweeper:
		sw := &sweeper{db: db, exec: pipeline, clock: clk, interval: cfg.SweepInterval, log: log}
		g.Go(func() error { return sw.run(gctx) })
	case plan.Commands:
		log.Warn("expiry sweeper off: it reads the transfers read model, which no projector maintains in this process's SQLite file; run the command role with the projector role or with --readmodel postgres://… (expired invitations are still refused when accepted, T3)")
	}
	// Shut down on ctx end, or when a part fails.
	go func() {
		select {
		case <-ctx.Done():
		case <-gctx.Done():
		}
		s.ready.Store(false)
		shutdownCtx, c := context.WithTimeout(context.Background(), 10*time.Second)
		_ = srv.Shutdown(shutdownCtx)
		c()
		cancel()
		err := g.Wait()
		cleanup()
		log.Info("billingd stopped")
		s.done <- err
	}()
	s.ready.Store(true)
	log.Info("billingd ready", "http", "http://"+s.HTTPAddr, "nats", natsURL, "data_dir", cfg.DataDir, "roles", cfg.Role)
	return s, nil
}

// transferReader adapts the read model to the API port.
type transferReader struct{ db *readmodel.DB }

// ListTransfers implements api.TransferReader.
func (r transferReader) ListTransfers(ctx context.Context, f *billingv1.ListTransfersRequest) ([]*billingv1.Transfer, error) {
	rows, err := r.db.ListTransfers(ctx, readmodel.TransferFilter{PayerAccountID: f.GetPayerAccountId(), SourceAccountID: f.GetSourceAccountId(), Status: f.GetStatus()})
	if errors.Is(err, readmodel.ErrInvalidFilter) {
		return nil, domain.Reject(domain.CodeInvalidArgument, "%s", strings.TrimPrefix(err.Error(), "readmodel: invalid filter: "))
	}
	return rows, err
}

// openStore opens the event store --store names: the JetStream store on
// the NATS connection, or the KurrentDB store at --eventstore-url with the
// usage partitions and the billing views declared as its guard families
// (domain.GuardFamilies). The func closes it.
func openStore(ctx context.Context, cfg Config, nc *nats.Conn, log *slog.Logger) (eventstore.Store, func(), error) {
	if cfg.Store == "eventstoredb" {
		s, err := esdb.Open(ctx, esdb.Config{URL: cfg.EventStoreURL, GuardFamilies: domain.GuardFamilies(), Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("open the KurrentDB event store (--eventstore-url): %w", err)
		}
		log.Info("event store: KurrentDB", "url", redactURL(cfg.EventStoreURL))
		return s, func() { _ = s.Close() }, nil
	}
	s, err := jetstream.Open(ctx, nc, jetstream.Config{Replicas: cfg.Replicas})
	if err != nil {
		return nil, nil, fmt.Errorf("open JetStream event store: %w", err)
	}
	return s, func() {}, nil
}

// redactURL hides the password of a connection string, for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable connection string)"
	}
	return u.Redacted()
}

// persistentClock builds the simulated clock: it starts at the later of the flag
// and the last time stored on the clock stream, and every Set appends a
// ClockAdvanced event, so the clock survives restarts and is shared by every
// process on the same store.
func persistentClock(ctx context.Context, store eventstore.Store, start time.Time) (*clock.Simulated, error) {
	recs, err := store.ReadStream(ctx, domain.ClockStream)
	if err != nil {
		return nil, fmt.Errorf("read clock stream: %w", err)
	}
	var mu sync.Mutex
	version := uint64(len(recs))
	sim := clock.NewSimulated(start, func(ctx context.Context, t time.Time) error {
		mu.Lock()
		defer mu.Unlock()
		for attempt := 0; ; attempt++ {
			id, err := commands.NewV7At(t)
			if err != nil {
				return err
			}
			ev := &billingv1.Event{EventId: id.String(), RecordedAt: timestamppb.New(t), Actor: "admin", Payload: &billingv1.Event_ClockAdvanced{ClockAdvanced: &billingv1.ClockAdvanced{Now: timestamppb.New(t)}}}
			_, err = store.Append(ctx, eventstore.StreamAppend{Stream: domain.ClockStream, ExpectedVersion: version, Events: []*billingv1.Event{ev}})
			var ce *eventstore.ConflictError
			if errors.As(err, &ce) && attempt < 5 {
				version = ce.Actual
				continue
			}
			if err == nil {
				version++
			}
			return err
		}
	})
	for _, r := range recs {
		sim.Observe(r.Event.GetClockAdvanced().GetNow().AsTime())
	}
	return sim, nil
}

// followClock raises the simulated clock when another process advances it.
func followClock(ctx context.Context, store eventstore.Store, sim *clock.Simulated) error {
	err := store.Subscribe(ctx, 0, domain.ClockStream, func(r eventstore.Record) error {
		if c := r.Event.GetClockAdvanced(); c != nil {
			sim.Observe(c.GetNow().AsTime())
		}
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
