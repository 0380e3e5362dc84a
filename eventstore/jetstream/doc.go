// Package jetstream is the default eventstore.Store adapter, on NATS JetStream
// (DESIGN §2). It runs against an external NATS cluster or against the server
// that StartEmbedded runs inside billingd.
//
// Map of the package:
//   - embedded.go  StartEmbedded: an in-process nats-server with JetStream file storage
//   - store.go     Open and Store: the eventstore.Store port on one JetStream stream,
//     guards (Nats-Expected-Last-Subject-Sequence-Subject) and LastPositionMatching
//
// # Layout
//
// All events live in one JetStream stream (default "BILLING", subjects
// "billing.>"). An event store stream name IS the NATS subject, e.g.
// "billing.org.111111111111". A message's data is proto.Marshal of the sealed
// billingv1.Event (stream, stream_version, prev_hash and hash set), and a
// record's Position is the message's JetStream stream sequence. The stream is
// created with file storage, no limits (no max age, messages, bytes or
// messages per subject), DiscardNew (should a limit ever be set, new writes
// are refused rather than old events dropped), DenyDelete and DenyPurge, so a
// message, once acknowledged, keeps its sequence for ever.
//
// # Optimistic concurrency
//
// A stream's version is the number of events on its subject; JetStream guards
// writes with the subject's last sequence, which is a stream-wide sequence.
// Append translates the caller's ExpectedVersion v into that sequence: v = 0
// means "no message on the subject" (Nats-Expected-Last-Subject-Sequence: 0);
// v > 0 means the sequence of the event at version v, whose hash also becomes
// the prev_hash of the next event. Because messages are never deleted, the
// pair (stream, version) → (sequence, hash) never changes, so the Store caches
// the newest pair it has seen per stream; on a miss it reads the subject's
// last message with a direct get, and if that message's stream_version is not
// v it returns *eventstore.ConflictError without publishing. The check that
// decides is the server's: it compares Nats-Expected-Last-Subject-Sequence
// with the subject's last sequence under the stream's lock, atomically with
// the write, so of two writers that both read version v exactly one appends
// v+1. A "wrong last sequence" rejection writes nothing; Append then reads the
// actual versions and returns *eventstore.ConflictError for the first stream
// whose version moved.
//
// # Guards
//
// A StreamAppend with an eventstore.Guard{Filter, LastPosition} carries, on
// its stream's first message, Nats-Expected-Last-Subject-Sequence:
// LastPosition and Nats-Expected-Last-Subject-Sequence-Subject: Filter instead
// of the stream's own expected sequence. The server then compares
// LastPosition with the newest message on ANY subject matching the filter
// (wildcards allowed; 0 = none) and refuses the message with "wrong last
// sequence" (10071) otherwise. On a plain publish it checks under the
// stream's lock, atomically with the write. Inside an atomic batch it checks
// the guard of every subject's first message at the commit, against the
// stream as it was before the batch (a guard does not see the batch's earlier
// messages), and a failed guard rejects the whole batch; TestBatchChecksGuard
// verifies this on raw batches, so guarded appends of several events, or to
// several streams, are supported. A rejection writes nothing; Append then
// reads the newest matching position and returns
// *eventstore.GuardConflictError with it as Actual.
//
// The server checks only the guard, not the stream's version, yet the version
// numbers the events and links the hash chain. It is right if it is the
// stream's newest version among the messages up to LastPosition, which never
// change once written; the guard then ensures nothing newer exists at the
// commit. Append takes that as proven when ExpectedVersion and LastPosition
// are both 0 or when the cached event at ExpectedVersion is the one at
// LastPosition (a writer appending to the same stream again); otherwise it
// reads the stream's newest event from the stream leader and returns
// *eventstore.ConflictError if its version is not ExpectedVersion
// (TestGuardWithStaleCache).
//
// LastPositionMatching, and those leader reads, use the JetStream API's
// message get ($JS.API.STREAM.MSG.GET) with last_by_subj set to the filter:
// one request, answered by the stream leader (a direct get may be answered by
// a replica that lags), which looks the message up with the same store
// function as the guard check, wildcards included, from its per-subject
// index: the cost grows with the number of matching subjects, not messages.
// Stream info only counts messages per subject, and an ordered consumer with
// DeliverLastPerSubject would send one message per matching subject.
//
// In cluster mode (R3) the leader checks a guard before proposing the
// message, against the stored messages and the guards in flight with the
// same filter text: of concurrent appends guarded by the same filter exactly
// one wins (the others get "wrong last sequence", 10071 or 10164, and
// *eventstore.GuardConflictError, whose Actual may still equal Expected while
// the winner is in flight); TestGuardInCluster checks this on three servers.
// It does NOT see an unguarded append, or one guarded by a different filter
// text, to a subject of the family that is proposed but not yet applied; such
// an append can slip past a guard (observed with a variant of that test that
// adds unguarded writers beside the guarded ones). So every append to the streams of a
// guarded family must carry the guard with the same filter text. The embedded
// single-replica server checks under the stream's lock and holds a guard
// against every append.
//
// # Atomic appends
//
// An append of one event is one ordinary JetStream publish. An append of
// several events, to one stream or several, is one JetStream atomic batch
// (nats-server ≥ 2.12, stream option AllowAtomicPublish): every message carries
// Nats-Batch-Id and Nats-Batch-Sequence, the last one Nats-Batch-Commit: 1. The
// server stages the batch and, on the commit, checks the headers of every
// message and stores all of them with consecutive sequences, or none. The
// first message of each stream in the batch carries
// Nats-Expected-Last-Subject-Sequence; the server checks it inside the batch
// for every subject, not only the batch's first message (the tests verify this
// with raw batches), and refuses the header on a later message of a subject
// already written in the same batch, which is why only the first message of a
// stream carries it. A failed batch stores nothing. Direct gets (ReadStream)
// are isolated from a batch commit; a consumer (ReadAll, Subscribe) may see
// the first messages of a batch a moment before the rest, as it may see any
// prefix of the stream.
//
// The server caps a batch at 1,000 messages (eventstore.MaxAppendEvents:
// larger appends are rejected before anything is sent) and allows 50 batches
// in flight per stream; a Store keeps at most 32 of its own in flight and
// retries the server's "too many inflight" answer, which stages nothing.
//
// Cost: on an R1 stream with file storage (the embedded server) the server
// stages each atomic batch in a file store of its own under the JetStream
// directory: created on the batch's first message, fsynced at the commit and
// removed afterwards, whatever SyncAlways says. Every append of more than one
// event therefore costs a few milliseconds (about 4-5 ms on the virtual disk
// where bench_test.go was run, most of it creating the staging store, against
// about 40 µs for a single-event append); in the same measurements concurrent
// batches barely overlapped (batch10-parallel), while single-event appends
// running beside them were not slowed. The staging copy is deleted at the
// commit, so its fsync does not make the committed events durable against an
// operating system crash; SyncAlways does. Replicated streams (R3) stage
// batches in memory and do not pay this.
//
// A publish that times out may or may not have been written. Retrying the same
// append with the same expected version is safe: if the first attempt was
// written, the retry fails with a conflict instead of writing twice.
//
// # Reads
//
// ReadStream uses batched direct gets filtered on the subject (up to 1,000
// messages per request). ReadAll and Subscribe use an ordered consumer starting
// after the given position; ReadAll stops at the stream's last sequence at the
// time of the call. In a cluster, direct gets may be answered by a replica
// that lags the leader by a few milliseconds, so ReadStream can return a
// slightly older stream; that is safe, because the expected version of the
// resulting append is checked by the leader, and the command is retried.
// Ordered consumers are served by the leader.
//
// # Durability
//
// The embedded server (StartEmbedded) runs a single replica (R1) on file
// storage under DataDir/jetstream. An R1 stream writes every message into its
// block file with a write system call before acknowledging it, so a crash of
// the process (panic, kill -9) loses no acknowledged event. Whether the data
// reaches the disk depends on EmbeddedConfig.SyncAlways:
//
//   - false (default): JetStream's default sync interval applies: the server
//     fsyncs its files every 2 minutes (and on a clean shutdown). An operating
//     system crash or power loss can lose the events acknowledged during the
//     last 2 minutes, in any stream. The file store checksums every record
//     and drops a torn or missing tail when it recovers, so each stream's hash
//     chain stays a valid prefix; projections that checkpointed a lost position
//     must then be rebuilt (billctl replay).
//   - true: every write, and every atomic batch once, is fsynced before the
//     acknowledgement; nothing acknowledged is lost, at a cost in latency and
//     throughput (see bench_test.go).
//
// Cluster mode (billingd against an external NATS cluster) opens the stream
// with Config.Replicas = 3: an event is acknowledged once a majority of the
// three servers holds it in its Raft log, so losing one server loses nothing
// and the stream stays writable.
package jetstream
