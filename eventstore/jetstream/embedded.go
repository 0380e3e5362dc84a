package jetstream

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is the embedded server's address when EmbeddedConfig.Listen is empty.
const DefaultListen = "127.0.0.1:4222"

// readyTimeout bounds how long StartEmbedded waits for the server (and the
// recovery of its JetStream files) before giving up.
const readyTimeout = 30 * time.Second

// EmbeddedConfig configures the in-process NATS server of a single-binary deployment.
type EmbeddedConfig struct {
	// DataDir holds the JetStream file storage, under DataDir/jetstream. Required.
	DataDir string
	// Listen is the client address "host:port"; port 0 picks a free port;
	// "" means DefaultListen (127.0.0.1:4222).
	Listen string
	// SyncAlways fsyncs every write before it is acknowledged. When false (the
	// default) JetStream fsyncs on its sync interval (2 minutes); see the
	// package comment for what that risks.
	SyncAlways bool
	// ServerName names the server in monitoring and logs; "" lets the server
	// use its generated id.
	ServerName string
}

// Embedded is a running in-process NATS server with JetStream enabled.
type Embedded struct {
	srv *natsserver.Server
	url string
}

// StartEmbedded starts a NATS server in this process with JetStream file
// storage under cfg.DataDir/jetstream and returns once it accepts clients and
// JetStream is ready (existing streams recovered). The server does not log and
// does not install signal handlers: the host process owns both.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("jetstream: embedded server needs a data directory")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("jetstream: listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("jetstream: listen address %q: bad port", listen)
	}
	if port == 0 {
		port = natsserver.RANDOM_PORT // in nats-server options 0 means the default 4222
	}
	opts := &natsserver.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		// nats-server appends "jetstream" to StoreDir itself.
		StoreDir:   cfg.DataDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: configure embedded server: %w", err)
	}
	log := &startupLog{fatal: make(chan string, 1)}
	srv.SetLoggerV2(log, false, false, false)
	srv.Start()
	fail := func(format string, args ...any) (*Embedded, error) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf(format, args...)
	}
	deadline := time.Now().Add(readyTimeout)
	for !srv.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-log.fatal: // e.g. the port is taken: the server will never be ready
			return fail("jetstream: embedded server on %s: %s", listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			return fail("jetstream: embedded server not ready to accept clients on %s within %s", listen, readyTimeout)
		}
	}
	if !srv.JetStreamEnabled() {
		return fail("jetstream: embedded server started without JetStream (data dir %s): %s", cfg.DataDir, log.lastError())
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		return fail("jetstream: embedded server has no TCP listener")
	}
	ip := addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return &Embedded{srv: srv, url: "nats://" + net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))}, nil
}

// startupLog is the embedded server's logger: silent, but it keeps the first
// fatal message (nats-server reports a failed listen only by logging it) and
// the last error, for StartEmbedded's error.
type startupLog struct {
	fatal chan string
	mu    sync.Mutex
	last  string
}

func (l *startupLog) Noticef(string, ...any) {}
func (l *startupLog) Warnf(string, ...any)   {}
func (l *startupLog) Debugf(string, ...any)  {}
func (l *startupLog) Tracef(string, ...any)  {}

func (l *startupLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	l.last = fmt.Sprintf(format, v...)
	l.mu.Unlock()
}

func (l *startupLog) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}

func (l *startupLog) lastError() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// ClientURL is the URL clients in this process use: nats://IP:PORT with the
// port actually bound (127.0.0.1 when listening on all interfaces).
func (e *Embedded) ClientURL() string { return e.url }

// Shutdown stops the server gracefully (JetStream flushes and closes its files)
// and returns when it has stopped.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
