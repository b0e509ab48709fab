package registry

import (
	"slices"
	"strings"
	"unique"
)

// intern makes d share what a million devices have in common, so a view of
// many devices stays small (and its garbage collection cheap): strings
// through unique.Make (tenants, types, statuses, label keys and values),
// identical label maps through the view's own table (devices of a herd share
// one map; the table grows with the distinct label sets ever seen), and the
// secret's salt and hash in one allocation. Only the view's goroutine calls
// it; the devices it returns are immutable, so sharing is safe.
func (v *View) intern(d *Device) {
	d.Tenant = unique.Make(d.Tenant).Value()
	d.Type = unique.Make(d.Type).Value()
	d.Status = Status(unique.Make(string(d.Status)).Value())
	d.Actor = unique.Make(d.Actor).Value()
	if d.Labels != nil {
		d.Labels = v.labelSet(d.Labels)
	}
	if h := d.Secret; h != nil {
		buf := make([]byte, len(h.Salt)+len(h.Hash))
		n := copy(buf, h.Salt)
		copy(buf[n:], h.Hash)
		h.Salt, h.Hash = buf[:n:n], buf[n:]
	}
}

func (v *View) labelSet(m map[string]string) map[string]string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	if shared, ok := v.labelSets[b.String()]; ok {
		return shared
	}
	out := make(map[string]string, len(m))
	for _, k := range keys {
		out[unique.Make(k).Value()] = unique.Make(m[k]).Value()
	}
	v.labelSets[b.String()] = out
	return out
}
