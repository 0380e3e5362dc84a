// Package esdb is the optional KurrentDB (formerly EventStoreDB) adapter of
// the eventstore.Store port (DESIGN §2), on the official gRPC client
// (github.com/kurrent-io/KurrentDB-Client-Go, the renamed successor of
// EventStore-Client-Go, which has no multi-stream append). It passes the
// whole conformance suite on KurrentDB 25.1 or newer: stream reads must carry
// each event's $all position, subscriptions must announce when they catch
// up, and commands need the atomic multi-stream append (AppendSession) that
// 25.1 introduced. On an older server, single-stream appends and every read
// work; an append that needs several streams fails with ErrMultiStreamAppend
// and writes nothing.
//
// Map of the package:
//   - mapping.go   the pure mapping (names, versions, positions, encoding,
//     subject filters → server filters); tested without a server
//   - families.go  guard families: guard streams and their marks
//   - store.go     Open/New and Store: the port on a KurrentDB client
//
// # Appends
//
// An Append of one stream outside every declared guard family is one
// single-stream append with that stream's expected revision. Anything else —
// several streams (an invitation writes the transfer, both organizations and
// its request record), or a stream of a declared family — is one atomic
// multi-stream append, every stream with its expected revision: all of it is
// written, or nothing.
//
// # Guards over a family of streams
//
// KurrentDB has no conditional append over a family of streams ("every
// month of usage partition 07", filter "billing.usage.*.07"). The adapter
// builds one for the families declared in Config.GuardFamilies: every append
// to a stream of a declared family also writes one event to the family's
// guard stream ("ledger-guard:<namespace>:<filter>"), in the same atomic
// append, naming the family's streams it wrote and the version each reached
// (its "mark"). So the guard stream's length counts the appends to the
// family, and its newest mark locates the family's newest event. A guarded
// append (Guard.Filter a declared family, Guard.LastPosition the family's
// newest position the caller saw) first compares LastPosition with the
// family's newest position — from the adapter's cache when the cache is at
// that position, else from the newest mark — and fails with
// *eventstore.GuardConflictError if they differ; then it appends with the
// guard stream's expected revision, so that if any append to the family
// came in between, from this process or any other, the server refuses the
// whole append, which becomes *eventstore.GuardConflictError with the
// family's position read afresh. Unguarded appends to a family write their
// mark with any expected revision, so they never conflict with each other
// but always trip a guard (the conformance check GuardCoversSiblings).
// LastPositionMatching of a declared family reads its newest mark (two
// reads) instead of searching $all.
//
// Every process writing to a store must declare the same families (billingd
// declares domain.GuardFamilies: the 16 usage partitions and the billing
// views); a guard on an undeclared family fails with ErrWildcardGuard. A
// family declared after events were written to it has no guard stream yet;
// its position is then searched in $all until its first mark. A guard on the
// stream itself (no wildcard) needs no declaration: the stream's expected
// revision makes it exact. Guard streams are never delivered by ReadAll or
// Subscribe, and their events are not ledger events (no hash chain, JSON
// data).
//
// # Streams, events, versions
//
// A ledger stream is a KurrentDB stream of the same name
// ("billing.org.111111111111"), or "<Namespace>:<name>" with
// Config.Namespace, so that several ledgers or test runs can share a server.
// An event is stored as binary data: proto.Marshal of the sealed
// billingv1.Event envelope (stream, stream_version, prev_hash, hash set),
// with the payload's message name as event type ("BillSourceInvited") and
// JSON metadata with string values (correlationId, causationId, the ledger's
// event id, stream and version) for KurrentDB's tools; only the data is read
// back. The keys carry no '$' (a multi-stream append keeps those for the
// server), so the server's $by_correlation_id projection does not index the
// ledger's events. The event id is derived from the event's hash (a version
// 8 UUID), so it is unique per stream, version and content, and a
// single-stream append retried with the same events is recognised by the
// server as the same write: it succeeds without writing twice (KurrentDB's
// idempotent append), where the JetStream adapter answers a conflict; a
// retried multi-stream append is a conflict. Either way nothing is written
// twice.
//
// The ledger numbers a stream's events 1, 2, 3, ...; KurrentDB numbers
// revisions from 0. ExpectedVersion 0 ("the stream must not exist") is
// expected revision NoStream; ExpectedVersion v > 0 is expected revision
// v-1. Before appending, the adapter reads the stream's newest event (unless
// a cached one proves the version) to link the hash chain and to return
// *eventstore.ConflictError with the exact actual version without writing; the
// server's expected-revision check is what decides, atomically with the
// write. A refused expected revision becomes *eventstore.ConflictError
// (*eventstore.GuardConflictError for a guard stream, or for a guard on the
// stream itself), with the version read afterwards.
//
// # Positions and checkpoints
//
// A Record's Position is the event's commit position in $all: a byte offset
// in the server's transaction log, so strictly increasing in $all order and
// never reused, but not contiguous (other streams', guard streams' and the
// server's own records lie between). The adapter assumes, as KurrentDB
// reports for appends without explicit transactions (the adapter uses
// none), that an event's prepare position equals its commit position, so
// (commit, commit) is a valid $all position to resume from, and that a
// multi-stream append lays its streams out in $all in request order;
// TestConformance checks both against a real server (ReadAllResume,
// MultiStreamAtomic, GuardAppends). Projectors keep the position as their
// checkpoint (projections.Runner stores it next to its rows) and resume with
// Subscribe(checkpoint, filter). The position of a single event appended
// alone comes from the write result; the others are read back from their
// streams.
//
// # Reads
//
// ReadStream reads the stream forwards in batches of 1,000. ReadAll and
// Subscribe use a catch-up subscription to $all with a server-side filter on
// the stream name derived from the subject filter (see newServerFilter):
// "billing.org.>" becomes the prefix "billing.org.", "billing.usage.*.07"
// the expression ^billing\.usage\.[A-Za-z0-9_-]+\.07$, "" every ledger
// stream of the namespace. Events of other namespaces, guard streams and the
// server's own "$" streams are never delivered; each event is checked again
// on arrival with eventstore.MatchFilter. ReadAll stops at the store's last
// position at the time of the call: after the event at that position, at a
// checkpoint or event beyond it, or when the subscription catches up.
// Subscribe keeps following, and subscribes again after the last delivered
// position when the server drops the subscription (e.g. a leader change), so
// fn sees each event once. LastPosition reads $all backwards to the newest
// ledger event; LastPositionMatching reads a stream's newest event for a
// filter without wildcards, a declared family's newest mark, and otherwise
// scans $all backwards for up to 2,048 events before asking the server to
// search the rest with a filtered subscription. Reading $all needs the $all
// read permission ($admins by default; no credentials with --insecure).
//
// # Operating notes
//
// Do not set $maxCount, $maxAge or $tb on ledger or guard streams, delete or
// scavenge them away: the hash chain, the versions and the guards assume
// every event stays. The server's maximum append size (1 MiB by default)
// bounds one append in bytes; a larger one fails without writing. In a
// cluster, connect with nodePreference=leader so that reads after writes see
// them.
//
// # Conformance
//
// conformance_test.go runs eventstore/conformance against a server when
// EVENTSTORE_URL is set (otherwise it skips, saying how to start one), each
// check in its own namespace, with the suite's guard families
// (conformance.GuardFamilies) declared; nothing is skipped.
// TestConformanceOnFakeServer runs the same suite, always, through the real
// client against esdbfake, an in-memory model of KurrentDB 25.1's
// gRPC services; that proves the adapter against the model, not the model
// against KurrentDB.
package esdb
