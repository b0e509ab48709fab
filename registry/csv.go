package registry

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// CSV import columns. A file starts with a header naming its columns in any
// order (case-insensitive); tenant and device_id are required.
//
//	tenant, device_id   the device's identity
//	type                device type (wildfi: also the WildFi topics)
//	offline_timeout     the device's own offline timeout (Go duration: 30m, 2h)
//	secret              a secret to use instead of a generated one
//	cert_fingerprint    SHA-256 fingerprint(s) of its certificate(s), ';'-separated;
//	                    with no secret the device is certificate-only
//	label.KEY           a label (one column per key; empty = no label)
//	alt.KIND            an alternative id (alt.deveui: the LoRaWAN DevEUI)
//
// Lines starting with '#' are comments.
const (
	colTenant   = "tenant"
	colDevice   = "device_id"
	colType     = "type"
	colTimeout  = "offline_timeout"
	colSecret   = "secret"
	colCert     = "cert_fingerprint"
	labelPrefix = "label."
	altPrefix   = "alt."
)

// CSVRow is one device of an import file and the line it came from.
type CSVRow struct {
	Line   int
	Device NewDevice
}

// CSVError is one problem of an import file: its line, the column (field)
// when one is to blame, and why.
type CSVError struct {
	Line  int
	Field string
	Err   error
}

func (e *CSVError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d, field %s: %v", e.Line, e.Field, e.Err)
}

// Unwrap makes errors.Is match ErrInvalid and what Err wraps.
func (e *CSVError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// CSVErrors is every problem found in an import file (at most
// maxCSVErrors).
type CSVErrors []*CSVError

const maxCSVErrors = 50

func (es CSVErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d problem(s), nothing applied:\n  %s", len(es), strings.Join(msgs, "\n  "))
}

// Unwrap returns every problem.
func (es CSVErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// ParseCSV reads an import file. Any problem (a malformed line, an unknown
// column, a bad value) is reported with its line and field in a CSVErrors,
// and no rows are returned: an import applies all of a file or nothing.
func ParseCSV(r io.Reader) ([]CSVRow, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, CSVErrors{{Line: 1, Err: errors.New("empty file: want a header line (tenant,device_id,...)")}}
		}
		return nil, CSVErrors{csvParseErr(err)}
	}
	cols, herr := parseHeader(header)
	if herr != nil {
		line, _ := cr.FieldPos(0)
		herr.Line = line
		return nil, CSVErrors{herr}
	}
	var rows []CSVRow
	var errs CSVErrors
	for len(errs) < maxCSVErrors {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, csvParseErr(err))
			continue
		}
		line, _ := cr.FieldPos(0)
		nd, ferr := parseRow(cols, rec)
		if ferr != nil {
			ferr.Line = line
			errs = append(errs, ferr)
			continue
		}
		rows = append(rows, CSVRow{Line: line, Device: nd})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if len(rows) == 0 {
		return nil, CSVErrors{{Line: 2, Err: errors.New("no devices after the header")}}
	}
	return rows, nil
}

func csvParseErr(err error) *CSVError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &CSVError{Line: pe.Line, Err: pe.Err}
	}
	return &CSVError{Err: err}
}

func parseHeader(header []string) ([]string, *CSVError) {
	cols := make([]string, len(header))
	seen := map[string]bool{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		switch {
		case name == colTenant, name == colDevice, name == colType, name == colTimeout, name == colSecret, name == colCert:
		case strings.HasPrefix(name, labelPrefix) && len(name) > len(labelPrefix):
			name = labelPrefix + strings.TrimSpace(h)[len(labelPrefix):] // label keys keep their case
		case strings.HasPrefix(name, altPrefix) && len(name) > len(altPrefix):
		default:
			return nil, &CSVError{Field: printable(h), Err: fmt.Errorf("unknown column (want tenant, device_id, type, offline_timeout, secret, cert_fingerprint, label.KEY, alt.KIND)")}
		}
		if seen[name] {
			return nil, &CSVError{Field: name, Err: errors.New("column given twice")}
		}
		seen[name] = true
		cols[i] = name
	}
	for _, req := range []string{colTenant, colDevice} {
		if !seen[req] {
			return nil, &CSVError{Field: req, Err: errors.New("required column missing from the header")}
		}
	}
	return cols, nil
}

func parseRow(cols, rec []string) (NewDevice, *CSVError) {
	var nd NewDevice
	for i, col := range cols {
		v := strings.TrimSpace(rec[i])
		if err := setColumn(&nd, col, v); err != nil {
			return NewDevice{}, &CSVError{Field: col, Err: err}
		}
	}
	if nd.Secret == "" && len(nd.CertFingerprints) > 0 {
		nd.NoSecret = true
	}
	return nd, nil
}

func setColumn(nd *NewDevice, col, v string) error {
	switch {
	case col == colTenant:
		nd.Tenant = v
	case col == colDevice:
		nd.ID = v
	case col == colType:
		nd.Type = v
	case col == colSecret:
		nd.Secret = v
	case col == colTimeout && v != "":
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30m, 2h)", v)
		}
		nd.OfflineTimeout = d
	case col == colCert && v != "":
		for _, fp := range strings.Split(v, ";") {
			nd.CertFingerprints = append(nd.CertFingerprints, strings.TrimSpace(fp))
		}
	case strings.HasPrefix(col, labelPrefix) && v != "":
		if nd.Labels == nil {
			nd.Labels = map[string]string{}
		}
		nd.Labels[col[len(labelPrefix):]] = v
	case strings.HasPrefix(col, altPrefix) && v != "":
		if nd.AltIDs == nil {
			nd.AltIDs = map[string]string{}
		}
		nd.AltIDs[col[len(altPrefix):]] = v
	}
	return nil
}

// Explain maps an error of Store.AddDevices for these rows back to the
// file: every refused entry becomes a *CSVError with its line and, when one
// field is to blame, that field. Other errors are returned as they are.
func Explain(rows []CSVRow, err error) error {
	var be *BatchError
	if !errors.As(err, &be) {
		return err
	}
	errs := make(CSVErrors, 0, len(be.Problems))
	for _, p := range be.Problems {
		ce := &CSVError{Line: rows[p.Index].Line, Err: p.Err}
		var fe *FieldError
		if errors.As(p.Err, &fe) {
			ce.Field, ce.Err = fe.Field, fe.Err
		}
		var de *DuplicateError
		if errors.As(ce.Err, &de) && de.Entry < len(rows) {
			ce.Err = Errorf(ErrExists, "%s duplicates line %d", de.What, rows[de.Entry].Line)
		}
		errs = append(errs, ce)
	}
	return errs
}
