package query

import (
	"fmt"
	"strings"

	"github.com/hamba/avro/v2"
)

// CheckPath returns nil when some schema of recs has path, else an error
// naming the fields where the path left each schema: a root field, each
// step into nested records (map keys are free; nullable unions are looked
// through). names label recs in the error (topic names, say).
func CheckPath(path []string, names []string, recs []*avro.RecordSchema) error {
	var why []string
	for i, rs := range recs {
		var s avro.Schema = rs
		for depth, name := range path {
			next, fields := member(s, name)
			if next == nil {
				where := names[i]
				if depth > 0 {
					where += " field " + strings.Join(path[:depth], ".")
				}
				if fields == nil {
					why = append(why, fmt.Sprintf("%s is a %s, it has no field %q", where, s.Type(), name))
				} else {
					why = append(why, fmt.Sprintf("%s has no field %q (fields: %s)", where, name, strings.Join(fields, ", ")))
				}
				break
			}
			s = next
		}
		if len(why) == i { // the whole path resolved in this schema
			return nil
		}
	}
	return fmt.Errorf("%s", strings.Join(why, "; "))
}

// member returns the schema of field name of s: a record's field, any key
// of a map, through nullable unions. Without it, fields lists the record's
// fields (nil when s is no record).
func member(s avro.Schema, name string) (next avro.Schema, fields []string) {
	switch t := s.(type) {
	case *avro.UnionSchema:
		for _, u := range t.Types() {
			if u.Type() == avro.Null {
				continue
			}
			if next, fs := member(u, name); next != nil {
				return next, nil
			} else if fs != nil {
				fields = fs
			}
		}
		return nil, fields
	case *avro.MapSchema:
		return t.Values(), nil
	case *avro.RecordSchema:
		for _, f := range t.Fields() {
			if f.Name() == name {
				return f.Type(), nil
			}
			fields = append(fields, f.Name())
		}
		return nil, fields
	}
	return nil, nil
}
