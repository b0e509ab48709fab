package bridge

import (
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestBackoff(t *testing.T) {
	cfg, err := Reconnect{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	b := newBackoff(cfg, clock.now)
	hi := func(n int64) int64 { return n - 1 } // the random part at its largest
	lo := func(int64) int64 { return 0 }       // and at its smallest

	if d := b.delay(0); d != 0 {
		t.Fatalf("first connection attempt waits %s, want 0", d)
	}
	// Failed attempts double the delay (half of it random) up to Max.
	for attempt, want := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond,
		5: 4 * time.Second, 8: 30 * time.Second, 40: 30 * time.Second} {
		b.rand = hi
		if d := b.delay(attempt); d != want {
			t.Errorf("attempt %d: at most %s, want %s", attempt, d, want)
		}
		b.rand = lo
		if d := b.delay(attempt); d != want/2 {
			t.Errorf("attempt %d: at least %s, want %s", attempt, d, want/2)
		}
	}

	// Connections taken away right after they came up (a takeover) grow the
	// delay across autopaho's cycles, whose attempt count restarts at 0.
	b.rand = hi
	for i, want := range []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second} {
		b.up()
		clock.advance(20 * time.Millisecond)
		if lasted, short := b.down(); lasted != 20*time.Millisecond || short != i+1 {
			t.Fatalf("down: lasted %s, %d short in a row; want 20ms, %d", lasted, short, i+1)
		}
		if d := b.delay(0); d != want {
			t.Errorf("after %d short connections: wait %s, want %s", i+1, d, want)
		}
	}
	// A connection that lasted resets it: reconnect at once.
	b.up()
	clock.advance(cfg.Stable)
	if _, short := b.down(); short != 0 {
		t.Fatalf("after a stable connection: %d short in a row, want 0", short)
	}
	if d := b.delay(0); d != 0 {
		t.Errorf("after a stable connection: wait %s, want 0", d)
	}
}

// TestBackoffTakeoverStorm replays the incident of issue 14: a rogue takes
// the session over every few milliseconds for 8 s. Without the back-off the
// bridge reconnected 3,476 times; with it, a handful.
func TestBackoffTakeoverStorm(t *testing.T) {
	cfg, _ := Reconnect{}.withDefaults()
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	b := newBackoff(cfg, clock.now)
	end := clock.t.Add(8 * time.Second)
	connections := 0
	for clock.t.Before(end) {
		b.up()
		connections++
		clock.advance(2 * time.Millisecond) // taken over at once
		b.down()
		clock.advance(b.delay(0))
	}
	if connections > 8 {
		t.Fatalf("%d connections in 8 s of takeovers, want at most 8", connections)
	}
	t.Logf("%d connections in 8 s of takeovers", connections)
}

func TestReconnectConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Reconnect
		ok   bool
	}{
		{"defaults", Reconnect{}, true},
		{"custom", Reconnect{Min: time.Second, Max: time.Minute, Stable: time.Minute}, true},
		{"max below min", Reconnect{Min: time.Minute, Max: time.Second}, false},
		{"negative", Reconnect{Min: -time.Second}, false},
	} {
		if _, err := tc.r.withDefaults(); (err == nil) != tc.ok {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
}
