package control

// peerReports keeps, per instance, only the full-outage positions reported
// by the current Galera members. A member removed since (lost for good,
// replaced, or dropped by `cloudctl cluster recover`) leaves its last report
// behind: counted, it would make the others wait for it, or bootstrap from
// its stale seqno.
func peerReports(recovery map[string][]Position, peers []Peer) map[string][]Position {
	if len(recovery) == 0 {
		return recovery
	}
	member := map[string]bool{}
	for _, p := range peers {
		member[p.Name] = true
	}
	out := make(map[string][]Position, len(recovery))
	for inst, rs := range recovery {
		for _, r := range rs {
			if member[r.Node] {
				out[inst] = append(out[inst], r)
			}
		}
	}
	return out
}
