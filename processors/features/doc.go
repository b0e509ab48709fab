// Package features is the goka group that turns raw readings into
// per-device features on features.events: for every device and metric,
// tumbling event-time windows (one or more sizes) with count, min, max,
// mean, standard deviation, first and last value; for GPS fixes, motion per
// window (haversine distance, mean and max speed, moving and stationary
// time).
//
// Windows close when the device's own event time passes window end plus
// the allowed lateness, or by the wall clock after an idle timeout (a tick
// visitor, see package groupkit). A window is emitted when the device's
// event time passes its end; late records within the lateness update and
// re-emit it with the same deterministic feature id; later records are
// counted and dropped. See README.md in the parent folder for the details.
package features
