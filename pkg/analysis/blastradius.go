package analysis

import (
	"fmt"
	"slices"

	"github.com/livemap/servicemap/pkg/model"
)

// DistinctCounter is a mergeable distinct-count sketch (HyperLogLog and the
// like). S is the sketch's own type, so *hyperloglog.Sketch from
// github.com/axiomhq/hyperloglog fits without an adapter.
type DistinctCounter[S any] interface {
	Estimate() uint64
	Merge(other S) error
	Clone() S // merging happens on a clone: the source's sketches stay as they are
}

// UserCounts is what the gateway source knows of external clients: for each
// entry-point service (one called by the user node or an external peer), a
// sketch of the distinct clients whose requests entered there in the range.
// ok is false when there is no gateway data at all. Sketches must be non-nil.
type UserCounts[S DistinctCounter[S]] interface {
	EntryUsers() (entries map[string]S, ok bool)
}

// NoGatewayData is the reason given when there is nothing to count users with.
const NoGatewayData = "no gateway data: blast radius in users unknown"

// BlastRadiusResult is how many external clients a failure of a service reaches.
type BlastRadiusResult struct {
	Service string
	Known   bool   // false: Reason says why, and the numbers are zero
	Reason  string // NoGatewayData, an unknown service, sketches that do not merge
	// Entries are the entry points whose traffic reaches the service (the
	// service itself when it is one), sorted.
	Entries []string
	Users   uint64  // distinct clients entering through Entries (merged, not added)
	Total   uint64  // distinct clients entering through any entry point
	Share   float64 // Users / Total in [0, 1]; 0 when Total is 0
	Summary string
}

// BlastRadius counts the distinct external clients whose requests enter
// through entry points that transitively call the service, and their share
// of all entry traffic. Sketches are merged, never summed: one client using
// two entry points is one client.
func BlastRadius[S DistinctCounter[S]](g *model.Graph, service string, users UserCounts[S]) BlastRadiusResult {
	r := BlastRadiusResult{Service: service}
	i, err := lookup(g, service)
	if err != nil {
		r.Reason = err.Error()
		return r
	}
	var entries map[string]S
	ok := false
	if users != nil {
		entries, ok = users.EntryUsers()
	}
	if !ok || len(entries) == 0 {
		r.Reason = NoGatewayData
		return r
	}
	src, _ := ends(g)
	dist := upstream(g, src, i)
	names := make([]string, 0, len(entries))
	for name := range entries {
		names = append(names, name)
	}
	slices.Sort(names) // merge in a fixed order: estimates need not be order-free
	var reach, all S
	haveReach, haveAll := false, false
	merge := func(into *S, have *bool, s S) error {
		if !*have {
			*into, *have = s.Clone(), true
			return nil
		}
		return (*into).Merge(s)
	}
	for _, name := range names {
		s := entries[name]
		if err := merge(&all, &haveAll, s); err != nil {
			r.Reason = fmt.Sprintf("gateway sketches of %s do not merge: %v", name, err)
			return r
		}
		if k := g.NodeIndex(name); k >= 0 && dist[k] >= 0 {
			r.Entries = append(r.Entries, name)
			if err := merge(&reach, &haveReach, s); err != nil {
				r.Reason = fmt.Sprintf("gateway sketches of %s do not merge: %v", name, err)
				return r
			}
		}
	}
	r.Known = true
	r.Total = all.Estimate()
	if haveReach {
		r.Users = reach.Estimate()
	}
	if r.Total > 0 {
		// Each estimate carries its own error; a subset must not read above 100 %.
		r.Share = min(1, float64(r.Users)/float64(r.Total))
	}
	r.Summary = fmt.Sprintf("%d distinct external %s (%.1f %% of all entry clients) %s %s through %d entry %s",
		r.Users, plural(int(r.Users), "client", "clients"), 100*r.Share, plural(int(r.Users), "reaches", "reach"),
		service, len(r.Entries), plural(len(r.Entries), "point", "points"))
	return r
}
