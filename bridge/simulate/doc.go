// Package simulate generates realistic livestock telemetry and publishes it
// over MQTT, the way a herd of collar trackers and camera traps would: GPS
// random walks inside a pasture polygon, activity from an IMU, body
// temperature with occasional fever episodes, battery drain, heartbeats,
// devices that go silent for a while, SenML arrays, WildFi collars, and a few
// media uploads (the object goes to S3, its metadata message to MQTT).
//
// A chosen share of the traffic is malformed, covering every bad-input class
// the bridge must dead-letter; the catalogue of those classes and a fixture
// for each (Fixtures, Classes) is exported so the bridge tests, the smoke
// suite and chaos tests reuse the very payloads the simulator sends.
//
// Traffic is deterministic for a given Config.Seed and sequence of event
// times (Config.Clock); the wall clock only paces publishing. Run drives one
// simulation in-process (drover dev uses it through DevStage); Command wraps
// it as `drover simulate`.
package simulate
