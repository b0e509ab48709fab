package registry

import "slices"

// altWildFi is the implicit alternative-id kind under which every WildFi
// device is indexed by its device id (its topics carry no tenant).
const altWildFi = "wildfi"

func altKey(kind, value string) string { return kind + "\x00" + value }

// altKeys returns the alternative-id index keys a device claims.
func altKeys(d *Device) []string {
	keys := make([]string, 0, len(d.AltIDs)+1)
	for k, v := range d.AltIDs {
		keys = append(keys, altKey(k, v))
	}
	if d.Type == TypeWildFi {
		keys = append(keys, altKey(altWildFi, d.ID))
	}
	return keys
}

// putDevice stores d (replacing the device of its key), updates the
// secondary indexes and the gauges, and notifies subscribers. Only the
// view's goroutine writes, so the steps need no common lock: a reader that
// races them finds either the old or the new device, and a secondary lookup
// re-checks the device it lands on.
func (v *View) putDevice(key string, d *Device) {
	s := v.shardOf(key)
	s.mu.Lock()
	old := s.m[key]
	s.m[key] = d
	s.mu.Unlock()
	v.reindex(key, old, d)
	v.countStatus(old, d)
	v.notify(Change{Key: key, Old: old, New: d})
}

func (v *View) removeDevice(key string) {
	s := v.shardOf(key)
	s.mu.Lock()
	old, ok := s.m[key]
	delete(s.m, key)
	s.mu.Unlock()
	if !ok {
		return
	}
	v.reindex(key, old, nil)
	v.countStatus(old, nil)
	v.notify(Change{Key: key, Old: old})
}

func (v *View) removeTenant(key string) {
	v.tenants.Lock()
	t, ok := v.tenants.m[key]
	delete(v.tenants.m, key)
	n := len(v.tenants.m)
	v.tenants.Unlock()
	v.m.tenants.Set(float64(n))
	if ok {
		v.notify(Change{Key: key, Tenant: t, TenantDeleted: true})
	}
}

func (v *View) reindex(key string, old, cur *Device) {
	var oldCerts, curCerts, oldAlts, curAlts []string
	if old != nil {
		oldCerts, oldAlts = old.CertFingerprints, altKeys(old)
	}
	if cur != nil {
		curCerts, curAlts = cur.CertFingerprints, altKeys(cur)
	}
	v.updateIndex(&v.certs, key, oldCerts, curCerts)
	v.updateIndex(&v.alts, key, oldAlts, curAlts)
}

// updateIndex drops key's claims in was that are not in is, and records
// the claims in is (counting a claim another key held as a conflict).
func (v *View) updateIndex(x *index, key string, was, is []string) {
	if len(was) == 0 && len(is) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, k := range was {
		if !slices.Contains(is, k) && x.m[k] == key {
			delete(x.m, k)
		}
	}
	for _, k := range is {
		if holder, ok := x.m[k]; ok && holder != key {
			v.m.conflicts.Inc()
			v.log.Warn("registry view: an id is claimed by two devices; the newer claim wins", "id", k, "was", holder, "now", key)
		}
		x.m[k] = key
	}
}

func (v *View) countStatus(old, cur *Device) {
	if old != nil {
		v.m.status[old.Status].Dec()
	}
	if cur != nil {
		v.m.status[cur.Status].Inc()
	}
}
