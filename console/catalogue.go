package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/drover-iot/drover/schemas"
	"github.com/drover-iot/drover/topics"
)

// CatalogueTopic is one row of the Catalogue page: a topic of the
// catalogue or of the cluster.
type CatalogueTopic struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	InCatalogue bool   `json:"in_catalogue"`
	OnCluster   bool   `json:"on_cluster"`
	Format      string `json:"format,omitempty"`
	Partitions  int    `json:"partitions"`
	Replication int    `json:"replication"`
	Records     int64  `json:"records"`
	RetentionMs string `json:"retention_ms,omitempty"`
	Cleanup     string `json:"cleanup_policy,omitempty"`
	// Subject, Version and SchemaID are the registry's latest; Check is
	// the BACKWARD check of the local schema against it (identical,
	// compatible, incompatible, missing; "" when the topic has no schema).
	Subject     string   `json:"subject,omitempty"`
	Version     int      `json:"version,omitempty"`
	SchemaID    int      `json:"schema_id,omitempty"`
	Check       string   `json:"check,omitempty"`
	CheckField  string   `json:"check_field,omitempty"`
	CheckReason string   `json:"check_reason,omitempty"`
	Drift       []string `json:"drift"`
}

// catalogueList gathers every topic with a handful of bulk requests:
// metadata, offsets and configs of all topics at once, topics.Diff for the
// drift and schemas.Check for the registry.
func (s *Server) catalogueList(ctx context.Context) ([]CatalogueTopic, error) {
	tds, err := s.adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	names := tds.Names()
	starts, serr := s.adm.ListStartOffsets(ctx, names...)
	ends, eerr := s.adm.ListEndOffsets(ctx, names...)
	if err := errors.Join(serr, eerr); err != nil {
		return nil, fmt.Errorf("listing offsets: %w", err)
	}
	rcs, err := s.adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("describing configs: %w", err)
	}
	plan, err := topics.Diff(ctx, s.adm, s.cfg.Catalogue)
	if err != nil {
		return nil, fmt.Errorf("catalogue drift: %w", err)
	}
	byName := map[string]*CatalogueTopic{}
	row := func(name string) *CatalogueTopic {
		if r := byName[name]; r != nil {
			return r
		}
		r := &CatalogueTopic{Name: name, Drift: []string{}}
		byName[name] = r
		return r
	}
	for _, t := range s.cfg.Catalogue.Topics {
		r := row(t.Name)
		r.InCatalogue, r.Description, r.Format = true, t.Description, t.Format
	}
	for _, td := range tds {
		r := row(td.Topic)
		r.OnCluster, r.Partitions, r.Replication = true, len(td.Partitions), td.Partitions.NumReplicas()
	}
	ends.Each(func(o kadm.ListedOffset) {
		if st, ok := starts.Lookup(o.Topic, o.Partition); ok && o.Err == nil && st.Err == nil {
			row(o.Topic).Records += o.Offset - st.Offset
		}
	})
	for _, rc := range rcs {
		if r := byName[rc.Name]; r != nil && rc.Err == nil {
			for _, c := range rc.Configs {
				switch c.Key {
				case "retention.ms":
					r.RetentionMs = c.MaybeValue()
				case "cleanup.policy":
					r.Cleanup = c.MaybeValue()
				}
			}
		}
	}
	for _, c := range plan.Changes {
		r := row(c.Topic.Name)
		r.Drift = append(r.Drift, c.String())
	}
	if s.cfg.Registry != nil {
		checks, err := schemas.Check(ctx, s.cfg.Registry, nil)
		if err != nil {
			return nil, fmt.Errorf("schema registry: %w", err)
		}
		for _, c := range checks {
			r := row(c.Topic)
			r.Subject, r.Version, r.SchemaID, r.Check, r.CheckField, r.CheckReason = c.Subject, c.Version, c.ID, string(c.Status), c.Field, c.Reason
		}
	}
	out := make([]CatalogueTopic, 0, len(byName))
	for _, r := range byName {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b CatalogueTopic) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// TopicDetail is the Catalogue page's view of one topic: topics.Describe
// plus the subject's versions, the registered schema's fields and docs and
// the local schema's check.
type TopicDetail struct {
	topics.Description
	Versions    []int         `json:"versions,omitempty"`
	Doc         string        `json:"doc,omitempty"`
	RecordName  string        `json:"record_name,omitempty"`
	Fields      []SchemaField `json:"fields,omitempty"`
	Check       string        `json:"check,omitempty"`
	CheckField  string        `json:"check_field,omitempty"`
	CheckReason string        `json:"check_reason,omitempty"`
	SchemaText  string        `json:"schema_text,omitempty"`
}

// SchemaField is one field of a record schema.
type SchemaField struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Doc     string `json:"doc,omitempty"`
	Default any    `json:"default,omitempty"`
}

func (s *Server) topicDetail(ctx context.Context, topic string) (TopicDetail, error) {
	d, err := topics.Describe(ctx, s.adm, s.cfg.Registry, s.cfg.Catalogue, topic)
	td := TopicDetail{Description: d}
	if err != nil || d.Schema == nil || s.cfg.Registry == nil {
		return td, err
	}
	subject := d.Schema.Subject
	if td.Versions, err = s.cfg.Registry.SubjectVersions(ctx, subject); err != nil {
		return td, fmt.Errorf("versions of %s: %w", subject, err)
	}
	ss, err := s.cfg.Registry.SchemaByVersion(ctx, subject, -1)
	if err != nil {
		return td, fmt.Errorf("latest schema of %s: %w", subject, err)
	}
	td.SchemaText = ss.Schema.Schema
	if ss.Type == sr.TypeAvro {
		if sch, err := avro.Parse(ss.Schema.Schema); err == nil {
			if rec, ok := sch.(*avro.RecordSchema); ok {
				td.RecordName, td.Doc = rec.FullName(), rec.Doc()
				for _, f := range rec.Fields() {
					sf := SchemaField{Name: f.Name(), Type: typeName(f.Type()), Doc: f.Doc()}
					if f.HasDefault() {
						sf.Default = f.Default()
					}
					td.Fields = append(td.Fields, sf)
				}
			}
		}
	}
	if schemas.Source(topic) != "" {
		checks, err := schemas.Check(ctx, s.cfg.Registry, []string{topic})
		if err != nil {
			return td, err
		}
		c := checks[0]
		td.Check, td.CheckField, td.CheckReason = string(c.Status), c.Field, c.Reason
	}
	return td, nil
}

// typeName renders an Avro type briefly: string, long (timestamp-millis),
// null|double, array<string>, map<double>, io.drover.Point.
func typeName(t avro.Schema) string {
	switch v := t.(type) {
	case *avro.UnionSchema:
		var parts []string
		for _, u := range v.Types() {
			parts = append(parts, typeName(u))
		}
		return strings.Join(parts, "|")
	case *avro.ArraySchema:
		return "array<" + typeName(v.Items()) + ">"
	case *avro.MapSchema:
		return "map<" + typeName(v.Values()) + ">"
	case avro.NamedSchema:
		return v.FullName()
	case avro.LogicalTypeSchema:
		if lt := v.Logical(); lt != nil {
			return string(t.Type()) + " (" + string(lt.Type()) + ")"
		}
	}
	return string(t.Type())
}

func (s *Server) serveCatalogue(w http.ResponseWriter, r *http.Request) {
	list, err := s.catalogue.get(r.Context(), "", s.catalogueList)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, list)
}

func (s *Server) serveTopic(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	d, err := s.topicInfo.get(r.Context(), topic, func(ctx context.Context) (TopicDetail, error) { return s.topicDetail(ctx, topic) })
	switch {
	case errors.Is(err, topics.ErrUnknownTopic):
		writeError(w, http.StatusNotFound, err)
	case err != nil:
		writeError(w, http.StatusBadGateway, err)
	default:
		writeJSON(w, d)
	}
}
