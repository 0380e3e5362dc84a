// Package sim is the deterministic whole-system simulation of the ledger
// (issue #6 item 5, in the spirit of TigerBeetle's VOPR and formance's
// model-based tests).
//
// Everything lives in the test files:
//   - sim_test.go runs the seeds and reports a failing one with the command
//     that repeats it, every step logged;
//   - system_test.go is the system under test: the real command pipeline
//     (two of them, for races), usage writers with their directory, the five
//     projectors of billingd on a real SQLite file, and the event store
//     (memstore, or an embedded JetStream server);
//   - model_test.go is the independent reference model: plain maps and apd
//     decimals that know the rules of DESIGN.md (T1–T8, P1–P7, U2–U4,
//     X1–X5, M1, Y2–Y3) and predict every command's outcome and every read
//     model;
//   - gen_test.go is the seeded step generator and the runs' finale;
//   - check_test.go compares the read models with the model, and the live
//     digests with a replay (R2) and with projectors rebuilt from scratch;
//   - known_bugs_test.go holds a deterministic scenario per known bug.
//
// Environment: SIM_SEED=n runs one seed with every step logged (with -v);
// SIM_SEEDS (default 200, 20 with -short) seeds from SIM_FIRST_SEED (1);
// SIM_DURATION=10m runs seeds until the time is spent (make soak);
// SIM_NORACE=1 leaves out the concurrent steps, so that a run is exactly
// reproducible; SIM_STRICT=1 (or bug ids, comma-separated) checks the known
// bugs too; SIM_REPLAY=all replays and rebuilds every read model of every
// month for every seed; SIM_JETSTREAM_SEEDS (default 2) seeds also run on
// JetStream; SIM_PARALLEL, SIM_STEPS, SIM_MAX_FAILURES tune a run;
// SIM_TIMING=1 logs where the time went; SIM_DEBUG=1 dumps internal tables
// with a difference.
package sim
