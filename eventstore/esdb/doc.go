// Package esdb is the optional EventStoreDB / KurrentDB adapter of the
// eventstore.Store port (DESIGN §2), on the official gRPC client
// (github.com/EventStore/EventStore-Client-Go/v4). It needs EventStoreDB 23.10
// or newer (KurrentDB included): stream reads must carry each event's $all
// position (22.6+) and subscriptions must announce when they catch up (23.10+).
//
// Map of the package:
//   - mapping.go  the pure mapping (names, versions, positions, encoding,
//     subject filters → server filters, what cannot be done); tested without a server
//   - store.go    Open/New and Store: the port on an EventStoreDB client
//
// # What it supports, and what it cannot
//
// EventStoreDB appends atomically to ONE stream, guarded by that stream's
// expected revision. The port asks for more, and this adapter does not
// pretend:
//
//   - Append with one StreamAppend (1 to eventstore.MaxAppendEvents events):
//     supported, atomic, with exact optimistic concurrency.
//   - Append with several StreamAppends (several streams at once): NOT
//     supported. It fails with ErrMultiStreamAppend (errors.ErrUnsupported)
//     and writes nothing. Writing the streams one after another would not be
//     atomic (a crash or a conflict on the second stream leaves the first
//     written), and a single "transaction stream" would make every reader
//     resolve which events committed; neither is honest to the port. The
//     command pipeline appends most commands to several streams (an
//     invitation writes the transfer and both organizations, and its
//     request_id record), so the command role cannot run on this adapter;
//     newer KurrentDB servers add a multi-stream append that the v4 client
//     does not expose.
//   - A Guard whose filter is the stream itself (no wildcard): supported and
//     exact: the family is the stream, whose newest position is checked with
//     its expected revision.
//   - A Guard over a family of streams (a filter with "*" or ">", as the usage
//     writer's "billing.usage.*.<pp>"): EventStoreDB has no conditional append
//     over several streams. By default it fails with ErrWildcardGuard and
//     writes nothing. With Config.InProcessGuards the adapter checks it in
//     this process, under one lock per filter text: it reads the family's
//     newest position, compares it with the guard, and appends with the
//     stream's expected revision. That is exact only when this Store is the
//     only writer of the family (one ingest process; the same requirement the
//     JetStream adapter states for unguarded writers of a guarded family in
//     a cluster), and it costs a read of $all per append.
//
// # Streams, events, versions
//
// A ledger stream is an EventStoreDB stream of the same name
// ("billing.org.111111111111"), or "<Namespace>:<name>" with
// Config.Namespace, so that several ledgers or test runs can share a server.
// An event is stored as binary data: proto.Marshal of the sealed
// billingv1.Event envelope (stream, stream_version, prev_hash, hash set),
// with the payload's message name as event type ("BillSourceInvited") and
// JSON metadata ($correlationId, $causationId, the ledger's event id, stream
// and version) for EventStoreDB's tools; only the data is read back. The
// EventStoreDB event id is derived from the event's hash (a version 8 UUID),
// so it is unique per stream, version and content, and an append retried with
// the same events is recognised by the server as the same write: it succeeds
// without writing twice (EventStoreDB's idempotent append), where the
// JetStream adapter answers a conflict. Either way nothing is written twice.
//
// The ledger numbers a stream's events 1, 2, 3, ...; EventStoreDB numbers
// revisions from 0. ExpectedVersion 0 ("the stream must not exist") is
// expected revision NoStream; ExpectedVersion v > 0 is expected revision
// v-1. Before appending, the adapter reads the stream's newest event (unless
// a cached one proves the version) to link the hash chain and to return
// *eventstore.ConflictError with the exact actual version without writing; the
// server's expected-revision check is what decides, atomically with the
// write. A "wrong expected version" answer becomes *eventstore.ConflictError
// (or *eventstore.GuardConflictError for a guarded append), with the version
// read afterwards.
//
// # Positions and checkpoints
//
// A Record's Position is the event's commit position in $all: a byte offset
// in the server's transaction log, so strictly increasing in $all order and
// never reused, but not contiguous (other streams' and the server's own
// records lie between). The adapter never uses explicit transactions, so an
// event's prepare position equals its commit position, and the pair
// (commit, commit) is a valid $all position to resume from. Projectors keep
// that number as their checkpoint (projections.Runner stores it next to its
// rows) and resume with Subscribe(checkpoint, filter). The position of a
// single appended event comes from the write result; the positions of a
// batch are read back from the stream.
//
// # Reads
//
// ReadStream reads the stream forwards in batches of 1,000. ReadAll and
// Subscribe use a catch-up subscription to $all with a server-side filter on
// the stream name derived from the subject filter (see newServerFilter):
// "billing.org.>" becomes the prefix "billing.org.", "billing.usage.*.07"
// the expression ^billing\.usage\.[A-Za-z0-9_-]+\.07$, "" every ledger
// stream of the namespace. Events of other namespaces and the server's own
// "$" streams are never delivered; each event is checked again on arrival
// with eventstore.MatchFilter. ReadAll stops at the store's last position at
// the time of the call: after the event at that position, at a checkpoint or
// event beyond it, or when the subscription catches up. Subscribe keeps
// following, and subscribes again after the last delivered position when the
// server drops the subscription (e.g. a leader change), so fn sees each event
// once. LastPosition reads $all backwards to the newest ledger event;
// LastPositionMatching reads a stream's newest event for a filter without
// wildcards, and otherwise scans $all backwards for up to 2,048 events before
// asking the server to search the rest with a filtered subscription. Reading
// $all needs the $all read permission ($admins by default; no credentials
// with --insecure).
//
// # Operating notes
//
// Do not set $maxCount, $maxAge or $tb on ledger streams, delete or scavenge
// them away: the hash chain and the versions assume every event stays. The
// server's maximum append size (1 MiB by default) bounds one append in bytes;
// a larger one fails without writing. In a cluster, connect with
// nodePreference=leader so that reads after writes see them.
//
// # Conformance
//
// conformance_test.go runs eventstore/conformance against a server when
// EVENTSTORE_URL is set (otherwise it skips, saying how to start one), each
// subtest in its own namespace, with InProcessGuards (the suite writes from
// one process). The checks that append to several streams in one Append are
// skipped with ErrMultiStreamAppend as the reason; TestConformanceNeeds proves
// the list exact by running the suite on the in-memory store and recording
// which checks use which feature:
//
//	check                       multi-stream append   wildcard guard
//	AppendAndReadStream         -                     -
//	ConflictWritesNothing       -                     -
//	ConcurrentWriters           -                     -
//	MultiStreamAtomic           yes (skipped)         -
//	LargestAppend               yes (skipped)         -
//	ReadAllResume               yes (skipped)         -
//	ReadAllBound                -                     -
//	Filter                      yes (skipped)         -
//	Subscribe                   yes (skipped)         -
//	SubscribeStopsOnError       -                     -
//	HashChain                   yes (skipped)         -
//	InvalidInput                -                     -
//	GuardAppends                yes (skipped)         yes
//	GuardConflictWritesNothing  yes (skipped)         yes
//	GuardCoversSiblings         -                     yes (InProcessGuards)
//	GuardConcurrentWriters      -                     yes (InProcessGuards)
//	LastPositionMatching        yes (skipped)         -
//	GuardValidation             -                     yes (InProcessGuards)
package esdb
