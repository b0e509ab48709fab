package inspect

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/drover-iot/drover/cli"
)

// PositionKind says how a Position picks an offset in each partition.
type PositionKind int

// Position kinds.
const (
	// Earliest is the first offset still in the partition (log start).
	Earliest PositionKind = iota + 1
	// Latest is the partition's end offset (the next offset to be written).
	Latest
	// Offset is an absolute offset, clamped to [log start, end].
	Offset
	// FromEnd is N records before the end offset (the -N form), clamped to
	// the log start.
	FromEnd
	// Time is the first offset whose record timestamp is at or after Time
	// (the RFC 3339 and -<duration> forms); the end offset when there is none.
	Time
)

// Position is a parsed --from or --to value.
type Position struct {
	Kind PositionKind
	// N is the offset (Offset) or the record count (FromEnd).
	N int64
	// At is the instant (Time).
	At time.Time
}

// ErrBadPosition is wrapped by ParsePosition's errors.
var ErrBadPosition = errors.New("bad position")

// ParsePosition parses a position: earliest | latest | <offset> | -<N> (N
// records before the end of each partition) | <RFC 3339 time> | -<duration>
// (a Go duration before now, e.g. -10m, -1h30m). now is the clock reading
// relative durations are taken from.
func ParsePosition(s string, now time.Time) (Position, error) {
	v := strings.TrimSpace(s)
	switch strings.ToLower(v) {
	case "":
		return Position{}, fmt.Errorf("%w: empty (want earliest, latest, an offset, -N, an RFC 3339 time or -<duration>)", ErrBadPosition)
	case "earliest", "beginning", "oldest", "start":
		return Position{Kind: Earliest}, nil
	case "latest", "end", "newest", "now":
		return Position{Kind: Latest}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return Position{Kind: FromEnd, N: -n}, nil
		}
		return Position{Kind: Offset, N: n}, nil
	}
	if rest, ok := strings.CutPrefix(v, "-"); ok {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return Position{}, fmt.Errorf("%w: %q is not a duration before now (e.g. -10m, -2h, -1h30m): %v", ErrBadPosition, v, durationReason(err))
		}
		if d <= 0 {
			return Position{}, fmt.Errorf("%w: %q: the duration must be positive", ErrBadPosition, v)
		}
		return Position{Kind: Time, At: now.Add(-d)}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return Position{Kind: Time, At: t}, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", v, time.UTC); err == nil {
		return Position{Kind: Time, At: t}, nil
	}
	return Position{}, fmt.Errorf("%w: %q (want earliest, latest, an offset, -N, an RFC 3339 time such as 2026-01-02T15:04:05Z, or -<duration> such as -10m)", ErrBadPosition, v)
}

// durationReason shortens time.ParseDuration's error to its reason
// (`unknown unit "x"`), without the input, which the caller quotes.
func durationReason(err error) string {
	msg := strings.TrimPrefix(err.Error(), "time: ")
	if i := strings.Index(msg, " in duration"); i >= 0 {
		msg = msg[:i]
	}
	if strings.HasPrefix(msg, "invalid duration") || strings.HasPrefix(msg, "missing unit") {
		msg, _, _ = strings.Cut(msg, " \"")
	}
	return msg
}

// String renders p in the form ParsePosition reads.
func (p Position) String() string {
	switch p.Kind {
	case Earliest:
		return "earliest"
	case Latest:
		return "latest"
	case Offset:
		return strconv.FormatInt(p.N, 10)
	case FromEnd:
		return "-" + strconv.FormatInt(p.N, 10)
	case Time:
		return p.At.UTC().Format(time.RFC3339Nano)
	}
	return "?"
}

// partitionKey names one partition.
type partitionKey struct {
	Topic     string
	Partition int32
}

// bounds are a partition's log start and end offsets.
type bounds struct{ start, end int64 }

// listBounds returns the start and end offsets of every partition of topics.
func listBounds(ctx context.Context, adm *kadm.Client, topics []string) (map[partitionKey]bounds, error) {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets: %w", err)
	}
	out := make(map[partitionKey]bounds)
	ends.Each(func(o kadm.ListedOffset) {
		b := bounds{start: 0, end: o.Offset}
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			b.start = s.Offset
		}
		out[partitionKey{o.Topic, o.Partition}] = b
	})
	return out, nil
}

// resolve turns p into an offset for every partition in parts, using the
// partitions' bounds; time positions ask the cluster (cli.OffsetsAfter).
func (p Position) resolve(ctx context.Context, adm *kadm.Client, parts map[partitionKey]bounds) (map[partitionKey]int64, error) {
	out := make(map[partitionKey]int64, len(parts))
	var times kadm.ListedOffsets
	if p.Kind == Time {
		topicSet := map[string]bool{}
		var topics []string
		for k := range parts {
			if !topicSet[k.Topic] {
				topicSet[k.Topic] = true
				topics = append(topics, k.Topic)
			}
		}
		var err error
		times, err = cli.OffsetsAfter(ctx, adm, p.At, topics...)
		if err == nil {
			err = times.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("looking up offsets at %s: %w", p.At.UTC().Format(time.RFC3339), err)
		}
	}
	for k, b := range parts {
		var off int64
		switch p.Kind {
		case Earliest:
			off = b.start
		case Latest:
			off = b.end
		case Offset:
			off = p.N
		case FromEnd:
			off = b.end - p.N
		case Time:
			off = b.end
			if o, ok := times.Lookup(k.Topic, k.Partition); ok && o.Offset >= 0 {
				off = o.Offset
			}
		}
		out[k] = min(max(off, b.start), b.end)
	}
	return out, nil
}
