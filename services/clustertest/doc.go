// Package clustertest runs the ledger's real write and read paths against a
// three-server NATS JetStream cluster in this process, with the BILLING stream
// at R3, and takes servers away while they work (issue #8 item 3):
//
//   - TestUsageIngestAcrossNodeAndLeaderLoss: organizations registered through
//     the command pipeline, then 50,000 usage records (and 4,000 re-sent
//     duplicates) ingested through commands.UsageWriter while a follower of
//     the stream, and later the stream leader, is stopped and restarted. A
//     batch that fails while the stream has no leader is retried as it is
//     (deduplication makes that safe). The billable read model, built by the
//     real projection runners in a real SQLite file, must hold every record
//     exactly once (exact decimal total and record count per month), and a
//     replay of each month (projections.ReplayMonthWith, as `billctl replay
//     --verify` runs it) must give the live digests; every stream's hash chain
//     must be intact.
//   - TestT4RaceDuringLeaderLoss: two command pipelines on separate NATS
//     connections, each preferring a different follower, race two
//     InviteBillSource commands for one source organization while the stream
//     leader is being stopped. Exactly one wins (T4); the other gets
//     TRANSFER_ALREADY_EXISTS, at once or when its retryable error is retried,
//     with the same request_id, after the cluster has recovered.
//
// The servers are nats-server instances in this process, on loopback ports,
// each with its own store directory; a stopped server is restarted with the
// same name, ports and directory, and catches up from its peers. Everything
// (servers, connections, runners) is stopped by t.Cleanup, and TestMain checks
// that no goroutine is left behind.
//
// The package has no code outside its tests; this file only carries the
// package comment.
package clustertest
