package console

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/drover-iot/drover/backfill/dlq"
	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/routes"
	"github.com/drover-iot/drover/topics"
)

// Dead letters are read from dlq.events, which keeps the original bytes:
// the database's dead_letters table is for analysts, and its payload column
// is meant for an operator role only.

// LetterFilter selects dead letters. Zero fields select everything.
type LetterFilter struct {
	Since, Until   time.Time
	Stage, Reason  string
	Tenant, Device string
	Limit          int
}

// LetterRow is one dead letter in the list (the payload as an excerpt).
type LetterRow struct {
	Partition   int32     `json:"partition"`
	Offset      int64     `json:"offset"`
	Time        time.Time `json:"time"`
	ID          string    `json:"id"`
	Stage       string    `json:"stage"`
	Reason      string    `json:"reason"`
	Message     string    `json:"message"`
	Source      string    `json:"source"`
	Tenant      string    `json:"tenant,omitempty"`
	Device      string    `json:"device,omitempty"`
	PayloadSize int64     `json:"payload_size"`
	Excerpt     string    `json:"excerpt"`
}

// LetterList is a page of dead letters, newest first, with the counts of
// every stage and reason in the window (for the filter menus).
type LetterList struct {
	Letters []LetterRow `json:"letters"`
	// Matched is how many matched the filter (Letters holds the newest
	// Limit of them); Scanned how many the window held.
	Matched int            `json:"matched"`
	Scanned int            `json:"scanned"`
	Stages  map[string]int `json:"stages"`
	Reasons map[string]int `json:"reasons"`
	Since   time.Time      `json:"since"`
	Until   time.Time      `json:"until"`
}

const defaultLetterLimit = 200

func (f LetterFilter) match(l dlq.Letter) bool {
	return (f.Stage == "" || l.Stage == f.Stage) && (f.Reason == "" || l.Reason == f.Reason) &&
		(f.Tenant == "" || deref(l.Tenant) == f.Tenant) && (f.Device == "" || deref(l.DeviceID) == f.Device)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// listLetters reads the window of dlq.events and keeps the newest matches.
func (s *Server) listLetters(ctx context.Context, f LetterFilter) (LetterList, error) {
	out := LetterList{Stages: map[string]int{}, Reasons: map[string]int{}, Since: f.Since, Until: f.Until, Letters: []LetterRow{}}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultLetterLimit
	}
	err := dlq.Read(ctx, s.kc, s.cfg.Serde, topics.DLQ, f.Since, f.Until, func(l dlq.Letter) error {
		out.Scanned++
		out.Stages[l.Stage]++
		out.Reasons[l.Reason]++
		if !f.match(l) {
			return nil
		}
		out.Matched++
		out.Letters = append(out.Letters, rowOf(l))
		if len(out.Letters) >= 2*limit {
			out.Letters = newest(out.Letters, limit)
		}
		return nil
	})
	out.Letters = newest(out.Letters, limit)
	if err != nil {
		return out, fmt.Errorf("reading %s: %w", topics.DLQ, err)
	}
	return out, nil
}

func newest(rows []LetterRow, n int) []LetterRow {
	slices.SortFunc(rows, func(a, b LetterRow) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return int(b.Offset - a.Offset)
	})
	if len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

func rowOf(l dlq.Letter) LetterRow {
	ex := l.Payload
	if len(ex) > 96 {
		ex = ex[:96]
	}
	return LetterRow{Partition: l.Partition, Offset: l.Offset, Time: l.Time, ID: l.ID, Stage: l.Stage, Reason: l.Reason,
		Message: l.Message, Source: l.Source, Tenant: deref(l.Tenant), Device: deref(l.DeviceID), PayloadSize: l.PayloadSize,
		Excerpt: printable(ex)}
}

// printable shows bytes as text where they are printable UTF-8 and as
// \xNN escapes elsewhere.
func printable(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 || r < 0x20 && r != '\n' && r != '\t' || r == 0x7f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 {
			fmt.Fprintf(&sb, "\\x%02x", b[0])
			b = b[1:]
			continue
		}
		sb.WriteRune(r)
		b = b[n:]
	}
	return sb.String()
}

func (s *Server) serveLetters(w http.ResponseWriter, r *http.Request) {
	f, err := parseLetterFilter(r, s.cfg.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	key := fmt.Sprintf("%d|%d|%s|%s|%s|%s|%d", f.Since.UnixMilli(), f.Until.UnixMilli(), f.Stage, f.Reason, f.Tenant, f.Device, f.Limit)
	list, err := s.letters.get(r.Context(), key, func(ctx context.Context) (LetterList, error) { return s.listLetters(ctx, f) })
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, list)
}

// parseLetterFilter reads since (default 1h) and until as a duration back
// from now or a time (dlq.ParseSince, like drover dlq), and the field
// filters. Times are rounded to the second so that polling pages share the
// cached read.
func parseLetterFilter(r *http.Request, now time.Time) (LetterFilter, error) {
	q := r.URL.Query()
	f := LetterFilter{Stage: q.Get("stage"), Reason: q.Get("reason"), Tenant: q.Get("tenant"), Device: q.Get("device")}
	now = now.Truncate(time.Second)
	since := q.Get("since")
	if since == "" {
		since = "1h"
	}
	var err error
	if f.Since, err = dlq.ParseSince(since, now); err != nil {
		return f, fmt.Errorf("since: %w", err)
	}
	if u := q.Get("until"); u != "" {
		if f.Until, err = dlq.ParseSince(u, now); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
	}
	if l := q.Get("limit"); l != "" {
		if f.Limit, err = strconv.Atoi(l); err != nil || f.Limit < 1 || f.Limit > 5000 {
			return f, fmt.Errorf("limit: %q is not a number from 1 to 5000", l)
		}
	}
	return f, nil
}

// LetterDetail is one dead letter with its original bytes.
type LetterDetail struct {
	LetterRow
	PayloadBase64 []byte            `json:"payload_base64"`
	PayloadText   string            `json:"payload_text"`
	PayloadHex    string            `json:"payload_hex"`
	Truncated     bool              `json:"truncated"`
	ContentType   string            `json:"content_type,omitempty"`
	Headers       map[string]string `json:"headers"`
	KafkaHeaders  map[string]string `json:"kafka_headers"`
	ReceivedAt    time.Time         `json:"received_at"`
}

func (s *Server) serveLetter(w http.ResponseWriter, r *http.Request) {
	p, perr := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	o, oerr := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if perr != nil || oerr != nil || p < 0 || o < 0 {
		writeError(w, http.StatusBadRequest, errors.New("want /api/deadletters/PARTITION/OFFSET"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	d, err := s.readLetter(ctx, int32(p), o)
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	writeJSON(w, d)
}

// readLetter reads the record at partition/offset of dlq.events.
func (s *Server) readLetter(ctx context.Context, p int32, off int64) (LetterDetail, error) {
	ends, err := s.adm.ListEndOffsets(ctx, topics.DLQ)
	if err != nil {
		return LetterDetail{}, err
	}
	end, ok := ends.Lookup(topics.DLQ, p)
	switch {
	case !ok:
		return LetterDetail{}, fmt.Errorf("%s has no partition %d", topics.DLQ, p)
	case end.Err != nil:
		return LetterDetail{}, fmt.Errorf("%s partition %d: %w", topics.DLQ, p, end.Err)
	case off >= end.Offset:
		return LetterDetail{}, fmt.Errorf("%s has no record at partition %d offset %d (end %d)", topics.DLQ, p, off, end.Offset)
	}
	cl, err := kgo.NewClient(append(s.kc.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topics.DLQ: {p: kgo.NewOffset().At(off)}}))...)
	if err != nil {
		return LetterDetail{}, err
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(ctx, 1)
		if err := ctx.Err(); err != nil {
			return LetterDetail{}, fmt.Errorf("reading %s/%d@%d: %w", topics.DLQ, p, off, err)
		}
		var rec *kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if rec == nil && r.Offset >= off {
				rec = r
			}
		})
		if rec == nil {
			continue
		}
		if rec.Offset != off {
			return LetterDetail{}, fmt.Errorf("%s has no record at partition %d offset %d (compacted or a transaction marker)", topics.DLQ, p, off)
		}
		return s.letterDetail(ctx, rec), nil
	}
}

func (s *Server) letterDetail(ctx context.Context, rec *kgo.Record) LetterDetail {
	l := dlq.Letter{Partition: rec.Partition, Offset: rec.Offset, Time: rec.Timestamp}
	if _, err := s.cfg.Serde.Decode(ctx, rec.Value, &l.DeadLetter); err != nil {
		l.Stage, l.Reason, l.Message, l.Payload = "undecodable", "undecodable", err.Error(), rec.Value
	}
	d := LetterDetail{LetterRow: rowOf(l), PayloadBase64: l.Payload, PayloadText: printable(l.Payload), PayloadHex: hex.Dump(l.Payload),
		Truncated: l.Truncated, ContentType: deref(l.ContentType), Headers: l.Headers, KafkaHeaders: map[string]string{}, ReceivedAt: l.ReceivedAt}
	if d.Headers == nil {
		d.Headers = map[string]string{}
	}
	for _, h := range rec.Headers {
		d.KafkaHeaders[h.Key] = printable(h.Value)
	}
	return d
}

// RedriveRequest is the body of POST /api/deadletters/redrive.
type RedriveRequest struct {
	Letters []LetterRef `json:"letters"`
	DryRun  bool        `json:"dry_run"`
}

// LetterRef names a dead letter by its place in dlq.events and its time
// (the record timestamp, which bounds the read).
type LetterRef struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
}

// RedriveResponse is what a re-drive did (or would do) per letter.
type RedriveResponse struct {
	Result   dlq.RedriveResult `json:"result"`
	Outcomes []LetterOutcome   `json:"outcomes"`
}

// LetterOutcome is one letter's outcome.
type LetterOutcome struct {
	LetterRef
	ID string `json:"id"`
	dlq.Outcome
}

// maxRedrive bounds one request's selection.
const maxRedrive = 1000

// redrive runs dlq.Redrive — the code of `drover dlq redrive` — on the
// selected letters: the window is the letters' time span, Select keeps
// exactly them, the routes file is read now.
func (s *Server) redrive(ctx context.Context, req RedriveRequest) (RedriveResponse, error) {
	var resp RedriveResponse
	if len(req.Letters) == 0 || len(req.Letters) > maxRedrive {
		return resp, &requestError{fmt.Errorf("select 1 to %d dead letters (got %d)", maxRedrive, len(req.Letters))}
	}
	want := map[[2]int64]bool{}
	since, until := req.Letters[0].Time, req.Letters[0].Time
	for _, l := range req.Letters {
		want[[2]int64{int64(l.Partition), l.Offset}] = true
		since, until = minTime(since, l.Time), maxTime(until, l.Time)
	}
	o := dlq.RedriveOptions{Since: since.Add(-time.Millisecond), Until: until.Add(time.Millisecond), DryRun: req.DryRun,
		StateFile: s.cfg.RedriveStateFile, Log: s.cfg.Log,
		Select: func(l dlq.Letter) bool { return want[[2]int64{int64(l.Partition), l.Offset}] },
		OnLetter: func(l dlq.Letter, oc dlq.Outcome) {
			resp.Outcomes = append(resp.Outcomes, LetterOutcome{LetterRef: LetterRef{Partition: l.Partition, Offset: l.Offset, Time: l.Time}, ID: l.ID, Outcome: oc})
		}}
	if s.cfg.RoutesFile != "" {
		routes, err := routes.Load(s.cfg.RoutesFile)
		if err != nil {
			return resp, fmt.Errorf("routes: %w", err)
		}
		o.Routes = routes
	}
	adm, err := s.admission(ctx)
	if err != nil {
		return resp, err
	}
	o.Admission = adm
	res, err := dlq.Redrive(ctx, s.kc, s.cfg.Serde, o)
	resp.Result = res
	if resp.Outcomes == nil {
		resp.Outcomes = []LetterOutcome{}
	}
	return resp, err
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

type requestError struct{ err error }

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// serveRedrive runs a re-drive. A dry run writes nothing and needs no
// token; a real one needs the operator token and is logged either way.
func (s *Server) serveRedrive(w http.ResponseWriter, r *http.Request) {
	var req RedriveRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	action, who := "redrive", ""
	if req.DryRun {
		action = "redrive dry run"
	} else {
		var ok bool
		if who, ok = s.authorize(w, r, action); !ok {
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	resp, err := s.redrive(ctx, req)
	var re *requestError
	switch {
	case errors.As(err, &re):
		writeError(w, http.StatusBadRequest, err)
		return
	case err != nil:
		s.cfg.Log.Error("console action failed", "action", action, "remote", r.RemoteAddr, "operator", who, "letters", len(req.Letters),
			"selected", selected(req.Letters), "err", err)
		writeError(w, http.StatusBadGateway, err)
		return
	}
	s.cfg.Log.Info("console action", "action", action, "remote", r.RemoteAddr, "operator", who, "letters", len(req.Letters), "selected", selected(req.Letters),
		"routes", cmp.Or(s.cfg.RoutesFile, "embedded"),
		"redriven", resp.Result.Redriven, "records", resp.Result.Records, "still_failing", resp.Result.StillFailing,
		"already_redriven", resp.Result.AlreadyDone, "not_redrivable", resp.Result.NotRedrivable)
	writeJSON(w, resp)
}

// maxLogged bounds the dead letters an action's log line names.
const maxLogged = 50

// selected names the picked dead letters (dlq.events partition/offset) for
// the action log, the first maxLogged of them.
func selected(ls []LetterRef) string {
	var b strings.Builder
	for i, l := range ls {
		if i == maxLogged {
			fmt.Fprintf(&b, " and %d more", len(ls)-maxLogged)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d/%d", l.Partition, l.Offset)
	}
	return b.String()
}

// admission is the re-drive's device registry check (nil = off), the
// bridge's own (ingest.Admission) over the console's registry view.
func (s *Server) admission(ctx context.Context) (*ingest.Admission, error) {
	mode := s.cfg.RegistryCheck
	if mode == "" || mode == ingest.RegistryAuto {
		mode = ingest.RegistryOff
		td, err := s.adm.ListTopics(ctx, s.cfg.RegistryTopic)
		if err != nil {
			return nil, fmt.Errorf("registry check auto: cannot tell whether %s exists: %w", s.cfg.RegistryTopic, err)
		}
		if d, ok := td[s.cfg.RegistryTopic]; ok && d.Err == nil {
			mode = ingest.RegistryEnforce
		}
	}
	if mode == ingest.RegistryOff {
		return nil, nil
	}
	v, err := s.devreg.get(ctx)
	if err != nil {
		return nil, err
	}
	return ingest.NewAdmission(v, mode, nil)
}
