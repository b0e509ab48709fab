package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/drover-iot/drover/ingest"
	"github.com/drover-iot/drover/ingest/decode"
)

// NDJSON is the media type of a newline-delimited batch.
const NDJSON = "application/x-ndjson"

func isBatch(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == NDJSON || r.URL.Query().Get("batch") == "true"
}

// read reads the body up to limit bytes, or answers 413 (or 400).
func (s *Server) read(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	body, err := readAll(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		s.write(w, Answer{Status: http.StatusRequestEntityTooLarge, Outcome: ingest.Outcome{Kind: ingest.TooLarge,
			Reason: string(decode.ReasonPayloadTooLarge), Stage: string(decode.StageDecode), Message: fmt.Sprintf("body is over the limit of %d bytes", limit)}})
		return nil, false
	case err != nil:
		s.write(w, Answer{Status: http.StatusBadRequest, Outcome: ingest.Outcome{Kind: ingest.Refused,
			Reason: "bad_request", Message: "reading the body: " + err.Error()}})
		return nil, false
	}
	return body, true
}

// readAll is io.ReadAll with a first buffer of the declared length (when
// within limit), so a body is read without growing the buffer.
func readAll(r io.Reader, declared, limit int64) ([]byte, error) {
	if declared <= 0 || declared > limit {
		return io.ReadAll(r)
	}
	b := make([]byte, 0, declared+1) // +1: io.EOF is seen without growing
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				return b, nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
	}
}

// split returns a batch body's items: the elements of a JSON array, or the
// non-empty lines of NDJSON.
func split(body []byte, ndjson bool, maxItems int) ([][]byte, *ingest.Outcome) {
	var items [][]byte
	if ndjson {
		// The lines share the body (read for this request alone): no
		// copies. TrimSpace also drops the \r of a CRLF line end.
		items = make([][]byte, 0, bytes.Count(body, []byte{'\n'})+1)
		for rest := body; len(rest) > 0; {
			line, tail, _ := bytes.Cut(rest, []byte{'\n'})
			if line = bytes.TrimSpace(line); len(line) > 0 {
				items = append(items, line[:len(line):len(line)])
			}
			rest = tail
		}
	} else {
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			return nil, &ingest.Outcome{Kind: ingest.Refused, Reason: string(decode.ReasonNotJSON), Stage: string(decode.StageDecode),
				Message: "a batch is a JSON array of payloads (or NDJSON with Content-Type " + NDJSON + "): " + err.Error()}
		}
		for _, x := range raw {
			items = append(items, []byte(x))
		}
	}
	switch {
	case len(items) == 0:
		return nil, &ingest.Outcome{Kind: ingest.Refused, Reason: string(decode.ReasonNoRecords), Stage: string(decode.StageValidate), Message: "the batch is empty"}
	case len(items) > maxItems:
		return nil, &ingest.Outcome{Kind: ingest.TooLarge, Reason: string(decode.ReasonPayloadTooLarge), Stage: string(decode.StageDecode),
			Message: fmt.Sprintf("the batch has %d items, limit %d", len(items), maxItems)}
	}
	return items, nil
}

// batch ingests every item of a batch request and answers item by item:
// 202 when all were accepted, 503 (with Retry-After) when any must be
// retried, 207 otherwise.
func (s *Server) batch(w http.ResponseWriter, r *http.Request, tmpl ingest.Message) {
	body, ok := s.read(w, r, s.cfg.MaxBatch)
	if !ok {
		return
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	items, bad := split(body, mt == NDJSON, s.cfg.MaxItems)
	if bad != nil {
		s.write(w, Answer{Status: statusOf[bad.Kind], Outcome: *bad})
		return
	}
	now := s.cfg.Now()
	answers := make([]Answer, len(items))
	msgs := make([]ingest.Message, 0, len(items))
	idx := make([]int, 0, len(items))
	for i, it := range items {
		if int64(len(it)) > s.cfg.MaxBody {
			answers[i] = Answer{Status: http.StatusRequestEntityTooLarge, Outcome: ingest.Outcome{Kind: ingest.TooLarge,
				Reason: string(decode.ReasonPayloadTooLarge), Stage: string(decode.StageDecode), Message: fmt.Sprintf("item is %d bytes, limit %d", len(it), s.cfg.MaxBody)}}
			continue
		}
		m := tmpl
		m.Payload, m.ReceivedAt = it, now
		msgs, idx = append(msgs, m), append(idx, i)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	// The items counted by kind, one counter update per kind a batch has
	// rather than one per item.
	var kinds [ingest.Internal + 1]int
	for j, err := range s.ingestAll(ctx, msgs) {
		a := s.answer(err)
		if a.Kind >= 0 && a.Kind < ingest.Kind(len(kinds)) {
			kinds[a.Kind]++
		} else {
			s.m.item(a.Kind)
		}
		answers[idx[j]] = a
	}
	for k, n := range kinds {
		if n > 0 {
			s.m.itemsOf(ingest.Kind(k), n)
		}
	}
	status := http.StatusAccepted
	for _, a := range answers {
		if a.Status == http.StatusServiceUnavailable {
			status = http.StatusServiceUnavailable
			break
		}
		if a.Status != http.StatusAccepted {
			status = http.StatusMultiStatus
		}
	}
	s.write(w, Answer{Status: status, Items: answers})
}

func (s *Server) ingestAll(ctx context.Context, msgs []ingest.Message) []error {
	if bc, ok := s.core.(BatchCore); ok {
		errs := bc.IngestBatch(ctx, msgs)
		if len(errs) == len(msgs) {
			return errs
		}
		err := fmt.Errorf("httpapi: the core answered %d results for %d items", len(errs), len(msgs))
		errs = make([]error, len(msgs))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = s.core.Ingest(ctx, m)
	}
	return errs
}
