// Package dlq holds the dead-letter tools: Stats counts dlq.events by
// stage, reason and source, with examples; Redrive re-runs the bridge's
// routing, decoding and validation (the current code and schemas) on dead
// letters and produces what now passes to its raw topic, with the bridge's
// deterministic event ids. Redrive never writes dead letters, so it cannot
// feed its own output back into the DLQ; a state file under --state-dir
// remembers which dead letters were re-driven, so a second re-drive writes
// nothing.
package dlq
