package fanout

// AddHub adds a hub to a running router (service mode learns hubs from
// the app servers that connect) and returns it, or the existing hub of
// that name. Readers are not locked: the hub table is replaced whole.
// The caller validates the name.
func (r *Router) AddHub(name string) *Hub {
	if h := r.Hub(name); h != nil {
		return h
	}
	r.addMu.Lock()
	defer r.addMu.Unlock()
	old := *r.hubs.Load()
	if h := old[name]; h != nil {
		return h
	}
	m := make(map[string]*Hub, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	h := newHub(name, r.sub, &r.Stats)
	m[name] = h
	r.hubs.Store(&m)
	if r.metricsDone.Load() {
		r.declareHub(h)
	}
	return h
}
