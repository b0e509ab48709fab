// Package control is the lifecycle of downlink commands, the closed half of
// drover's control channel. A command (commands.devices) moves
//
//	queued → sent → delivered → succeeded | failed | expired
//
// and every transition is a [schemas.CommandStatus] record on
// commands.status, keyed by tenant/device_id. A reply that arrives after
// the deadline (or after expiry) is recorded as late_reply and changes
// nothing; a second reply is not recorded at all.
//
// [Fold] folds a command's records into its [Command] view, in any order a
// replayed topic gives them; [Tracker] keeps that view for every command a
// bridge knows (restored from commands.status when it starts), which is how
// the bridge decides replies and expiry after a crash. Tracker is safe for
// concurrent use.
package control
